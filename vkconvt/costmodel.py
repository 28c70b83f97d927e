"""Predicted run time of a schedule: a linear model over work counts, calibrated per device.

Work is counted from the very schedule a backend would run, whatever the op (its pieces, chunks,
dispatches, submissions and host transfers, tile padding included; each kernel's counts come from
its kernel-table entry), so chunking under a memory budget and tile waste are priced in. The
coefficients (seconds per unit of each feature) come from `python -m vkconvt tune`, which times a
calibration set on the device and fits them (non-negative least squares on relative error). A
count the model has no coefficient for (a kernel tune never timed) is priced like the costliest
kernel the model knows for that count, never as free. Models are stored in the user's cache
directory keyed by device, driver and vkconvt version; shipped defaults cover lavapipe (measured)
and a generic GPU. A tuning file is untrusted input: it is read only if it is a regular file of
bounded size, every field is checked (kernel specs against the kernel table and the device), and
anything wrong is reported once (a warning naming the file and the field) and ignored.
"""
import errno
import hashlib
import json
import math
import os
import re
import stat
import tempfile
import warnings

import numpy as np

from . import env, kernels

NUMPY_FEATURES = ("np_calls", "np_mac", "np_taps", "np_adds")
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
SHIPPED = {"lavapipe": os.path.join(DATA, "cost_lavapipe.json"),
           "generic-gpu": os.path.join(DATA, "cost_generic_gpu.json")}
MAX_FILE_BYTES = 1 << 20        # a tuning file is a few KiB; anything larger is not one
# A count with no coefficient and no kernel of the model to borrow one from (seconds per unit).
FALLBACK_UNIT = {"mac": 1e-11, "out": 1e-10, "taps": 1e-10, "reads": 1e-10, "inv": 1e-9, "tiles": 1e-7,
                 "groups": 1e-7, "fast": 0.0}


def features(sched, kept=False):
    """Work counts of a Schedule (complete, or its classes of pieces with counts). kept: the
    call's parameters (tagged uploads: a layer's weights) are already on the device."""
    f = {"calls": 1.0, "dispatches": 0.0, "submissions": 0.0, "host_bytes": 0.0}
    for st in sched.steps:
        n = float(st.count)
        if not st.dispatches:
            continue
        f["submissions"] += n
        for t in st.uploads + st.downloads:
            if not (kept and t.tag is not None):
                f["host_bytes"] += n * t.nbytes
        for d in st.dispatches:
            f["dispatches"] += n
            kern = kernels.KERNELS[d.kernel]
            for name, v in kern.work(d.local, d.spec, d.grid).items():
                key = f"{kern.shader}.{name}"     # a float16 twin is priced as its float32 kernel
                f[key] = f.get(key, 0.0) + n * v
    return f


def predict(coef, feats):
    """Seconds: sum of coefficient x count; a kernel count the model lacks borrows the largest
    coefficient the model has for that count (any kernel), else FALLBACK_UNIT."""
    total = 0.0
    for k, v in feats.items():
        c = coef.get(k)
        if c is None:
            c = _borrowed(coef, k)
        total += c * v
    return float(total)


def _borrowed(coef, key):
    if "." not in key:
        return 0.0 if key in ("calls", "dispatches", "submissions", "host_bytes") else FALLBACK_UNIT.get(key, 1e-9)
    count = key.rsplit(".", 1)[1]
    known = [v for k, v in coef.items() if k.endswith("." + count)]
    return max(known) if known else FALLBACK_UNIT.get(count, 1e-9)


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


