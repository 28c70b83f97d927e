"""Backend registry: one module per backend, imported lazily, found by name.

    available()  -> [{"name", "available", "reason"}]  for every backend
    get(name)    -> a backend object (ValueError for an unknown name, BackendUnavailable with the
                    reason for one that cannot start)
Default: the call's backend=, else VKCONVT_BACKEND, else "vulkan" when a Vulkan device exists,
else "numpy".
"""
import functools
import importlib
import threading

from .. import env

NAMES = ("vulkan", "numpy")
_MODULES = {"vulkan": "vkconvt.backends.vulkan", "numpy": "vkconvt.backends.numpy"}
_instances = {}
_lock = threading.Lock()


class BackendUnavailable(ImportError):
    """A backend that cannot start here; .backend and .reason say which and why."""

    def __init__(self, backend, reason):
        super().__init__(f"backend {backend!r} is unavailable: {reason}")
        self.backend = backend
        self.reason = reason


def _check_name(name):
    if not isinstance(name, str) or name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(NAMES)}")


def _module(name):
    _check_name(name)
    try:
        return importlib.import_module(_MODULES[name])
    except BackendUnavailable:
        raise
    except ImportError as exc:
        raise BackendUnavailable(name, f"{exc}") from exc


def get(name=None, device=None):
    """The backend object for `name` (default: see module doc) on `device` (Vulkan only)."""
    name = resolve_name(name)
    if name == "vulkan":
        # one backend object per physical device, however it was named (0, "0", "llvmpipe", None)
        from ..device import resolve_device
        try:
            device = resolve_device(device).index
        except Exception as exc:
            if isinstance(exc, (ValueError, TypeError)):
                raise
            raise BackendUnavailable(name, str(exc)) from exc
    key = (name, device)
    with _lock:
        if key not in _instances:
            _instances[key] = _module(name).create(device)
        return _instances[key]


def resolve_name(name=None):
    if name is None:
        name = env.default_backend()
        if name is None:
            return "vulkan" if vulkan_reason() is None else "numpy"
    _check_name(name)
    return name


@functools.lru_cache(maxsize=1)
def vulkan_reason():
    """None if the Vulkan backend can start, else why not (decided once per process)."""
    try:
        mod = _module("vulkan")
        return mod.unavailable_reason()
    except BackendUnavailable as exc:
        return exc.reason


def available():
    rows = []
    for name in NAMES:
        reason = vulkan_reason() if name == "vulkan" else None
        rows.append({"name": name, "available": reason is None, "reason": reason})
    return rows
