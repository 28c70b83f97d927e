"""python -m vkconvt tune: measure this device, then remember what was fastest.

1. Kernels: for each op and shape class (depthwise and dense transposed convolutions, the gemm
   path's matrix products, conv1d, the weight gradient), every kernel variant the device can run, each
   with the search over its
   specialization constants its kernel-table entry declares (`search`), timed side by side
   (interleaved); the fastest become the device's kernel choice. On GPUs the kernels are timed by the
   device's own timestamps (transfers and submission costs would hide their differences); on CPU
   devices by the wall clock.
2. Cost model: with that choice, the direct and gemm algorithms (and the NumPy backend) of each op
   (conv_transpose1d, conv1d, conv_grad_weight) are timed over a calibration set that spans both
   regimes (whole calls: what `auto` chooses between), and one model of `auto` is fitted to all.
Both are stored in the user's cache directory, keyed by device, driver and vkconvt version
(costmodel.cache_path); the next plan made in this or any later process uses them (a new tuning
file makes a new device profile; nothing live is changed). About a minute on lavapipe (the first
run also compiles the pipelines, which Mesa then caches); --quick: only the kernels' default specs
and a third of the calibration set.
"""
import logging
import os
import platform
import sys
import time

import numpy as np

from . import backends, calls, costmodel, kernels, planner, profile, settings, timing
from .ops.conv1d import Conv1dParams
from .ops.conv_grad_weight import GradWeightParams
from .params import Weights, params_from_shapes

# (N, C_in, C_out, L_in, K, stride, padding, groups): real-layer-like shapes on both sides of the
# direct/gemm crossover, a few with small C_in, big padding, depthwise or long inputs.
CALIBRATION = [
    (1, 512, 256, 86, 16, 8, 4, 1), (1, 256, 128, 344, 16, 8, 4, 1), (1, 128, 64, 1376, 4, 2, 1, 1),
    (1, 32, 32, 4096, 4, 2, 1, 1), (1, 2, 64, 4096, 8, 4, 2, 1), (1, 1, 32, 8192, 16, 8, 4, 1),
    (1, 64, 64, 512, 3, 1, 1, 1), (1, 1024, 512, 32, 8, 4, 2, 1), (1, 64, 64, 1024, 16, 8, 60, 1),
    (1, 16, 16, 2048, 32, 16, 8, 1), (1, 256, 256, 1024, 8, 4, 2, 256), (1, 8, 1, 16384, 7, 1, 3, 1),
    (2, 128, 128, 256, 8, 4, 2, 1), (1, 512, 512, 64, 4, 2, 1, 1), (1, 4, 4, 32768, 2, 2, 0, 1),
    (1, 96, 48, 700, 10, 5, 3, 1), (1, 1024, 1024, 8, 16, 8, 4, 1), (1, 8, 8, 256, 64, 32, 16, 1),
    (1, 64, 32, 8192, 4, 2, 1, 1), (1, 128, 128, 96, 2, 2, 0, 128),
    (1, 1024, 512, 48, 16, 8, 4, 1), (1, 768, 384, 200, 16, 8, 4, 1), (1, 256, 128, 1000, 10, 5, 0, 1),
    (1, 384, 192, 2000, 4, 2, 1, 1), (1, 192, 96, 3000, 8, 4, 2, 1), (1, 48, 24, 8000, 4, 2, 1, 1),
    (1, 96, 96, 3000, 12, 2, 0, 96), (1, 512, 256, 200, 12, 6, 0, 1), (1, 2048, 1024, 20, 16, 8, 4, 1),
    (1, 256, 64, 512, 16, 2, 0, 1),
    # few output channels (ISTFT-like: the gemm path wins by far there)
    (1, 1025, 1, 64, 2048, 512, 0, 1), (1, 128, 4, 3000, 8, 4, 2, 1), (1, 512, 2, 200, 64, 16, 0, 1),
]
# conv1d, (N, C_in, C_out, L_in, K, stride, padding, dilation, groups): resblock-like 'same' layers, the
# grad_input of upsampling layers (conv1d of grad_out with the transposed conv's weight), few channels
CALIBRATION_CONV1D = [
    (1, 128, 128, 1376, 3, 1, 1, 1, 1), (1, 64, 64, 2752, 7, 1, 9, 3, 1), (1, 32, 32, 5504, 11, 1, 25, 5, 1),
    (1, 256, 512, 688, 16, 8, 4, 1, 1), (1, 128, 256, 2752, 4, 2, 1, 1, 1), (1, 64, 128, 5504, 4, 2, 1, 1, 1),
    (2, 64, 64, 512, 3, 1, 1, 1, 1), (1, 80, 256, 200, 7, 1, 3, 1, 1), (1, 32, 1, 4096, 7, 1, 3, 1, 1),
    (1, 192, 192, 1000, 12, 2, 5, 1, 192), (1, 512, 512, 64, 16, 8, 4, 1, 1), (1, 16, 16, 8192, 3, 1, 1, 1, 1),
]
# conv_grad_weight, as CALIBRATION's transposed convs (N, C_in, C_out, L_in, K, stride, padding, groups)
CALIBRATION_GRAD_WEIGHT = [
    (1, 512, 256, 86, 16, 8, 4, 1), (1, 256, 128, 344, 16, 8, 4, 1), (1, 128, 64, 1376, 4, 2, 1, 1),
    (1, 64, 32, 2752, 4, 2, 1, 1), (2, 128, 128, 256, 8, 4, 2, 1), (1, 32, 32, 4096, 4, 2, 1, 1),
    (1, 1024, 512, 32, 8, 4, 2, 1), (1, 96, 96, 1500, 12, 2, 0, 96), (1, 256, 64, 512, 16, 2, 0, 1),
]
SHAPES = {"conv_transpose1d": CALIBRATION, "conv1d": CALIBRATION_CONV1D, "conv_grad_weight": CALIBRATION_GRAD_WEIGHT}
QUICK = {op: shapes[::3] for op, shapes in SHAPES.items()}

