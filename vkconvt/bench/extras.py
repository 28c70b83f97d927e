"""The float16 and fused-activation suites (issue 13), on the model layers.

float16: each layer with float32 and with float16 inputs (float16 storage), direct and gemm:
time, the gemm column buffer (workspace) and the device's peak memory, side by side in one run.
Each float16 result is checked against the NumPy reference on the same float16 inputs (TOL16).

activations: each layer with the fused activations (BigVGAN's Snake on the output, HiFi-GAN's
leaky ReLU on the input) against the same layer computed plain with the two activations as
separate passes, in NumPy (timed here) and in PyTorch (timed in the PyTorch worker process;
the row's time is the plain layer's plus the worker's passes).
"""
import numpy as np

import vkconvt
from .. import timing
from .judge import MAX_RUNS, TOL, _fill, _judge

TOL16 = 1e-6        # normalised MSE of a float16 result (tests/cases.py TOL["float16"])
SLOPE = 0.1         # HiFi-GAN's LRELU_SLOPE


def _check(rec, run, first, ref, tol, records, runs):
    """The warm-up call first() judged against ref (None: not compared); a good one joins runs."""
    try:
        _judge(rec, first().astype(np.float64), ref, tol)
    except Exception as exc:  # one failing layer must not stop the run
        rec.update(status="error", error=f"{type(exc).__name__}: {exc}")
    records.append(rec)
    if rec["status"] == "ok":
        runs.append((rec, run))


def _time(runs, budget):
    """[(record, run)] timed interleaved, after the CPU libraries' threads have parked."""
    timing.settle()
    if runs:
        for (rec, _), ts in zip(runs, timing.interleaved([r for _, r in runs], budget, 3, MAX_RUNS)):
            _fill(rec, ts)


def _vulkan(be, rec, run):
    be.dev.clear()
    be.dev.reset_peak()
    with vkconvt.trace() as runs:
        out = run()
    rec["peak_bytes"] = be.dev.peak_bytes
    rec["workspace_bytes"] = runs[-1][2].workspace_bytes if runs and runs[-1][2] is not None else 0
    return out


def float16_case(case, args, be):
    """Records of vkconvt-{direct,gemm} in float32 and float16 (-f16) on one model layer."""
    (x, w, b), flops, tag = case.build(case.batch or args.batch, seed=case.x)
    h = case.hyper()
    x16, w16, b16 = x.astype(np.float16), w.astype(np.float16), None if b is None else b.astype(np.float16)
    ref = vkconvt.conv_transpose1d(x, w, b, *h, backend="numpy").astype(np.float64)
    ref16 = vkconvt.conv_transpose1d(x16, w16, b16, *h, backend="numpy").astype(np.float64)
    records, runs = [], []
    for algo in ("direct", "gemm"):
        for suffix, arrays, r, tol in (("", (x, w, b), ref, TOL), ("-f16", (x16, w16, b16), ref16, TOL16)):
            run = (lambda a=arrays, al=algo: vkconvt.conv_transpose1d(*a, *h, algorithm=al, backend="vulkan",
                                                                       device=args.device))
            rec = dict(impl=f"vkconvt-{algo}{suffix}", library="vkconvt", device=be.dev.info.name,
                       algorithm=algo + (" float16" if suffix else " float32"), status="ok", tag=tag, flops=flops)
            _check(rec, run, lambda: _vulkan(be, rec, run), r, tol, records, runs)
    _time(runs, args.budget)
    return records


def snake_np(y, alpha):
    a = alpha.reshape(1, -1, 1)
    return y + np.sin(a * y) ** 2 / (a + np.float32(1e-9))


def leaky_np(x):
    return np.where(x >= 0, x, x * np.float32(SLOPE)).astype(np.float32)


def activation_case(case, args, be, worker):
    """Records: vkconvt-fused (leaky ReLU in, Snake out, in the kernels), vkconvt-plain (the layer
    alone, on an input already leaky-ReLU'd), separate-numpy (NumPy passes around the plain layer) and separate-torch (the plain
    layer plus PyTorch's passes, timed in its worker)."""
    (x, w, b), flops, tag = case.build(case.batch or args.batch, seed=case.x)
    h = case.hyper()
    c_out = w.shape[1] * case.conv["groups"]
    alpha = np.random.default_rng(case.x).uniform(0.2, 2.0, c_out).astype(np.float32)
    act = dict(activation="snake", alpha=alpha, input_activation="leaky_relu", input_negative_slope=SLOPE)
    ref = vkconvt.conv_transpose1d(x, w, b, *h, backend="numpy", **act).astype(np.float64)
    layer = vkconvt.ConvTranspose1d(w, b, *h, backend="vulkan", device=args.device, **act)
    plain = vkconvt.ConvTranspose1d(w, b, *h, backend="vulkan", device=args.device)
    xl = leaky_np(x)
    impls = [("vkconvt-fused", lambda: layer(x)), ("vkconvt-plain", lambda: plain(xl)),
             ("separate-numpy", lambda: snake_np(plain(leaky_np(x)), alpha))]
    records, runs = [], []
    for name, run in impls:
        rec = dict(impl=name, library="vkconvt", device=be.dev.info.name, algorithm="auto", status="ok", tag=tag,
                   flops=flops)
        def first(rec=rec, run=run, name=name):
            with vkconvt.trace() as ran:
                out = run()
            if name == "vkconvt-fused":
                rec["chosen"] = "fused" if ran[-1][2].info.get("fused") else "host"
            return out
        _check(rec, run, first, ref if name != "vkconvt-plain" else None, TOL, records, runs)
    _time(runs, args.budget)
    if worker is not None:
        y = plain(xl)
        rec = dict(impl="torch-passes", library="torch", device="cpu", algorithm="leaky_relu + snake", status="ok",
                   tag=tag)
        timing.settle()
        status, out, times, first = worker.run("activations", "cpu", False, (x, y, alpha), (SLOPE,), args.budget,
                                               MAX_RUNS)
        if status != "ok":
            rec.update(status="error", error=str(out))
        else:
            _judge(rec, out.astype(np.float64), snake_np(y, alpha).astype(np.float64), TOL)
            if rec["status"] == "ok":
                _fill(rec, times)
        records.append(rec)
    return records
