"""python -m vkconvt tune: measure this device, then remember what was fastest.

1. Kernels: for each op and shape class (dense and depthwise transposed convolutions, the gemm
   path's matrix products), every kernel variant the device can run, each with a small search
   over its specialization constants (KERNEL_SEARCH), timed side by side (interleaved); the
   fastest become the device's kernel choice.
2. Cost model: with that choice, the direct and gemm algorithms (and the NumPy backend) are timed
   over a calibration set that spans both regimes, and the model of `auto` is fitted.
Both are stored in the user's cache directory, keyed by device, driver and vkconvt version
(costmodel.cache_path); a later process loads them. About two minutes on lavapipe (the first run
also compiles the pipelines, which Mesa then caches); --quick: only the kernels' default specs and
a third of the calibration set.
"""
import json
import os
import platform
import sys
import time

import numpy as np

from . import backends, costmodel, kernels, planner, timing
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
QUICK = CALIBRATION[::3]

# Shape classes the kernel choice is made on: (class, op, algorithm, shapes as in CALIBRATION).
CLASSES = [
    ("dense", "conv_transpose_1d", "direct", [(1, 512, 256, 86, 16, 8, 4, 1), (1, 128, 64, 2048, 4, 2, 1, 1)]),
    ("depthwise", "conv_transpose_1d", "direct", [(1, 192, 192, 2986, 12, 2, 0, 192)]),
    ("gemm", "matmul", "gemm", [(1, 512, 256, 86, 16, 8, 4, 1), (1, 128, 64, 2048, 4, 2, 1, 1)]),
]
# Alternatives to each kernel's default spec that tune tries (full run only). Kernels whose
# choose() derives the whole spec per piece (the GPU ones) have none.
KERNEL_SEARCH = {
    "conv_transpose_1d": [(8, 8, 8), (8, 8, 4)],
    "conv_transpose_1d_sg": [(8, 8, 48, 1, 8, 0, 0, 2), (8, 8, 48, 1, 8, 0, 1, 1)],
    "conv_transpose_1d_dw": [(8, 2, 12, 8, 2, 0)],
    "matmul": [(8, 1, 4, 8)],
    "matmul_sg": [(8, 32, 4, 8, 4)],
}