# Shape classes the kernel choice is made on: (class, kernel op, op, algorithm, shapes as in SHAPES[op]).
# A kernel op's choice lists its classes' winners in this order (depthwise first: its kernel takes
# depthwise pieces only), then its portable kernel.
CLASSES = [
    ("depthwise", "conv_transpose_1d", "conv_transpose1d", "direct", [(1, 192, 192, 2986, 12, 2, 0, 192)]),
    ("dense", "conv_transpose_1d", "conv_transpose1d", "direct",
     [(1, 512, 256, 86, 16, 8, 4, 1), (1, 128, 64, 2048, 4, 2, 1, 1)]),
    ("gemm", "matmul", "conv_transpose1d", "gemm", [(1, 512, 256, 86, 16, 8, 4, 1), (1, 128, 64, 2048, 4, 2, 1, 1)]),
    ("conv1d", "conv1d", "conv1d", "direct", [(1, 128, 128, 1376, 3, 1, 1, 1, 1), (1, 256, 512, 688, 16, 8, 4, 1, 1)]),
    ("grad-weight", "conv1d_grad_weight", "conv_grad_weight", "direct",
     [(1, 512, 256, 86, 16, 8, 4, 1), (1, 128, 64, 1376, 4, 2, 1, 1)]),
]


def _problems(shapes, op="conv_transpose1d", seed=0):
    """[(call arguments, params)] of op for shapes as in SHAPES[op], random data (weights kept)."""
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        if op == "conv1d":
            n, ci, co, l, k, s, pad, d, g = shape
            p = Conv1dParams(n, ci, l, co, k, (l + 2 * pad - d * (k - 1) - 1) // s + 1, s, pad, d, g)
            w = (rng.standard_normal((co, ci // g, k)) / np.sqrt(ci * k / g)).astype(np.float32)
        else:
            n, ci, co, l, k, s, pad, g = shape
            w = (rng.standard_normal((ci, co // g, k)) / np.sqrt(ci * k / g)).astype(np.float32)
            p = params_from_shapes((n, ci, l), w.shape, s, pad, 0, g, 1)[0]
        x = rng.standard_normal((n, ci, l)).astype(np.float32)
        if op == "conv_grad_weight":
            p = GradWeightParams(n, ci, l, co, p.l_out, k, s, pad, 1, g)
            args = {"x": x, "grad_out": rng.standard_normal((n, co, p.l_out)).astype(np.float32)}
        else:
            wt = Weights(w, keep=True)
            args = {"x": x, "weights": wt, "owner": wt.owner}
        out.append((args, p))
    return out


def _call(plan, args):
    """One call of a plan (the weights are kept, as a layer's)."""
    return lambda: calls.execute(plan, args)


def _times(fns, dev, kernel_time, budget=1.0, min_runs=3, max_runs=10):
    """Median seconds per callable, interleaved: device time (timestamps) when kernel_time, else wall."""
    if not kernel_time:
        return [float(np.median(t)) for t in timing.interleaved(fns, budget_s=budget, min_runs=min_runs,
                                                                 max_runs=max_runs)]
    out = [[] for _ in fns]
    with settings.override(timestamps=True):
        for fn in fns:
            fn()                                    # records the timestamped sequences
        for _ in range(min_runs):
            for i, fn in enumerate(fns):
                before = dev.device_ns
                fn()
                out[i].append((dev.device_ns - before) / 1e9)
    return [float(np.median(t)) for t in out]


def choose_kernels(device=None, quick=False, log=print, search=None):
    """{kernel op: ((name, spec), ...)}: per shape class, the fastest kernel variant (and spec) this
    device runs, measured side by side; the portable kernel stays last as the fallback."""
    be = backends.get("vulkan", device=device)
    base = be.profile()
    kernel_time = base.device_class == "gpu" and be.device.timestamps
    winners = {}
    for cls, kop, op, algo, shapes in CLASSES:
        problems = _problems(shapes, op)
        timed = []
        for kern in kernels.variants(kop):
            searched = not quick if search is None else search
            specs = [kern.defaults[base.device_class]] + (kern.search_specs(base.device_class)[1:] if searched else [])
            for spec in specs:
                if not kern.supported(base.kernel_device, spec):
                    continue
                entry = ((kern.name, spec),) + kernels.only(kernels.FALLBACK[kop], base.device_class)
                with settings.override(kernels={kop: entry}):
                    plans = [planner.make_plan(op, p, algo, "vulkan", device, kept=True) for _, p in problems]
                used = {d.kernel for pl in plans for st in pl.schedule.steps for d in st.dispatches}
                if kern.name not in used:
                    continue            # the variant does not take this class (e.g. dw on dense layers)
                fns = [_call(pl, args) for (args, _), pl in zip(problems, plans)]
                for f in fns:
                    f()                 # compile the pipelines before timing
                timed.append(((kern.name, spec), lambda fs=fns: [f() for f in fs]))
        if not timed:
            continue
        medians = _times([f for _, f in timed], be.dev, kernel_time)
        best = int(np.argmin(medians))
        winners[cls] = timed[best][0]
        log(f"  {cls:11s} " + "  ".join(f"{n}{planner.spec_text(n, s)} {m * 1e3:.2f} ms" + (" *" if i == best else "")
                                         for i, ((n, s), m) in enumerate(zip([c for c, _ in timed], medians))))
        be.dev.clear()
    choice = base.choice
    for kop in dict.fromkeys(c[1] for c in CLASSES):
        won = list(dict.fromkeys(winners[c[0]] for c in CLASSES if c[1] == kop and c[0] in winners))
        if won:
            choice[kop] = tuple(won) + kernels.only(kernels.FALLBACK[kop], base.device_class)
    return {op: tuple(dict.fromkeys(entries)) for op, entries in choice.items()}


def calibrate(device=None, shapes=None, choice=None, log=print):
    """Time direct and gemm (and NumPy) of each op over its shapes ({op: shapes}, default SHAPES)
    with the kernel choice; fit one cost model to all of them."""
    be = backends.get("vulkan", device=device)
    override = {} if choice is None else {"kernels": {op: entries for op, entries in choice.items()}}
    vk_rows, vk_times, np_rows, np_times = [], [], [], []
    problems = [(op, args, p) for op, shp in (shapes or SHAPES).items() for args, p in _problems(shp, op)]
    kernel_time = be.profile().device_class == "gpu" and be.device.timestamps
    # Vulkan first, direct and gemm interleaved; NumPy in a pass of its own afterwards, since its
    # BLAS threads keep spinning after each call and would slow the Vulkan timings on 2 cores.
    with settings.override(**override):
        for i, (op, args, p) in enumerate(problems):
            plans = [planner.make_plan(op, p, a, "vulkan", device, be.device.max_storage_buffer_range)
                     for a in ("direct", "gemm")]
            fns = [_call(pl, args) for pl in plans]
            times = timing.interleaved(fns, budget_s=1.0, min_runs=5, max_runs=15)
            line = [f"  [{i + 1}/{len(problems)}] {op:16s} {p.tag():48s}"]
            kernel = _times(fns, be.dev, True, min_runs=2) if kernel_time else None
            for j, (pl, ts) in enumerate(zip(plans, times)):
                vk_rows.append(costmodel.features(pl.schedule, kept=False))
                vk_times.append(float(np.median(ts)))
                line.append(f"{pl.algorithm} {vk_times[-1] * 1e3:8.2f} ms"
                            + (f" (kernels {kernel[j] * 1e3:.2f})" if kernel else ""))
            be.dev.clear()
            log("  ".join(line))
    for op, args, p in problems:
        pl = planner.make_plan(op, p, "direct", "numpy")
        (ts,) = timing.interleaved([_call(pl, args)], 0.3, 3, 9)
        np_rows.append(pl.op.numpy_features(p))
        np_times.append(float(np.median(ts)))
    vk_coef, vk_fit = costmodel.fit(vk_rows, vk_times)
    np_coef, np_fit = costmodel.fit(np_rows, np_times, costmodel.NUMPY_FEATURES)
    from .version import __version__
    info = be.device
    return {"device": {"name": info.name, "type": info.type, "driver": f"{info.driver_name} {info.driver_info}",
                       "api_version": info.api_version},
            "vkconvt": __version__, "cpu": platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "kernels": {op_: [[name, list(spec)] for name, spec in entries]
                        for op_, entries in (choice or be.profile().choice).items()},
            "vulkan": vk_coef, "numpy": np_coef, "fit": {"vulkan": vk_fit, "numpy": np_fit}}


def writable(path, need_bytes=1 << 20):
    """None if a file can be written at path (its folder created if needed), else why not: a fresh
    temporary file is made and removed (no fixed name is opened, nothing is followed), and the
    folder must have room for need_bytes."""
    import tempfile
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".vkconvt-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
        st = os.statvfs(folder)
        if st.f_bavail * st.f_frsize < need_bytes:
            return f"{folder} has less than {need_bytes} bytes free"
    except OSError as exc:
        return f"cannot write to {folder}: {exc.strerror or exc}"
    return None


def auto(info, path):
    """VKCONVT_TUNE=auto's tune (profile.on_first_use): `tune --quick` on device `info`, saved at
    `path`; its progress goes to the vkconvt.tune logger."""
    why = writable(path)
    if why:
        raise OSError(f"{why} (set VKCONVT_CACHE_DIR to a writable folder)")
    log = logging.getLogger("vkconvt.tune").info
    with profile.tuning():
        choice = choose_kernels(info.index, quick=True, log=log)
        data = calibrate(info.index, QUICK, choice, log=log)
    costmodel.save(info, data, path)


profile.register_auto_tune(auto)


def run(args):
    with profile.tuning():      # measuring: no first-use hint, no automatic tune meanwhile
        return _run(args)


def _run(args):
    be = backends.get("vulkan", device=args.device)
    target = args.out or costmodel.cache_path(be.device)
    why = writable(target)
    if why:
        print(f"tune: {why} (set VKCONVT_CACHE_DIR to a writable folder, or pass --out FILE)", file=sys.stderr)
        return 2
    shapes = QUICK if args.quick else SHAPES
    start = time.perf_counter()
    print(f"tuning {be.describe()}")
    how = "device timestamps" if be.profile().device_class == "gpu" and be.device.timestamps else "wall clock"
    print(f"kernels (median of the class's shapes, {how}, interleaved; * = chosen):", flush=True)
    choice = choose_kernels(args.device, quick=args.quick, search=True if getattr(args, "search", False) else None)
    print("chosen: " + "; ".join(f"{op}: " + ", ".join(f"{n}{planner.spec_text(n, s)}" for n, s in entries)
                                 for op, entries in choice.items()))
    print(f"cost model ({sum(map(len, shapes.values()))} shapes; whole calls, wall clock):", flush=True)
    data = calibrate(args.device, shapes, choice)
    try:
        path = costmodel.save(be.device, data, args.out)
    except OSError as exc:
        print(f"tune: could not save the tuning file: {exc}", file=sys.stderr)
        return 2
    profile.load(be.device)          # the new profile: later plans in this process use it
    fits = data["fit"]
    print(f"fit: vulkan median relative error {fits['vulkan']['median_rel_err']:.1%} "
          f"(max {fits['vulkan']['max_rel_err']:.1%}), numpy {fits['numpy']['median_rel_err']:.1%} "
          f"(max {fits['numpy']['max_rel_err']:.1%})")
    print(f"saved {path}  ({time.perf_counter() - start:.0f} s)")
    return 0
