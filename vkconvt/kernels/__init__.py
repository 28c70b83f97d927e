"""The kernel table: one entry per shader, everything the host knows about it.

One name everywhere: shaders/<name>.comp -> vkconvt/spv/<name>.spv -> KERNELS[<name>] -> the op it
computes (`op`) -> its test ids. Each entry (a base.Kernel) lists the push-constant fields in the
shader's `Push` order (all 32-bit; `signed` names the `int` ones), the specialization constants in
constant_id order with their defaults per device class (a named record, `kernel.Spec`), the bindings
with their shapes (the backend binds buffers in this order, by these names), tune's search over
specs (`search`), and the host functions: setup (grid and push fields of one piece-local problem),
work (the counts the cost model prices), choose (the spec for a piece, or None when the kernel
cannot take it), safe (the spec exact for non-finite weights), the x and weight layouts, and what
the device must offer. tests/test_kernels.py parses every shader's Push block, constant_id
declarations and binding comments and holds them against this table.

float16 storage twins follow one rule, here and in scripts/compile_shaders.py: every kernel whose
shader tests VKCONVT_F16 has a twin <name>_f16 built from the same source with VKCONVT_F16=1 (x,
weights and the column buffer stored as packed halves, float32 arithmetic); a kernel's `f16` field
names what its twin changes (a matmul twin stores C in whole 32-bit words, so it pads rows).

A kernel *choice* is, per op, the kernels to try in order with their base specs: a piece runs on
the first whose choose() takes it (the portable kernel, last, takes everything).
  portable.py  conv_transpose_1d, matmul, col2im_1d: any device, the fallback; to_float16 (a
               float16 call's output rounded on the device)
  cpu.py       conv_transpose_1d_sg, conv_transpose_1d_dw, matmul_sg: llvmpipe-shaped
  gpu.py       conv_transpose_1d_tiled, matmul_tiled: GPU-shaped (shared-memory tiles)
  conv1d.py    conv1d, im2col_1d, bias_act_1d, conv1d_grad_weight: portable kernels of conv1d and of
               conv_transpose1d's weight gradient; conv1d_shaped.py their llvmpipe (_sg) and GPU (_tiled) shapes
`register(kernel)` adds a kernel at run time (a test's toy op does).
"""
import re
from dataclasses import replace

import numpy as np

from . import conv1d, conv1d_shaped, cpu, gpu, portable
from .base import (DEVICE_CLASSES, Col2imLocal, ConvLocal, Device, Kernel, MatmulLocal, cdiv, device_class,
                   device_of, no_margins, phase_constants, round_up)
from .portable import GRID, PHASE_PUSH, PackLocal

__all__ = ["KERNELS", "OPS", "GRID", "PHASE_PUSH", "DEVICE_CLASSES", "Kernel", "ConvLocal", "MatmulLocal",
           "Col2imLocal", "Device", "variants", "default_choice", "pack", "cdiv", "round_up", "phase_constants",
           "no_margins", "only", "pick", "PackLocal", "FALLBACK", "PREFERENCE", "fallback", "for_storage", "register",
           "check_spec", "F16", "device_class", "device_of", "unregister"]

F16 = "_f16"
BASE = (portable.CONV, cpu.CONV_SG, cpu.CONV_DW, gpu.CONV_TILED, portable.MATMUL, cpu.MATMUL_SG, gpu.MATMUL_TILED,
        portable.COL2IM, portable.TO_FLOAT16) + conv1d.BASE + conv1d_shaped.BASE
# The kernels each device class tries, in order (measured on lavapipe; the GPU order by design,
# not measured): `python -m vkconvt tune` replaces it with the order measured on the user's device.
# The op's portable kernel (FALLBACK) always ends the list.
PREFERENCE = {
    "cpu": {"conv_transpose_1d": ("conv_transpose_1d_dw", "conv_transpose_1d_sg"), "matmul": ("matmul_sg",),
            "conv1d": ("conv1d_sg",), "conv1d_grad_weight": ("conv1d_grad_weight_sg",)},
    "gpu": {"conv_transpose_1d": ("conv_transpose_1d_tiled",), "matmul": ("matmul_tiled",),
            "conv1d": ("conv1d_tiled",), "conv1d_grad_weight": ("conv1d_grad_weight_tiled",)},
}
KERNELS = {}
FALLBACK = {}           # op -> its portable kernel (float32): the first kernel registered for the op
OPS = ()


def _twin(k):
    """The float16 storage twin of kernel k (see the module doc)."""
    extra = dict(k.f16)
    wrap = extra.pop("choose_wrapper", None)
    if wrap is not None:
        extra["choose"] = wrap(k.choose)
    return replace(k, name=k.name + F16, source=k.name, storage="float16", summary=k.summary + " (float16 storage)",
                   f16=None, **extra)


def register(kernel):
    """Add a kernel (and its float16 twin) to the table; the first kernel of an op is its fallback."""
    global OPS
    for k in (kernel,) + ((_twin(kernel),) if kernel.f16 is not None else ()):
        if k.name in KERNELS:
            raise ValueError(f"kernel {k.name!r} is already in the table")
        KERNELS[k.name] = k
    FALLBACK.setdefault(kernel.op, kernel.name)
    OPS = tuple(dict.fromkeys(k.op for k in KERNELS.values()))
    return kernel


