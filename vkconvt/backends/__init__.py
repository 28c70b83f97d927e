"""Backend registry: one module per backend, imported lazily, found by name.

    available()  -> [{"name", "available", "reason"}]  for every backend
    get(name)    -> a backend object (ValueError for an unknown name, BackendUnavailable with the
                    reason for one that cannot start)
Default: the call's backend=, else VKCONVT_BACKEND, else "vulkan" when a Vulkan device exists,
else "numpy". "auto" (the call's or VKCONVT_BACKEND's) lets the planner pick the faster one.

Every backend offers the same few calls, whatever the op: run(plan, schedule, args, wait) executes a
planned schedule (the NumPy backend computes the op's reference instead), release() frees what it
caches, describe(). Backends execute plans; they never plan.
"""
import functools
import importlib
import threading

from .. import env
from ..errors import BackendUnavailable

NAMES = ("vulkan", "numpy")
CHOICES = NAMES + ("auto",)
_MODULES = {"vulkan": "vkconvt.backends.vulkan", "numpy": "vkconvt.backends.numpy"}
_instances = {}
_lock = threading.Lock()

__all__ = ["BackendUnavailable", "available", "get", "resolve_name", "requested", "vulkan_reason", "NAMES",
           "device_info"]


def _module(name):
    try:
        return importlib.import_module(_MODULES[name])
    except BackendUnavailable:
        raise
    except ImportError as exc:
        raise BackendUnavailable(name, f"{exc}") from exc


def requested(name=None):
    """The backend asked for: the call's name, else VKCONVT_BACKEND, else None; checked."""
    source = "backend"
    if name is None:
        name, source = env.default_backend(), "VKCONVT_BACKEND"
        if name is None:
            return None
    if not isinstance(name, str) or name not in CHOICES:
        prefix = f"unknown backend {name!r}" if source == "backend" else f"VKCONVT_BACKEND={name!r} is not a backend"
        raise ValueError(f"{prefix}; valid backends: {', '.join(CHOICES)}")
    return name


def resolve_name(name=None):
    """The concrete backend for a call: 'vulkan' or 'numpy' ('auto' and None become the default)."""
    name = requested(name)
    if name is None or name == "auto":
        return "vulkan" if vulkan_reason() is None else "numpy"
    return name


def get(name=None, device=None):
    """The backend object for `name` (default: see module doc) on `device` (Vulkan only)."""
    name = resolve_name(name)
    if name == "vulkan":
        # one backend object per physical device, however it was named (0, "0", "llvmpipe", None)
        device = device_info(device).index
    key = (name, device)
    with _lock:
        if key not in _instances:
            _instances[key] = _module(name).create(device)
        return _instances[key]


def device_info(device=None):
    """The Vulkan DeviceInfo a device argument names (an index, a name substring, None: the default);
    BackendUnavailable when Vulkan cannot run here."""
    reason = vulkan_reason()
    if reason is not None:
        raise BackendUnavailable("vulkan", reason)
    from ..vulkan.device import resolve_device
    try:
        return resolve_device(device)
    except (ValueError, TypeError):
        raise
    except Exception as exc:
        raise BackendUnavailable("vulkan", str(exc)) from exc


@functools.lru_cache(maxsize=1)
def vulkan_reason():
    """None if the Vulkan backend can start, else why not (decided once per process)."""
    try:
        return _module("vulkan").unavailable_reason()
    except BackendUnavailable as exc:
        return exc.reason


def available():
    rows = []
    for name in NAMES:
        reason = vulkan_reason() if name == "vulkan" else None
        rows.append({"name": name, "available": reason is None, "reason": reason})
    return rows
