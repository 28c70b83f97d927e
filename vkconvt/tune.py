"""python -m vkconvt tune: calibrate the cost model of `auto` on one device (about a minute on lavapipe).

Times the direct and gemm algorithms (and the NumPy backend) over a calibration set that spans
both regimes, fits the cost model's coefficients and stores them in the user's cache directory,
keyed by device, driver and vkconvt version.
"""
import platform
import time

import numpy as np

from . import backends, costmodel, timing
from .params import params_from_shapes

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
        problems.append((x, w, params_from_shapes(x.shape, w.shape, s, pad, 0, g, 1)[0]))
    # Vulkan first, direct and gemm interleaved; NumPy in a pass of its own afterwards, since its
    # BLAS threads keep spinning after each call and would slow the Vulkan timings on 2 cores.
    for i, (x, w, p) in enumerate(problems):
        fns = [lambda a=a: be.conv_transpose1d(x, w, None, p, a, col_cap=budget) for a in ("direct", "gemm")]
        times = timing.interleaved(fns, budget_s=1.0, min_runs=5, max_runs=15)
        line = [f"[{i + 1}/{len(problems)}] {p.tag():44s}"]
        for algo, ts in zip(("direct", "gemm"), times):
            feats, _ = costmodel.vulkan_features(p, algo, be.max_buffer_bytes, budget, be.tuning, be.max_groups)
            vk_rows.append(feats)
            vk_times.append(float(np.median(ts)))
            line.append(f"{algo} {vk_times[-1] * 1e3:8.2f} ms")
        be.dev.clear()
        log("  ".join(line))
    for x, w, p in problems:
        (ts,) = timing.interleaved([lambda: nb.conv_transpose1d(x, w, None, p, "direct")], 0.3, 3, 9)
        np_rows.append(costmodel.numpy_features(p))
        np_times.append(float(np.median(ts)))
    vk_coef, vk_fit = costmodel.fit(vk_rows, vk_times, costmodel.VULKAN_FEATURES)
    np_coef, np_fit = costmodel.fit(np_rows, np_times, costmodel.NUMPY_FEATURES)
    from . import __version__
    info = be.device
    return {"device": {"name": info.name, "type": info.type, "driver": f"{info.driver_name} {info.driver_info}",
                       "api_version": info.api_version},
            "vkconvt": __version__, "cpu": platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tuning": {k: list(v) for k, v in be.tuning.items()},
            "vulkan": vk_coef, "numpy": np_coef, "fit": {"vulkan": vk_fit, "numpy": np_fit}}


def run(args):
    shapes = QUICK if args.quick else CALIBRATION
    print(f"calibrating on {backends.get('vulkan', device=args.device).describe()} ({len(shapes)} shapes)")
    start = time.perf_counter()
    data = calibrate(args.device, shapes)
    info = backends.get("vulkan", device=args.device).device
    path = args.out or costmodel.save(info, data)
    if args.out:
        import json
        with open(args.out, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
    fits = data["fit"]
    print(f"fit: vulkan median relative error {fits['vulkan']['median_rel_err']:.1%} (max {fits['vulkan']['max_rel_err']:.1%}), "
          f"numpy {fits['numpy']['median_rel_err']:.1%} (max {fits['numpy']['max_rel_err']:.1%})")
    print(f"saved {path}  ({time.perf_counter() - start:.0f} s)")
    return 0
