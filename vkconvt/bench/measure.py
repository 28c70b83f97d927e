"""Running and timing one case on every implementation, each result checked against the NumPy
reference (finite, normalised MSE within tolerance): a wrong result is a failure, never a time."""
import functools
import time
from dataclasses import dataclass

import numpy as np

import vkconvt
from .. import timing
from ..metrics import nmse

TOL = 1e-7          # normalised MSE against the NumPy backend
TOL_TF32 = 1e-5     # TF32 rounds the operands to 10 mantissa bits
MAX_RUNS = 50

# ------------------------------------------------------------------------------------------ implementations
@dataclass
class Impl:
    name: str
    library: str
    device: str
    algorithm: str
    prepare: object          # (arrays, hyper) -> (run, fetch): run() computes, fetch(result) -> numpy
    vulkan: bool = False
    tol: float = TOL


def host(fn):
    return lambda arrays, hyper: ((lambda: fn(*arrays, *hyper)), (lambda out: out))


def torch_op(torch, op, device, tf32=False):
    def prepare(arrays, hyper):
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        ts = [None if a is None else torch.from_numpy(a).to(device) for a in arrays]
        sync()

        def run():
            with torch.no_grad():
                out = op(*ts, *hyper)
            sync()
            return out
        return run, lambda out: out.cpu().numpy()
    return prepare


def implementations(conv, be, device, torch):
    """The NumPy reference first, then vkconvt on Vulkan, then PyTorch."""
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
    if torch is not None:
        op = torch.nn.functional.conv_transpose1d if conv else torch.matmul
        impls.append(Impl("torch-cpu", "torch", "cpu", "float32", torch_op(torch, op, "cpu")))
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
            impls.append(Impl("torch-cuda", "torch", gpu, "float32", torch_op(torch, op, "cuda")))
            impls.append(Impl("torch-cuda-tf32", "torch", gpu, "tf32", torch_op(torch, op, "cuda", True), tol=TOL_TF32))
    return impls


def check(impl, arrays, hyper, ref, be):
    """Warm-up call of one implementation, checked against the reference (None: this is the
    reference). Returns (record fields, output, run); run is None when the result is not ok."""
    rec = dict(impl=impl.name, library=impl.library, device=impl.device, algorithm=impl.algorithm, status="ok")
    dev = be.dev if impl.vulkan else None
    try:
        run, fetch = impl.prepare(arrays, hyper)
        if dev is not None:
            dev.clear()          # drop cached plans so that this algorithm's peak memory is its own
            dev.reset_peak()
        t0 = time.perf_counter()
        out = fetch(run())
        rec.update(first_s=time.perf_counter() - t0, nmse=0.0 if ref is None else nmse(out, ref))
        if dev is not None:
            rec["peak_bytes"] = dev.peak_bytes
            if len(arrays) == 3:
                rec["workspace_bytes"] = be.last_run.workspace_bytes
        if not np.isfinite(out).all():
            rec.update(status="non-finite", error="the result has NaN or Inf")
        elif rec["nmse"] > impl.tol:
            rec.update(status="wrong", error=f"normalised MSE {rec['nmse']:.3g} > {impl.tol:g}")
        return rec, out, (run if rec["status"] == "ok" else None)
    except Exception as exc:  # one failing case or implementation must not stop the run
        rec.update(status="error", error=f"{type(exc).__name__}: {exc}")
        return rec, None, None


def time_runs(entries, budget, be=None):
    """Timed calls of several implementations, interleaved (timing.interleaved). entries:
    [(rec, run)]; fills the records with runs, median, min, std (and device time for Vulkan)."""
    if not entries:
        return
    device_ns = [[] for _ in entries]

    def device_time(i):
        if be is not None and entries[i][0].get("workspace_bytes") is not None:
            device_ns[i].append(be.last_run.device_ns)
    times = timing.interleaved([run for _, run in entries], budget, 3, MAX_RUNS,
                               slow_s=max(rec["first_s"] for rec, _ in entries), after_each=device_time)
    for (rec, _), ts, dns in zip(entries, times, device_ns):
        rec.update(runs=len(ts), median_s=float(np.median(ts)), min_s=min(ts), std_s=float(np.std(ts)))
        if dns:
            rec["device_median_s"] = float(np.median(dns)) / 1e9 or None


def bench_case(case, index, suite, args, be, torch):
    base = dict(suite=suite, kind=case.kind, group=case.group, case=case.name, x=case.x, calls=case.calls)
    try:
        arrays, flops, tag = case.build(args.batch if case.conv else 1, seed=index)
    except Exception as exc:
        return [dict(base, impl="-", status="error", error=f"{type(exc).__name__}: {exc}")]
    base.update(tag=tag, flops=flops)
    records, ref, vulkan = [], None, []
    for impl in implementations(case.conv is not None, be, args.device, torch):
        if impl.name != "numpy" and ref is None:
            rec, run = dict(impl=impl.name, status="error", error="no reference: the NumPy backend failed"), None
        else:
            rec, out, run = check(impl, arrays, case.hyper(), ref, be)
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
