"""Predicted run time of each algorithm: a linear model over work counts, calibrated per device.

Work is counted from the very schedule the Vulkan backend would run (its pieces, chunks and
dispatches, tile padding included; each kernel's counts come from its kernel-table entry), so
chunking under a memory budget and tile waste are priced in. The coefficients (seconds per unit
of each feature) come from `python -m vkconvt tune`, which times a calibration set on the device
and fits them (non-negative least squares on relative error). They are stored in the user's
cache directory keyed by device, driver and vkconvt version; shipped defaults cover lavapipe
(measured) and a generic discrete GPU (estimated). A cache file is untrusted input: one that is
unreadable or malformed is reported once (a warning naming the file) and ignored.
"""
import hashlib
import json
import math
import os
import re
import warnings

import numpy as np

from . import env, kernels
from .params import FLOAT_BYTES

NUMPY_FEATURES = ("np_calls", "np_mac", "np_taps", "np_adds")
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
SHIPPED = {"lavapipe": os.path.join(DATA, "cost_lavapipe.json"),
           "generic-gpu": os.path.join(DATA, "cost_generic_gpu.json")}


def features(sched):
    """Work counts of a ConvSchedule (complete, or its classes of pieces with counts)."""
    f = {"calls": 1.0, "dispatches": 0.0, "host_bytes": 0.0}
    for st in sched.steps:
        pc, n = st.piece, float(st.count)
        if pc.empty:
            continue
        nb, gc, cc, ic = pc.n1 - pc.n0, pc.g1 - pc.g0, pc.co1 - pc.co0, pc.ci1 - pc.ci0
        eb = sched.params.elem_bytes          # x and weights in the storage type, the output float32
        f["host_bytes"] += n * (eb * (nb * gc * ic * pc.fold.lw + gc * ic * cc * pc.fold.kw)
                                + FLOAT_BYTES * nb * gc * cc * (pc.t1 - pc.t0))
        for d in st.dispatches:
            f["dispatches"] += n
            kern = kernels.KERNELS[d.kernel]
            for name, v in kern.work(d.local, d.spec, d.grid).items():
                key = f"{kern.shader}.{name}"     # a float16 twin is priced as its float32 kernel
                f[key] = f.get(key, 0.0) + n * v
    return f


def numpy_features(p):
    return {"np_calls": 1.0, "np_mac": float(p.flops) / 2, "np_taps": float(min(p.k, p.l_in)),
            "np_adds": float(p.n) * p.c_out * p.l_in * p.k}


def predict(coef, feats):
    return float(sum(coef.get(k, 0.0) * v for k, v in feats.items()))


# ---------------------------------------------------------------------------------- storage
def device_key(info, version):
    text = f"{info.name}|{info.driver_name}|{info.driver_info}|{info.driver_version}|{version}"
    slug = re.sub(r"[^a-z0-9]+", "-", info.name.lower()).strip("-")[:40]
    return f"{slug}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def cache_path(info, version=None):
    from .version import __version__
    return os.path.join(env.cache_dir(), f"costmodel-{device_key(info, version or __version__)}.json")


def shipped_name(info):
    return "lavapipe" if (info.type == "cpu" or "llvmpipe" in info.name.lower()) else "generic-gpu"


def validate(data):
    """The model in `data`, or ValueError saying what is wrong with it."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    for part in ("vulkan", "numpy"):
        coef = data.get(part)
        if not isinstance(coef, dict) or not coef:
            raise ValueError(f"'{part}' must be a non-empty object of coefficients")
        for k, v in coef.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"coefficient {part}.{k} = {v!r} is not a finite non-negative number")
    kc = data.get("kernels", {})
    if not isinstance(kc, dict):
        raise ValueError("'kernels' must be an object")
    for op, entries in kc.items():
        if op not in kernels.OPS or not isinstance(entries, list) or not entries:
            raise ValueError(f"kernels.{op}: not an op with a non-empty list of [kernel, spec]")
        for entry in entries:
            ok = isinstance(entry, list) and len(entry) == 2 and entry[0] in kernels.KERNELS
            kern = kernels.KERNELS.get(entry[0]) if ok else None
            if not ok or kern.op != op or not isinstance(entry[1], list) or len(entry[1]) != len(kern.spec) \
                    or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 16 for v in entry[1]):
                raise ValueError(f"kernels.{op}: bad entry {entry!r}")
    return data


def tuned_choice(data):
    """The kernel choice `tune` stored with the model ({op: ((name, spec), ...)}), or None."""
    kc = data.get("kernels")
    if not kc:
        return None
    return {op: tuple((name, tuple(spec)) for name, spec in entries) for op, entries in kc.items()}


_loaded = {}
_reported = set()


def load(info):
    """(coefficients dict, where they came from) for a device: the tuned file in the user's cache
    if there is a valid one for this device, driver and vkconvt version, else the shipped default."""
    if info not in _loaded:
        path = cache_path(info)
        data, src = None, SHIPPED[shipped_name(info)]
        if os.path.exists(path):
            try:
                with open(path) as f:
                    data = validate(json.load(f))
                src = path
            except (OSError, ValueError) as exc:    # json.JSONDecodeError is a ValueError
                data = None
                if path not in _reported:
                    _reported.add(path)
                    warnings.warn(f"vkconvt: ignoring the tuning file {path}: {exc} (re-run `python -m vkconvt "
                                  "tune` to replace it)", RuntimeWarning, stacklevel=3)
        if data is None:
            with open(src) as f:
                data = validate(json.load(f))
        _loaded[info] = (data, src)
    return _loaded[info]


def save(info, data):
    """Write a fitted model atomically; OSError (with the path) when the cache is not writable."""
    validate(data)
    path = cache_path(info)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)       # atomic: a reader never sees half a file
    _loaded.pop(info, None)
    env.bump_generation()
    return path


# ---------------------------------------------------------------------------------- fitting
def fit(rows, times, names=None):
    """Non-negative coefficients c minimising sum(((X c - t) / t)^2): active-set least squares."""
    names = sorted({k for r in rows for k in r}) if names is None else list(names)
    x = np.array([[r.get(n, 0.0) for n in names] for r in rows], dtype=np.float64)
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
