"""The SPIR-V modules, compiled at build time from shaders/<name>.comp into vkconvt/spv/<name>.spv.

Every module is untrusted until checked: scripts/compile_shaders.py records each module's size and
SHA-256 in vkconvt/spv/manifest.json when it compiles (and spirv-val's verdict with --check); a module
is loaded only if it is a whole SPIR-V module (magic number, whole words) matching its manifest
entry. A damaged or missing module makes the Vulkan backend unavailable with a reason that names
the file; it never runs (a truncated module could otherwise compute zeros without an error).
"""
import hashlib
import json
import os

from .. import kernels

SPV_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "spv")
MANIFEST = os.path.join(SPV_DIR, "manifest.json")
MAGIC = b"\x03\x02\x23\x07"
REBUILD = "reinstall vkconvt, or run `python scripts/compile_shaders.py` in its source tree"
_cache = {}


class ShaderError(RuntimeError):
    """A SPIR-V module is missing or damaged; the message names the file."""


def path(name):
    return os.path.join(SPV_DIR, name + ".spv")


def _manifest():
    try:
        with open(MANIFEST) as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except FileNotFoundError:
        raise ShaderError(f"the SPIR-V manifest {MANIFEST} is missing ({REBUILD})") from None
    except (OSError, ValueError) as exc:
        raise ShaderError(f"the SPIR-V manifest {MANIFEST} is unreadable: {exc} ({REBUILD})") from None


def check(name):
    """The bytes of kernel `name`'s module, checked against the manifest (ShaderError if not)."""
    p = path(name)
    try:
        with open(p, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ShaderError(f"SPIR-V module {p} is missing ({REBUILD})") from None
    entry = _manifest().get(name + ".spv")
    if not isinstance(entry, dict):
        raise ShaderError(f"SPIR-V module {p} is not in {MANIFEST} ({REBUILD})")
    if len(data) < 20 or len(data) % 4 or data[:4] != MAGIC:
        raise ShaderError(f"SPIR-V module {p} is damaged: {len(data)} bytes, not a whole SPIR-V module ({REBUILD})")
    if len(data) != entry.get("bytes") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise ShaderError(f"SPIR-V module {p} is damaged: its size or SHA-256 differs from the one recorded "
                          f"when it was compiled ({REBUILD})")
    return data


def spirv(name):
    """The checked SPIR-V of kernel `name` (read and checked once per process). A kernel registered at
    run time with its own module (Kernel.spv_path) is checked to be whole SPIR-V."""
    if name not in _cache:
        own = getattr(kernels.KERNELS.get(name), "spv_path", "")
        if own:
            with open(own, "rb") as f:
                data = f.read()
            if len(data) < 20 or len(data) % 4 or data[:4] != MAGIC:
                raise ShaderError(f"SPIR-V module {own} of kernel {name} is not a whole SPIR-V module")
            _cache[name] = data
        else:
            _cache[name] = check(name)
    return _cache[name]


def problems():
    """Why the modules cannot be used ([] when every kernel's module is whole)."""
    out = []
    for name, kern in kernels.KERNELS.items():
        if kern.spv_path:
            continue
        try:
            spirv(name)
        except ShaderError as exc:
            out.append(str(exc))
    return out
