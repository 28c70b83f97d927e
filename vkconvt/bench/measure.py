"""Running and timing one case on every implementation, each result checked against the NumPy
reference (finite, normalised MSE within tolerance): a wrong result is a failure, never a time.

PyTorch runs in a worker process of its own (torchproc.py); the Vulkan algorithms are timed
last, interleaved, after a pause that lets the CPU libraries' spinning threads park.
"""
import functools
import time
from dataclasses import dataclass

import numpy as np

import vkconvt
from .. import timing
from . import backward, extras, gpu_path
from .judge import MAX_RUNS, TOL, TOL_TF32, _fill, _judge

@dataclass
class Impl:
    name: str
    library: str
    device: str
    algorithm: str
    prepare: object = None   # (arrays, hyper) -> run(): computes, returns a NumPy array
    vulkan: bool = False
    tol: float = TOL
    remote: tuple = None     # (op, device, tf32): timed by the PyTorch worker


def host(fn):
    return lambda arrays, hyper: (lambda: fn(*arrays, *hyper))


def implementations(conv, be, device, torch_info):
    """The NumPy reference first, then vkconvt on Vulkan, then PyTorch (in its worker)."""
    if conv:
        impls = [Impl("numpy", "vkconvt", "cpu", "direct",
                      host(functools.partial(vkconvt.conv_transpose1d, algorithm="direct", backend="numpy")))]
    else:
        impls = [Impl("numpy", "numpy", "cpu", "a @ b", host(np.matmul))]
    if be is not None:
        label = be.dev.info.name
        if conv:
            impls += [Impl(f"vkconvt-{a}", "vkconvt", label, a, vulkan=True, prepare=host(functools.partial(
                vkconvt.conv_transpose1d, algorithm=a, backend="vulkan", device=device)))
                for a in ("direct", "gemm", "auto")]
        else:
            impls.append(Impl("vkconvt-matmul", "vkconvt", label, "matmul", vulkan=True,
                              prepare=host(functools.partial(vkconvt.matmul, backend="vulkan", device=device))))
    if torch_info is not None:
        op = "conv_transpose1d" if conv else "matmul"
        impls.append(Impl("torch-cpu", "torch", "cpu", "float32", remote=(op, "cpu", False)))
        if torch_info.get("cuda"):
            impls.append(Impl("torch-cuda", "torch", torch_info["cuda"], "float32", remote=(op, "cuda", False)))
            impls.append(Impl("torch-cuda-tf32", "torch", torch_info["cuda"], "tf32", remote=(op, "cuda", True),
                              tol=TOL_TF32))
    return impls


def check(impl, arrays, hyper, ref, be, worker=None, budget=0.3):
    """Warm-up call of one implementation, checked against the reference (None: this is the
    reference). Returns (record fields, output, run); run is None when the result is not ok or
    when the implementation was already timed (PyTorch, in its worker)."""
    rec = dict(impl=impl.name, library=impl.library, device=impl.device, algorithm=impl.algorithm, status="ok")
    dev = be.dev if impl.vulkan else None
    try:
        if impl.remote is not None:
            timing.settle()             # our own BLAS threads park before the worker computes
            status, out, times, first = worker.run(*impl.remote, arrays, hyper, budget, MAX_RUNS)
            if status != "ok":
                raise RuntimeError(out)
            rec["first_s"] = first
            _judge(rec, out, ref, impl.tol)
            if rec["status"] == "ok":
                _fill(rec, times)
            return rec, out, None
        run = impl.prepare(arrays, hyper)
        if dev is not None:
            dev.clear()          # drop cached plans so that this algorithm's peak memory is its own
            dev.reset_peak()
        t0 = time.perf_counter()
        with vkconvt.trace() as runs:
            out = run()
        rec["first_s"] = time.perf_counter() - t0
        if dev is not None:
            rec["peak_bytes"] = dev.peak_bytes
            sched = runs[-1][2] if runs else None
            if len(arrays) == 3:
                rec["workspace_bytes"] = sched.workspace_bytes if sched is not None else 0
            before = dict(dev.counters)
            run()                # one more call, counted: what a repeated call costs the device
            for k in ("submissions", "fence_waits", "bytes_up", "bytes_down"):
                rec[k] = dev.counters[k] - before[k]
        _judge(rec, out, ref, impl.tol)
        return rec, out, (run if rec["status"] == "ok" else None)
    except Exception as exc:  # one failing case or implementation must not stop the run
        rec.update(status="error", error=f"{type(exc).__name__}: {exc}")
        return rec, None, None


def time_runs(entries, budget, be=None):
    """Timed calls of several implementations, interleaved (timing.interleaved). entries:
    [(rec, run)]; fills the records with runs, median, min, std. With a Vulkan backend, a pass of
    its own afterwards records the device time (Vulkan timestamps) of 3 more calls each: the
    timestamp queries cost time themselves, so the timed calls run without them."""
    if not entries:
        return
    times = timing.interleaved([run for _, run in entries], budget, 3, MAX_RUNS,
                               slow_s=max(rec["first_s"] for rec, _ in entries))
    for (rec, _), ts in zip(entries, times):
        _fill(rec, ts)
    if be is None or not be.dev.info.timestamps:
        return
    dev = be.dev
    with vkconvt.settings.override(timestamps=True):
        for rec, run in entries:
            if rec.get("workspace_bytes") is None:
                continue
            ns = []
            for _ in range(3 if rec["median_s"] < budget else 1):
                before = dev.device_ns
                run()
                ns.append(dev.device_ns - before)
            rec["device_median_s"] = float(np.median(ns)) / 1e9 or None


