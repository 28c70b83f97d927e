"""python -m vkconvt tune: calibrate the cost model of `auto` on one device (about a minute on lavapipe).

Times the direct and gemm algorithms (and the NumPy backend) over a calibration set that spans
both regimes, fits the cost model's coefficients and stores them in the user's cache directory,
keyed by device, driver and vkconvt version.
"""
import json
import os
import platform
import sys
import time

import numpy as np

from . import backends, costmodel, planner, timing
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
]
QUICK = CALIBRATION[::3]


def calibrate(device=None, shapes=CALIBRATION, log=print):
    be = backends.get("vulkan", device=device)
    nb = backends.get("numpy")
    rng = np.random.default_rng(0)
    budget = be.max_buffer_bytes
    vk_rows, vk_times, np_rows, np_times = [], [], [], []
    problems = []
    for n, ci, co, l, k, s, pad, g in shapes:
        x = rng.standard_normal((n, ci, l)).astype(np.float32)
        w = rng.standard_normal((ci, co // g, k)).astype(np.float32)
        problems.append((x, Weights(w), params_from_shapes(x.shape, w.shape, s, pad, 0, g, 1)[0]))
    # Vulkan first, direct and gemm interleaved; NumPy in a pass of its own afterwards, since its
    # BLAS threads keep spinning after each call and would slow the Vulkan timings on 2 cores.
    for i, (x, w, p) in enumerate(problems):
        plans = [planner.make_plan(p, a, "vulkan", device, budget) for a in ("direct", "gemm")]
        fns = [lambda pl=pl: be.conv_transpose1d(pl, x, w) for pl in plans]
        times = timing.interleaved(fns, budget_s=1.0, min_runs=5, max_runs=15)
        line = [f"[{i + 1}/{len(problems)}] {p.tag():44s}"]
        for pl, ts in zip(plans, times):
            vk_rows.append(costmodel.features(pl.schedule))
            vk_times.append(float(np.median(ts)))
            line.append(f"{pl.algorithm} {vk_times[-1] * 1e3:8.2f} ms")
        be.dev.clear()
        log("  ".join(line))
    numpy_plans = [planner.make_plan(p, "direct", "numpy") for _, _, p in problems]
    for (x, w, p), pl in zip(problems, numpy_plans):
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
            "kernels": {op: [name, list(spec)] for op, (name, spec) in be.choice.items()},
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
    shapes = QUICK if args.quick else CALIBRATION
    be = backends.get("vulkan", device=args.device)
    target = args.out or costmodel.cache_path(be.device)
    why = writable(target)
    if why:
        print(f"tune: {why} (set VKCONVT_CACHE_DIR to a writable folder, or pass --out FILE)", file=sys.stderr)
        return 2
    print(f"calibrating on {be.describe()} ({len(shapes)} shapes)")
    start = time.perf_counter()
    data = calibrate(args.device, shapes)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        path = args.out
    else:
        path = costmodel.save(be.device, data)
    fits = data["fit"]
    print(f"fit: vulkan median relative error {fits['vulkan']['median_rel_err']:.1%} (max {fits['vulkan']['max_rel_err']:.1%}), "
          f"numpy {fits['numpy']['median_rel_err']:.1%} (max {fits['numpy']['max_rel_err']:.1%})")
    print(f"saved {path}  ({time.perf_counter() - start:.0f} s)")
    return 0
