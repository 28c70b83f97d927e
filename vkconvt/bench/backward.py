"""The backward suite: per model layer, the backward pass of conv_transpose1d (grad_input, grad_weight,
and grad_bias when the layer has a bias) on vkconvt against PyTorch CPU, and each one's ratio of
backward to forward time.

vkconvt's forward (vkconvt.conv_transpose1d) and backward (vkconvt.conv_transpose1d_backward) are
timed side by side here; PyTorch's forward (F.conv_transpose1d) and backward
(aten.convolution_backward, what autograd calls) in its worker process (torchproc.py). Every
backward result is checked against the NumPy backend's (the three gradients, flattened and joined).
"""
import numpy as np

import vkconvt
from .. import timing
from .judge import MAX_RUNS, TOL, _fill, _judge

IMPLS = ("vkconvt-forward", "vkconvt-backward", "torch-cpu-forward", "torch-cpu-backward")


def _flat(grads):
    return np.concatenate([np.asarray(g, np.float64).reshape(-1) for g in grads if g is not None])


def backward_case(case, args, be, worker):
    """Records of the four implementations on one model layer."""
    (x, w, b), flops, tag = case.build(case.batch or args.batch, seed=case.x)
    h = case.hyper()
    y = vkconvt.conv_transpose1d(x, w, b, *h, backend="numpy")
    go = np.random.default_rng(case.x + 1).standard_normal(y.shape).astype(np.float32)
    mask = (True, True, b is not None)
    ref_fwd = y.astype(np.float64)
    ref_bwd = _flat(vkconvt.conv_transpose1d_backward(go, x, w, *h, output_mask=mask, backend="numpy"))
    dev = dict(backend="vulkan", device=args.device)
    fwd = (lambda: vkconvt.conv_transpose1d(x, w, b, *h, **dev))  # noqa: E731
    bwd = (lambda: _flat(vkconvt.conv_transpose1d_backward(go, x, w, *h, output_mask=mask, **dev)))  # noqa: E731
    records, runs = [], []
    for impl, fn, ref in (("vkconvt-forward", fwd, ref_fwd), ("vkconvt-backward", bwd, ref_bwd)):
        rec = dict(impl=impl, library="vkconvt", device=be.dev.info.name, algorithm="auto", status="ok", tag=tag,
                   flops=flops * (2 if impl.endswith("backward") else 1))
        try:
            with vkconvt.trace() as ran:
                out = fn()
            rec["chosen"] = "+".join(f"{op}:{sched.algorithm}" for op, _, sched in ran if sched is not None)
            _judge(rec, np.asarray(out, np.float64), ref, TOL)
        except Exception as exc:  # one failing layer must not stop the run
            rec.update(status="error", error=f"{type(exc).__name__}: {exc}")
        records.append(rec)
        if rec["status"] == "ok":
            runs.append((rec, fn))
    timing.settle()
    if runs:
        for (rec, _), ts in zip(runs, timing.interleaved([fn for _, fn in runs], args.budget, 3, MAX_RUNS)):
            _fill(rec, ts)
    if worker is None:
        return records
    for impl, op, arrays, ref in (("torch-cpu-forward", "conv_transpose1d", (x, w, b), ref_fwd),
                                  ("torch-cpu-backward", "conv_transpose1d_backward", (go, x, w, b), ref_bwd)):
        rec = dict(impl=impl, library="torch", device="cpu", algorithm="float32", status="ok", tag=tag)
        timing.settle()
        status, out, times, first = worker.run(op, "cpu", False, arrays, h, args.budget, MAX_RUNS)
        if status != "ok":
            rec.update(status="error", error=str(out))
        else:
            rec["first_s"] = first
            _judge(rec, np.asarray(out, np.float64).reshape(ref.shape), ref, TOL)
            if rec["status"] == "ok":
                _fill(rec, times)
        records.append(rec)
    return records


def _geomean(values):
    values = [v for v in values if v]
    return float(np.exp(np.mean(np.log(values)))) if values else None


def backward_table(records):
    """Per layer: vkconvt's and PyTorch's forward and backward times, backward/forward for each,
    and PyTorch / vkconvt for each pass (above 1: vkconvt faster); geomeans in the last row."""
    head = ["layer", "vk fwd ms", "vk bwd ms", "vk bwd/fwd", "torch fwd ms", "torch bwd ms", "torch bwd/fwd",
            "torch/vk fwd", "torch/vk bwd", "vk backward algorithms"]
    by = {}
    for r in records:
        if r["kind"] == "backward":
            by.setdefault((r["group"], r["case"]), {})[r["impl"]] = r
    rows, cols = [], {k: [] for k in ("vkr", "tr", "f", "b")}

    def t(r):
        return r.get("median_s") if r and r["status"] == "ok" else None
    for (group, case), recs in by.items():
        vf, vb, tf, tb = (t(recs.get(i)) for i in IMPLS)
        vals = dict(vkr=vb / vf if vb and vf else None, tr=tb / tf if tb and tf else None,
                    f=tf / vf if tf and vf else None, b=tb / vb if tb and vb else None)
        for k, v in vals.items():
            cols[k].append(v)
        ms = [f"{v * 1e3:.2f}" if v else "-" for v in (vf, vb, tf, tb)]
        fmt = [f"{vals[k]:.2f}" if vals[k] else "-" for k in ("vkr", "tr", "f", "b")]
        rows.append([f"{group} {case}"] + ms[:2] + [fmt[0]] + ms[2:] + fmt[1:] +
                    [(recs.get("vkconvt-backward") or {}).get("chosen") or "-"])
    g = {k: _geomean(v) for k, v in cols.items()}
    rows.append(["geomean", "", "", f"{g['vkr']:.2f}" if g["vkr"] else "-", "", "",
                 f"{g['tr']:.2f}" if g["tr"] else "-", f"{g['f']:.2f}" if g["f"] else "-",
                 f"{g['b']:.2f}" if g["b"] else "-", ""])
    note = ("Backward: grad_input, grad_weight and (with a bias) grad_bias of one layer call. vkconvt times are this "
            "process's, forward and backward interleaved; PyTorch's are its worker process's (F.conv_transpose1d, "
            "aten.convolution_backward). Every backward result was checked against the NumPy backend.")
    return "backward pass per model layer", head, rows, note
