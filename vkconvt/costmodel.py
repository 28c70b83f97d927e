"""Predicted run time of each algorithm: a linear model over work counts, calibrated per device.

Work is counted from the very schedule the Vulkan backend would run (pieces, chunks, dispatches,
tile padding included), so chunking under a memory budget and tile waste are priced in. The
coefficients (seconds per unit of each feature) come from `python -m vkconvt tune`, which times
a calibration set on the device and fits them (non-negative least squares on relative error).
They are stored in the user's cache directory keyed by device, driver and vkconvt version;
shipped defaults cover lavapipe (measured) and a generic discrete GPU (estimated).
"""
import hashlib
import json
import math
import os
import re

import numpy as np

from . import env
from .backends import vulkan as vkb

VULKAN_FEATURES = ("calls", "dispatches", "host_bytes", "direct_mac", "direct_taps", "direct_out",
                   "mm_mac", "mm_out", "c2i_reads", "c2i_out")
NUMPY_FEATURES = ("np_calls", "np_mac", "np_taps", "np_adds")
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
SHIPPED = {"lavapipe": os.path.join(DATA, "cost_lavapipe.json"),
           "generic-gpu": os.path.join(DATA, "cost_generic_gpu.json")}


def vulkan_features(p, algorithm, cap, col_cap, tuning, max_groups):
    """Work counts of running `algorithm` for ConvParams p on the Vulkan backend."""
    sched = vkb.schedule_conv(p, algorithm, cap, col_cap, tuning)
    f = dict.fromkeys(VULKAN_FEATURES, 0.0)
    f["calls"] = 1.0
    for pc, dispatches in zip(sched.pieces, sched.dispatches):
        f["host_bytes"] += 4.0 * ((pc.n1 - pc.n0) * (pc.g1 - pc.g0) * p.cig * max(pc.lw, 1)
                                  + sched.w_floats + (pc.n1 - pc.n0) * (pc.g1 - pc.g0) * (pc.co1 - pc.co0)
                                  * (pc.t1 - pc.t0))
        for d in dispatches:
            gx, gy, gz = d.grid
            f["dispatches"] += len(vkb.split_grid(d.grid, max_groups))
            fl = d.fields
            if d.op == "conv_transpose_1d":
                _, tc, tt = d.spec
                taps = float(gz) * gy * fl["jblocks"] * fl["K"]
                f["direct_taps"] += taps
                f["direct_mac"] += taps * fl["cig"] * tc * tt
                f["direct_out"] += float(gz) * gy * p.stride * fl["jblocks"] * tc * tt
            elif d.op == "matmul":
                wx, wy, tm, tn = d.spec
                inv = float(gx) * wx * gy * wy * gz
                f["mm_mac"] += inv * tm * tn * fl["K"]
                f["mm_out"] += inv * tm * tn
            else:
                outs = float(fl["C"]) * gz * fl["t_count"]
                f["c2i_out"] += outs
                f["c2i_reads"] += outs * math.ceil(fl["K"] / fl["k_period"])
    return f, sched


def numpy_features(p):
    return {"np_calls": 1.0, "np_mac": float(p.flops) / 2, "np_taps": float(p.k),
            "np_adds": float(p.n) * p.c_out * p.l_in * p.k}


def predict(coef, feats):
    return float(sum(coef.get(k, 0.0) * v for k, v in feats.items()))


# ---------------------------------------------------------------------------------- storage
def device_key(info, version):
    text = f"{info.name}|{info.driver_name}|{info.driver_info}|{info.driver_version}|{version}"
    slug = re.sub(r"[^a-z0-9]+", "-", info.name.lower()).strip("-")[:40]
    return f"{slug}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def cache_path(info, version=None):
    from . import __version__
    return os.path.join(env.cache_dir(), f"costmodel-{device_key(info, version or __version__)}.json")


def shipped_name(info):
    return "lavapipe" if (info.type == "cpu" or "llvmpipe" in info.name.lower()) else "generic-gpu"


_loaded = {}


def load(info):
    """(coefficients dict, where they came from) for a device: the tuned file in the user's cache
    if there is one for this device, driver and vkconvt version, else the shipped default."""
    if info not in _loaded:
        path = cache_path(info)
        src = path if os.path.exists(path) else SHIPPED[shipped_name(info)]
        with open(src) as f:
            data = json.load(f)
        _loaded[info] = (data, src)
    return _loaded[info]


def save(info, data):
    path = cache_path(info)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)       # atomic: a reader never sees half a file
    _loaded.pop(info, None)
    return path


# ---------------------------------------------------------------------------------- fitting
def fit(rows, times, names):
    """Non-negative coefficients c minimising sum(((X c - t) / t)^2): active-set least squares."""
    x = np.array([[r[n] for n in names] for r in rows], dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    xr = x / t[:, None]
    scale = np.maximum(xr.max(axis=0), 1e-300)
    xs = xr / scale
    active = [j for j in range(len(names)) if np.any(x[:, j] > 0)]
    coef = np.zeros(len(names))
    while active:
        sol, *_ = np.linalg.lstsq(xs[:, active], np.ones(len(t)), rcond=None)
        if (sol >= 0).all():
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    coef = coef / scale
    pred = x @ coef
    rel = np.abs(pred - t) / t
    return dict(zip(names, coef.tolist())), {"median_rel_err": float(np.median(rel)),
                                              "max_rel_err": float(rel.max()), "n": len(t)}