def unregister(name):
    """Remove a kernel registered at run time (and its twin); its op goes when no kernel is left."""
    global OPS
    for n in (name, name + F16):
        k = KERNELS.pop(n, None)
        if k is not None and FALLBACK.get(k.op) == n and not any(v.op == k.op for v in KERNELS.values()):
            FALLBACK.pop(k.op)
    OPS = tuple(dict.fromkeys(k.op for k in KERNELS.values()))


for _k in BASE:
    register(_k)


def fallback(op, storage="float32"):
    """The portable kernel of op for a storage type (to_float16 has no twin: it reads float32)."""
    name = FALLBACK[op] + (F16 if storage == "float16" else "")
    return name if name in KERNELS else FALLBACK[op]


def for_storage(choice, storage):
    """The choice with every kernel replaced by its twin for `storage` (specs kept): device
    choices and tuning name float32 kernels; a float16 schedule runs their twins."""
    def name(n):
        base = KERNELS[n].shader
        return base + F16 if storage == "float16" and base + F16 in KERNELS else base
    return {op: tuple((name(n), KERNELS[name(n)].make_spec(spec)) for n, spec in entries)
            for op, entries in choice.items()}


def variants(op, storage="float32"):
    """The kernels that compute `op` with `storage`, in table order."""
    return [k for k in KERNELS.values() if k.op == op and k.storage == storage]


def default_choice(device_class, ops=None):
    """{op: ((kernel name, spec), ...)}: the device class's preference with each kernel's defaults,
    always ending with the op's portable kernel."""
    out = {}
    for op in ops or OPS:
        names = list(PREFERENCE.get(device_class, {}).get(op, ())) + [FALLBACK[op]]
        out[op] = tuple((n, KERNELS[n].defaults[device_class]) for n in dict.fromkeys(names))
    return out


def only(name, device_class, spec=None):
    """A choice for `name`'s op that runs `name` wherever it can (then the portable kernel): what
    the tests use to force a variant."""
    kern = KERNELS[name]
    entries = [(name, kern.make_spec(spec) if spec is not None else kern.defaults[device_class])]
    last = fallback(kern.op, kern.storage)
    if name != last:
        entries.append((last, KERNELS[last].defaults[device_class]))
    return tuple(entries)


def pick(op, choice, local, dev, safe=False):
    """(kernel name, spec) of the first kernel in choice[op] that takes `local` on `dev`; with
    safe=True, its spec exact for non-finite weights."""
    for name, base in choice.get(op, ()):
        kern = KERNELS[name]
        spec = kern.spec_for(local, base, dev)
        if spec is not None:
            return name, (kern.make_spec(kern.safe(spec)) if safe and kern.safe else spec)
    name = fallback(op, KERNELS[choice[op][0][0]].storage) if choice.get(op) else FALLBACK[op]
    kern = KERNELS[name]
    return name, kern.fit(kern.defaults[dev.device_class], dev)


def check_spec(name, values, dev=None):
    """The Spec of kernel `name` from untrusted values (a tuning file's), or ValueError saying what
    is wrong: every field an int within the kernel's declared range (default [1, 65535], flags [0,
    1]), the kernel's `constraint` rules (divisibility, what the shader assumes), and, with a Device,
    what that device offers (subgroup size, shared memory, invocations)."""
    kern = KERNELS.get(name)
    if kern is None:
        raise ValueError(f"unknown kernel {name!r}")
    if isinstance(values, dict):
        if set(values) != set(kern.spec):
            raise ValueError(f"{name}: spec fields {sorted(values)} are not {list(kern.spec)}")
        values = [values[f] for f in kern.spec]
    if not isinstance(values, (list, tuple)) or len(values) != len(kern.spec):
        raise ValueError(f"{name}: a spec has {len(kern.spec)} fields {list(kern.spec)}, got {values!r}")
    for f, v in zip(kern.spec, values):
        lo, hi = kern.ranges.get(f, (1, 65535))
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{name}: spec field {f}={v!r} is not an int in [{lo}, {hi}]")
    spec = kern.make_spec(values)
    for rule in kern.violations(spec):
        named = ", ".join(f"{f}={getattr(spec, f)}" for f in kern.spec if re.search(rf"\b{f}\b", rule))
        raise ValueError(f"{name}: spec field{'s' if ',' in named else ''} {named} break{'' if ',' in named else 's'} "
                         f"the kernel's rule {rule!r}")
    if dev is not None and not kern.supported(dev, spec):
        raise ValueError(f"{name}: spec {tuple(spec)} needs more than this device offers (subgroup size, "
                         f"shared memory or invocations)")
    return spec


def pack(name, **fields):
    """The push-constant array of kernel `name`: fields in Push order, every field given, each
    representable in 32 bits (two's complement for the `signed` ones)."""
    kern = KERNELS[name]
    names = kern.push
    missing, extra = set(names) - set(fields), set(fields) - set(names)
    if missing or extra:
        raise KeyError(f"push constants of {name}: missing {sorted(missing)}, unknown {sorted(extra)}")
    vals = []
    for n in names:
        if n in kern.floats:            # the float's own bits
            vals.append(int(np.asarray(fields[n], dtype=np.float32).view(np.uint32)))
            continue
        v = int(fields[n])
        lo, hi = (-(1 << 31), 1 << 31) if n in kern.signed else (0, 1 << 32)
        if not lo <= v < hi:
            # the schedules keep every field in range; reaching this is a bug, not a user error
            raise OverflowError(f"internal: push constant {n}={v} of {name} does not fit 32 bits")
        vals.append(v & 0xFFFFFFFF)
    return np.asarray(vals, dtype=np.uint32)
