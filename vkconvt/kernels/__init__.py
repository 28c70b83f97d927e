"""The kernel table: one entry per shader, everything the host knows about it.

One name everywhere: shaders/<name>.comp -> vkconvt/spv/<name>.spv -> KERNELS[<name>] -> the op it
computes (`op`) -> its test ids. Each entry (a base.Kernel) lists the push-constant fields in the
shader's `Push` order (all 32-bit; `signed` names the `int` ones), the specialization constants in
constant_id order with their defaults per device class, the bindings with their shapes, and the
host functions: setup (grid and push fields of one piece-local problem), work (the counts the cost
model prices), choose (the spec for a piece, or None when the kernel cannot take it), safe (the
spec exact for non-finite weights), the x and weight layouts, and what the device must offer.
tests/test_kernels.py parses every shader's Push block and constant_id declarations and holds
them against this table.

A kernel *choice* is, per op, the kernels to try in order with their base specs: a piece runs on
the first whose choose() takes it (the portable kernel, last, takes everything).
  portable.py  conv_transpose_1d, matmul, col2im_1d: any device, the fallback; to_float16 (a
               float16 call's output rounded on the device)
  cpu.py       conv_transpose_1d_sg, conv_transpose_1d_dw, matmul_sg: llvmpipe-shaped
  gpu.py       conv_transpose_1d_tiled, matmul_tiled: GPU-shaped (shared-memory tiles)
"""
from dataclasses import replace

import numpy as np

from . import cpu, gpu, portable
from .base import (DEVICE_CLASSES, Col2imLocal, ConvLocal, Device, Kernel, MatmulLocal, cdiv, no_margins,
                   phase_constants, round_up)
from .portable import GRID, PHASE_PUSH, PackLocal

__all__ = ["KERNELS", "OPS", "GRID", "PHASE_PUSH", "DEVICE_CLASSES", "Kernel", "ConvLocal", "MatmulLocal",
           "Col2imLocal", "Device", "variants", "default_choice", "pack", "cdiv", "round_up", "phase_constants",
           "no_margins", "only", "pick", "PackLocal", "FALLBACK", "PREFERENCE", "STORAGES", "fallback", "for_storage"]

BASE = (portable.CONV, cpu.CONV_SG, cpu.CONV_DW, gpu.CONV_TILED, portable.MATMUL, cpu.MATMUL_SG, gpu.MATMUL_TILED,
        portable.COL2IM)
OPS = ("conv_transpose_1d", "matmul", "col2im_1d", "to_float16")
FALLBACK = {"conv_transpose_1d": "conv_transpose_1d", "matmul": "matmul", "col2im_1d": "col2im_1d",
            "to_float16": "to_float16"}
STORAGES = ("float32", "float16")
F16 = "_f16"


def _even_tn(choose):
    """The portable matmul's float16 twin stores C two columns per 32-bit word: TN must be even."""
    def wrapped(loc, spec, dev):
        spec = tuple(spec) if choose is None else choose(loc, spec, dev)
        return None if spec is None else spec[:3] + (spec[3] + spec[3] % 2,)
    return wrapped


def _f16_twin(k):
    """float16 storage (shaders/variants.txt: the same source with VKCONVT_F16): x, weights and the
    column buffer hold packed halves, arithmetic and the output stay float32. Sizes and indices
    stay in elements, so every layout rule is the same; a matmul twin stores C in whole 32-bit
    words (pairs, or quads for the vec4 kernels), so its rows are padded to 2 or 4 elements."""
    extra = {}
    if k.op == "matmul":
        extra = dict(align=max(k.align, 2), choose=_even_tn(k.choose)) if k.name == FALLBACK["matmul"] \
            else dict(align=max(k.align, 4))
    return replace(k, name=k.name + F16, source=k.name, storage="float16",
                   summary=k.summary + " (float16 storage)", **extra)


KERNELS = {k.name: k for k in BASE + tuple(_f16_twin(k) for k in BASE) + (portable.TO_FLOAT16,)}


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
    return {op: tuple((name(n), spec) for n, spec in entries) for op, entries in choice.items()}

# The kernels each device class tries, in order (measured on lavapipe; the GPU order by design,
# not measured): `python -m vkconvt tune` replaces it with the order measured on the user's device.
PREFERENCE = {
    "cpu": {"conv_transpose_1d": ("conv_transpose_1d_dw", "conv_transpose_1d_sg", "conv_transpose_1d"),
            "matmul": ("matmul_sg", "matmul"), "col2im_1d": ("col2im_1d",), "to_float16": ("to_float16",)},
    "gpu": {"conv_transpose_1d": ("conv_transpose_1d_tiled", "conv_transpose_1d"),
            "matmul": ("matmul_tiled", "matmul"), "col2im_1d": ("col2im_1d",), "to_float16": ("to_float16",)},
}


def variants(op, storage="float32"):
    """The kernels that compute `op` with `storage`, in table order."""
    return [k for k in KERNELS.values() if k.op == op and k.storage == storage]


def default_choice(device_class):
    """{op: ((kernel name, spec), ...)}: the device class's preference with each kernel's defaults,
    always ending with the op's portable kernel."""
    out = {}
    for op in OPS:
        names = list(PREFERENCE[device_class][op])
        if FALLBACK[op] not in names:
            names.append(FALLBACK[op])
        out[op] = tuple((n, tuple(KERNELS[n].defaults[device_class])) for n in names)
    return out


def only(name, device_class, spec=None):
    """A choice for `name`'s op that runs `name` wherever it can (then the portable kernel): what
    the tests use to force a variant."""
    kern = KERNELS[name]
    entries = [(name, tuple(spec or kern.defaults[device_class]))]
    last = fallback(kern.op, kern.storage)
    if name != last:
        entries.append((last, tuple(KERNELS[last].defaults[device_class])))
    return tuple(entries)


def pick(op, choice, local, dev, safe=False):
    """(kernel name, spec) of the first kernel in choice[op] that takes `local` on `dev`; with
    safe=True, its spec exact for non-finite weights."""
    for name, base in choice[op]:
        kern = KERNELS[name]
        spec = kern.spec_for(local, base, dev)
        if spec is not None:
            return name, (kern.safe(spec) if safe and kern.safe else spec)
    name = fallback(op, KERNELS[choice[op][0][0]].storage) if choice.get(op) else FALLBACK[op]
    return name, tuple(KERNELS[name].defaults[dev.device_class])


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
            # schedule.py keeps every field in range; reaching this is a bug, not a user error
            raise OverflowError(f"internal: push constant {n}={v} of {name} does not fit 32 bits")
        vals.append(v & 0xFFFFFFFF)
    return np.asarray(vals, dtype=np.uint32)