def bench_case(case, index, suite, args, be, worker):
    base = dict(suite=suite, kind=case.kind, group=case.group, case=case.name, x=case.x, calls=case.calls)
    if case.kind == "overhead":
        return [{**base, **rec} for rec in overhead_case(case, be)]
    if case.kind in ("chain", "gpu-model"):
        if be is None:
            return [dict(base, impl="-", status="error", error="no Vulkan device")]
        fn = gpu_path.chain_case if case.kind == "chain" else gpu_path.model_case
        return [{**base, **rec} for rec in fn(case, args, be)]
    if case.kind in ("float16", "activation", "backward"):
        if be is None:
            return [dict(base, impl="-", status="error", error="no Vulkan device")]
        try:
            recs = (extras.float16_case(case, args, be) if case.kind == "float16"
                    else backward.backward_case(case, args, be, worker) if case.kind == "backward"
                    else extras.activation_case(case, args, be, worker))
        except Exception as exc:  # one failing case must not stop the run
            recs = [dict(impl="-", status="error", error=f"{type(exc).__name__}: {exc}")]
        return [{**base, **rec} for rec in recs]
    try:
        arrays, flops, tag = case.build(case.batch or (args.batch if case.conv else 1), seed=index)
    except Exception as exc:
        return [dict(base, impl="-", status="error", error=f"{type(exc).__name__}: {exc}")]
    base.update(tag=tag, flops=flops)
    records, ref, vulkan = [], None, []
    for impl in implementations(case.conv is not None, be, args.device, worker and worker.info):
        if impl.name != "numpy" and ref is None:
            rec, run = dict(impl=impl.name, status="error", error="no reference: the NumPy backend failed"), None
        else:
            rec, out, run = check(impl, arrays, case.hyper(), ref, be, worker, args.budget)
            if impl.name == "numpy" and run is not None:
                ref = out.astype(np.float64)
        if impl.name == "vkconvt-auto":
            x, w, b = arrays
            rec["chosen"] = vkconvt.plan(x.shape, w.shape, *case.hyper(), bias=b is not None, backend="vulkan",
                                         device=args.device).algorithm
        records.append(rec)
        if run is not None and impl.vulkan:
            vulkan.append((rec, run))
        elif run is not None:
            time_runs([(rec, run)], args.budget)
    # The CPU libraries' worker threads (OpenBLAS, OpenMP) spin for a while after a call and would
    # slow whichever Vulkan algorithm ran next on 2 cores: let them park, then time the Vulkan
    # algorithms side by side.
    timing.settle()
    time_runs(vulkan, args.budget, be)
    for rec in records:
        if rec.get("median_s"):
            rec["gflops"] = flops / rec["median_s"] / 1e9
    return [{**base, **rec} for rec in records]


def overhead_case(case, be):
    """The whole call of a tiny layer (functional and layer object) against one pre-recorded
    dispatch of a trivial shader, measured side by side in this process."""
    if be is None:
        return [dict(impl="-", status="error", error="no Vulkan device")]
    from ..kernels import KERNELS, MatmulLocal
    from ..schedule import make_dispatch
    (x, w, b), _, tag = case.build(1, seed=0)
    hyper = case.hyper()
    layer = vkconvt.ConvTranspose1d(w, b, *hyper, backend="vulkan")
    call = lambda: vkconvt.conv_transpose1d(x, w, b, *hyper, backend="vulkan")  # noqa: E731
    dev = be.dev
    tensors = [dev.buffer(f"trivial_{r}", 1, "host") for r in "abc"]
    d = make_dispatch("matmul", MatmulLocal(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0), KERNELS["matmul"].make_spec((1, 1, 1, 1)))
    seq = dev.sequence([dev.kp.OpAlgoDispatch(dev.algorithm("matmul", tensors, d.spec, d.push(), 1), d.push())])
    ref = vkconvt.conv_transpose1d(x, w, b, *hyper, backend="numpy")
    records = []
    for name, fn in (("vkconvt-call", call), ("vkconvt-layer", lambda: layer(x)), ("trivial-dispatch", seq.eval)):
        rec = dict(impl=name, library="vkconvt", device=be.dev.info.name, algorithm="auto", status="ok", tag=tag)
        if name != "trivial-dispatch":
            _judge(rec, fn(), ref, TOL)
        records.append(rec)
    timing.settle()
    times = timing.interleaved([call, lambda: layer(x), seq.eval], budget_s=1.0, min_runs=200, max_runs=3000)
    for rec, ts in zip(records, times):
        _fill(rec, ts)
    seq.destroy()
    return records