def _number(part, k, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or v > 1e3:
        raise ValueError(f"coefficient {part}.{k} = {v!r} is not a finite number in [0, 1000] seconds")


def validate(data, kernel_device=None):
    """The model in `data` (its checked parts only: vulkan, numpy, kernels), or ValueError naming the
    field that is wrong. Kernel entries are held against the kernel table (op, spec fields, their
    ranges and the kernel's constraint rules) and, given one, the device. One bad entry rejects the
    whole file: a file is one run of `tune` (its kernel choice and the model fitted with it)."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    for part in ("vulkan", "numpy"):
        coef = data.get(part)
        if not isinstance(coef, dict) or not coef:
            raise ValueError(f"'{part}' must be a non-empty object of coefficients")
        for k, v in coef.items():
            if not isinstance(k, str) or len(k) > 100:
                raise ValueError(f"'{part}' has a bad coefficient name {k!r}")
            _number(part, k, v)
    kc = data.get("kernels", {})
    if not isinstance(kc, dict):
        raise ValueError("'kernels' must be an object")
    for op, entries in kc.items():
        if op not in kernels.OPS or not isinstance(entries, list) or not entries or len(entries) > 16:
            raise ValueError(f"kernels.{op}: not a kernel op with a list of 1 to 16 [kernel, spec] entries")
        for i, entry in enumerate(entries):
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
                raise ValueError(f"kernels.{op}[{i}]: expected [kernel name, spec], got {entry!r}")
            name, spec = entry
            if name not in kernels.KERNELS or kernels.KERNELS[name].op != op:
                raise ValueError(f"kernels.{op}[{i}]: {name!r} is not a kernel of {op}")
            try:
                kernels.check_spec(name, spec, kernel_device)
            except ValueError as exc:
                raise ValueError(f"kernels.{op}[{i}]: {exc}") from None
    # nothing unchecked goes on (a profile is hashed: an unchecked part could hold anything)
    return {k: data[k] for k in ("vulkan", "numpy", "kernels") if k in data}


def tuned_choice(data, kernel_device=None):
    """The kernel choice `tune` stored with the model ({op: ((name, Spec), ...)}), or None."""
    kc = data.get("kernels")
    if not kc:
        return None
    return {op: tuple((name, kernels.check_spec(name, spec, kernel_device)) for name, spec in entries)
            for op, entries in kc.items()}


def read_untrusted(path, max_bytes=MAX_FILE_BYTES):
    """The JSON in `path`, read only if it is a regular file of at most max_bytes (never blocking on
    a FIFO or device, never following it to /dev/zero): ValueError/OSError saying why not."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > max_bytes:
            raise ValueError(f"{st.st_size} bytes, more than a tuning file's {max_bytes}")
        chunks, size = [], 0
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            size += len(b)
            if size > max_bytes:
                raise ValueError(f"more than a tuning file's {max_bytes} bytes")
            chunks.append(b)
    finally:
        os.close(fd)
    try:
        return json.loads(b"".join(chunks).decode("utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc})") from None


_reported = set()


def report(path, exc):
    """Warn once per file and problem that a tuning file is ignored."""
    key = (path, str(exc))
    if key not in _reported:
        _reported.add(key)
        warnings.warn(f"vkconvt: ignoring the tuning file {path}: {exc} (re-run `python -m vkconvt tune` to "
                      "replace it)", RuntimeWarning, stacklevel=4)


def shipped(name):
    path = SHIPPED[name]
    with open(path) as f:
        return validate(json.load(f)), path


def load(info, stamp=None, kernel_device=None):
    """(model dict, where it came from) for a device: the tuned file in the user's cache if there is
    a valid one for this device, driver and vkconvt version, else the shipped default. `stamp`
    (size, mtime, inode of the file, or None) is what the caller keyed its cache on."""
    path = cache_path(info)
    if stamp is not None or os.path.lexists(path):
        try:
            return validate(read_untrusted(path), kernel_device or kernels.device_of(info)), path
        except (OSError, ValueError) as exc:    # json.JSONDecodeError is a ValueError
            report(path, exc)
    return shipped(shipped_name(info))


def save(info, data, path=None):
    """Write a fitted model atomically (a fresh temporary file in the target folder, then a rename:
    no fixed name is ever opened, and a symlink at the target is replaced, not followed); OSError
    naming the path when the folder is not writable or the disk is full (nothing left behind)."""
    validate(data)
    path = path or cache_path(info)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".costmodel-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)       # atomic: a reader never sees half a file
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise OSError(exc.errno, f"no space left to write {path}") from exc
        raise
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