def _problems(shapes, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for n, ci, co, l, k, s, pad, g in shapes:
        x = rng.standard_normal((n, ci, l)).astype(np.float32)
        w = (rng.standard_normal((ci, co // g, k)) / np.sqrt(ci * k / g)).astype(np.float32)
        out.append((x, Weights(w, keep=True), params_from_shapes(x.shape, w.shape, s, pad, 0, g, 1)[0]))
    return out


def choose_kernels(be, quick=False, log=print):
    """{op: ((name, spec), ...)}: per shape class, the fastest kernel variant (and spec) this
    device runs, measured side by side; the portable kernel stays last as the fallback."""
    winners = {}
    for cls, op, algo, shapes in CLASSES:
        problems = _problems(shapes)
        cands = []
        for kern in kernels.variants(op):
            specs = [tuple(kern.defaults[be.device_class])] + ([] if quick else KERNEL_SEARCH.get(kern.name, []))
            for spec in specs:
                loc_ok = all(kern.supported(be.kernel_device, spec) for _ in problems)
                if loc_ok:
                    cands.append((kern.name, spec))
        timed = []
        saved = be.choice
        for name, spec in cands:
            be.choice = dict(saved, **{op: ((name, spec),) + kernels.only(kernels.FALLBACK[op], be.device_class)})
            plans = [planner.make_plan(p, algo, "vulkan", be.index, be.max_buffer_bytes) for _, _, p in problems]
            used = {d.kernel for pl in plans for st in pl.schedule.steps for d in st.dispatches}
            if name not in used:
                continue            # the variant does not take this class (e.g. dw on dense layers)
            fns = [lambda pl=pl, x=x, w=w: be.conv_transpose1d(pl, x, w) for (x, w, _), pl in zip(problems, plans)]
            for f in fns:
                f()                 # compile the pipelines before timing
            timed.append(((name, spec), fns))
        be.choice = saved
        if not timed:
            continue
        times = timing.interleaved([lambda fs=fs: [f() for f in fs] for _, fs in timed], budget_s=1.0, min_runs=3,
                                   max_runs=10)
        medians = [float(np.median(t)) for t in times]
        best = int(np.argmin(medians))
        winners[cls] = timed[best][0]
        log(f"  {cls:9s} " + "  ".join(f"{n}{tuple(s)} {m * 1e3:.1f} ms" + (" *" if i == best else "")
                                       for i, ((n, s), m) in enumerate(zip([c for c, _ in timed], medians))))
        be.dev.clear()
    choice = dict(be.choice)
    conv = [winners[c] for c in ("depthwise", "dense") if c in winners]
    conv = list(dict.fromkeys(conv))
    if conv:
        choice["conv_transpose_1d"] = tuple(conv) + kernels.only(kernels.FALLBACK["conv_transpose_1d"],
                                                                  be.device_class)
    if "gemm" in winners:
        choice["matmul"] = (winners["gemm"],) + kernels.only(kernels.FALLBACK["matmul"], be.device_class)
    return {op: tuple(dict.fromkeys(entries)) for op, entries in choice.items()}


def calibrate(device=None, shapes=CALIBRATION, log=print):
    """Time direct and gemm (and NumPy) over `shapes` with the backend's kernel choice; fit."""
    be = backends.get("vulkan", device=device)
    nb = backends.get("numpy")
    budget = be.max_buffer_bytes
    vk_rows, vk_times, np_rows, np_times = [], [], [], []
    problems = _problems(shapes)
    # Vulkan first, direct and gemm interleaved; NumPy in a pass of its own afterwards, since its
    # BLAS threads keep spinning after each call and would slow the Vulkan timings on 2 cores.
    for i, (x, w, p) in enumerate(problems):
        plans = [planner.make_plan(p, a, "vulkan", device, budget) for a in ("direct", "gemm")]
        fns = [lambda pl=pl: be.conv_transpose1d(pl, x, w) for pl in plans]
        times = timing.interleaved(fns, budget_s=1.0, min_runs=5, max_runs=15)
        line = [f"  [{i + 1}/{len(problems)}] {p.tag():44s}"]
        for pl, ts in zip(plans, times):
            vk_rows.append(costmodel.features(pl.schedule))
            vk_times.append(float(np.median(ts)))
            line.append(f"{pl.algorithm} {vk_times[-1] * 1e3:8.2f} ms")
        be.dev.clear()
        log("  ".join(line))
    for x, w, p in problems:
        pl = planner.make_plan(p, "direct", "numpy")
        (ts,) = timing.interleaved([lambda: nb.conv_transpose1d(pl, x, w)], 0.3, 3, 9)
        np_rows.append(costmodel.numpy_features(p))
        np_times.append(float(np.median(ts)))
    vk_coef, vk_fit = costmodel.fit(vk_rows, vk_times)
    np_coef, np_fit = costmodel.fit(np_rows, np_times, costmodel.NUMPY_FEATURES)
    from .version import __version__
    info = be.device
    return {"device": {"name": info.name, "type": info.type, "driver": f"{info.driver_name} {info.driver_info}",
                       "api_version": info.api_version},
            "vkconvt": __version__, "cpu": platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "kernels": {op: [[name, list(spec)] for name, spec in entries] for op, entries in be.choice.items()},
            "vulkan": vk_coef, "numpy": np_coef, "fit": {"vulkan": vk_fit, "numpy": np_fit}}


def writable(path):
    """None if a file can be written at path (its folder created if needed), else why not."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".vkconvt-write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as exc:
        return f"cannot write to {folder}: {exc.strerror or exc}"
    return None


def run(args):
    be = backends.get("vulkan", device=args.device)
    target = args.out or costmodel.cache_path(be.device)
    why = writable(target)
    if why:
        print(f"tune: {why} (set VKCONVT_CACHE_DIR to a writable folder, or pass --out FILE)", file=sys.stderr)
        return 2
    shapes = QUICK if args.quick else CALIBRATION
    start = time.perf_counter()
    print(f"tuning {be.describe()}")
    print("kernels (median of the class's shapes, interleaved; * = chosen):", flush=True)
    be.choice = choose_kernels(be, quick=args.quick)
    print("chosen: " + "; ".join(f"{op}: " + ", ".join(f"{n}{tuple(s)}" for n, s in entries)
                                 for op, entries in be.choice.items()))
    print(f"cost model ({len(shapes)} shapes):", flush=True)
    data = calibrate(args.device, shapes)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        path = args.out
    else:
        path = costmodel.save(be.device, data)
    fits = data["fit"]
    print(f"fit: vulkan median relative error {fits['vulkan']['median_rel_err']:.1%} "
          f"(max {fits['vulkan']['max_rel_err']:.1%}), numpy {fits['numpy']['median_rel_err']:.1%} "
          f"(max {fits['numpy']['max_rel_err']:.1%})")
    print(f"saved {path}  ({time.perf_counter() - start:.0f} s)")
    return 0
