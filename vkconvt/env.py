"""Every environment variable vkconvt reads, in one place. A bad value raises a ValueError naming
the variable and its value.

VKCONVT_BACKEND         default backend: "vulkan", "numpy" or "auto"; else vulkan when a device exists
VKCONVT_DEVICE          default Vulkan device: an index or a substring of the device name
VKCONVT_VALIDATE        1: keep VK_LAYER_KHRONOS_validation on (with synchronization validation)
VKCONVT_MAX_WORKSPACE   workspace budget in bytes (suffixes K, M, G, T allowed), e.g. 64M
VKCONVT_CACHE_DIR       where tuning results are kept (default: $XDG_CACHE_HOME/vkconvt)
VKCONVT_VULKAN_LIBRARY  path of the Vulkan loader to load (default: libvulkan.so.1)
VKCONVT_MEMORY          "host" or "device": where the Vulkan device's buffers live (default: host on CPU and
                        integrated devices, device-local with staging on discrete GPUs)
VKCONVT_TUNE            what the first use of a GPU with no tuning file does: "hint" (default: a one-line
                        warning that `python -m vkconvt tune` measures it), "auto" (a quick tune, in-process,
                        saved like `tune`'s), "off" (nothing)
"""
import math
import os

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
LAYER_SETTINGS = os.path.join(_DATA, "vk_layer_settings.txt")
VALIDATION_LAYER = "VK_LAYER_KHRONOS_validation"
_applied = None


def _get(name):
    value = os.environ.get(name, "").strip()
    return value or None


def validation_requested() -> bool:
    return (_get("VKCONVT_VALIDATE") or "").lower() in ("1", "true", "yes", "on")


def apply_layer_policy() -> bool:
    """Decide, before the first Vulkan instance exists, whether the validation layer loads.

    Kompute 0.9.0 enables VK_LAYER_KHRONOS_validation whenever it is installed, which slows every
    call; vkconvt disables it through the loader unless VKCONVT_VALIDATE=1. Returns whether
    validation is on. Only the first call has an effect (the loader reads these once per instance).
    """
    global _applied
    if _applied is not None:
        return _applied
    if validation_requested():
        disabled = os.environ.get("VK_LOADER_LAYERS_DISABLE", "")
        if VALIDATION_LAYER in disabled or "~all~" in disabled:
            os.environ.pop("VK_LOADER_LAYERS_DISABLE")
        os.environ.setdefault("VK_LAYER_SETTINGS_PATH", LAYER_SETTINGS)
        _applied = True
    else:
        os.environ.setdefault("VK_LOADER_LAYERS_DISABLE", VALIDATION_LAYER)
        _applied = False
    return _applied


def parse_bytes(text, name="VKCONVT_MAX_WORKSPACE"):
    """A positive byte count from text like 67108864, 64M, 1.5G or 64MiB."""
    s = str(text).strip().upper()
    for suffix in ("IB", "B"):
        if s.endswith(suffix) and len(s) > len(suffix):
            s = s[:-len(suffix)]
            break
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        if s and s[-1] in scale:
            number = float(s[:-1])
            if not math.isfinite(number):
                raise ValueError
            value = int(number * scale[s[-1]])
        else:
            value = int(s)
    except (ValueError, OverflowError):
        raise ValueError(f"{name} must be a byte count like 67108864 or 64M, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {text!r}")
    return value


_RAW = getattr(os.environ, "_data", None)    # CPython's bytes-keyed store: read without encoding keys
_PLAN_VARIABLES = tuple(v.encode() for v in ("VKCONVT_BACKEND", "VKCONVT_DEVICE", "VKCONVT_MAX_WORKSPACE",
                                               "VKCONVT_MEMORY"))


def plan_snapshot():
    """The raw values of the variables plans depend on (cheap: the call cache reads it every call)."""
    if _RAW is not None:
        return tuple(_RAW.get(v) for v in _PLAN_VARIABLES)
    return tuple(os.environ.get(v.decode()) for v in _PLAN_VARIABLES)


def default_backend():
    """VKCONVT_BACKEND, or None (the registry checks the name and names the variable)."""
    return _get("VKCONVT_BACKEND")


def default_device():
    return _get("VKCONVT_DEVICE")


def max_workspace():
    v = _get("VKCONVT_MAX_WORKSPACE")
    return parse_bytes(v) if v else None


def max_workspace_text():
    """The raw value (part of the planner's cache key)."""
    return os.environ.get("VKCONVT_MAX_WORKSPACE")


def vulkan_library():
    return _get("VKCONVT_VULKAN_LIBRARY")


def cache_dir():
    base = _get("VKCONVT_CACHE_DIR")
    if base:
        return base
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "vkconvt")


MEMORY_MODES = ("host", "device")


def memory_mode():
    """VKCONVT_MEMORY, checked, or None."""
    v = _get("VKCONVT_MEMORY")
    if v is None:
        return None
    if v.lower() not in MEMORY_MODES:
        raise ValueError(f"VKCONVT_MEMORY must be one of {', '.join(MEMORY_MODES)}, got {v!r}")
    return v.lower()


TUNE_MODES = ("hint", "auto", "off")


def tune_mode():
    """VKCONVT_TUNE, checked: "hint" (the default), "auto" or "off"."""
    v = _get("VKCONVT_TUNE")
    if v is None:
        return "hint"
    if v.lower() not in TUNE_MODES:
        raise ValueError(f"VKCONVT_TUNE must be one of {', '.join(TUNE_MODES)}, got {v!r}")
    return v.lower()
