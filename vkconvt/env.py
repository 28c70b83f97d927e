"""Every environment variable vkconvt reads, in one place.

VKCONVT_BACKEND         default backend name ("vulkan", "numpy"); else vulkan when a device exists
VKCONVT_DEVICE          default Vulkan device: an index or a substring of the device name
VKCONVT_VALIDATE        1: keep VK_LAYER_KHRONOS_validation on (with synchronization validation)
VKCONVT_MAX_WORKSPACE   workspace budget in bytes (suffixes K, M, G allowed), e.g. 64M
VKCONVT_CACHE_DIR       where tuning results are kept (default: $XDG_CACHE_HOME/vkconvt)
"""
import os

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
LAYER_SETTINGS = os.path.join(_DATA, "vk_layer_settings.txt")
VALIDATION_LAYER = "VK_LAYER_KHRONOS_validation"
_applied = None


def validation_requested() -> bool:
    return os.environ.get("VKCONVT_VALIDATE", "").strip().lower() in ("1", "true", "yes", "on")


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
    s = str(text).strip().upper().rstrip("B").rstrip("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        if s and s[-1] in scale:
            value = int(float(s[:-1]) * scale[s[-1]])
        else:
            value = int(s)
    except ValueError:
        raise ValueError(f"{name} must be a byte count like 67108864 or 64M, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {text!r}")
    return value


def default_backend():
    return os.environ.get("VKCONVT_BACKEND") or None


def default_device():
    return os.environ.get("VKCONVT_DEVICE") or None


def max_workspace():
    v = os.environ.get("VKCONVT_MAX_WORKSPACE")
    return parse_bytes(v) if v else None


def cache_dir():
    base = os.environ.get("VKCONVT_CACHE_DIR")
    if base:
        return base
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "vkconvt")
