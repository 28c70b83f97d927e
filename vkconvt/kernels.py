"""The kernel table: one entry per shader, everything the host knows about it.

One name everywhere: shaders/<name>.comp -> vkconvt/spv/<name>.spv -> KERNELS[<name>] -> the op it
computes (`op`) -> its test ids. Each entry lists the push-constant fields in the shader's `Push`
order (all 32-bit; `signed` names the `int` ones), the specialization constants in constant_id
order with their defaults per device class, the bindings with their shapes, and two functions:
`setup(local, spec)` -> (grid of workgroups, push fields) for one piece-local problem, and
`work(local, spec, grid)` -> the counts the cost model prices. tests/test_kernels.py parses every
shader's Push block and constant_id declarations and holds them against this table.

The piece-local problems (see schedule.py, which folds every large offset on the host so that all
shader index arithmetic fits a signed 32-bit int):
  ConvLocal    out[n, g*cog + o, i] = bias + sum x[n, g*cig + ci, m] * w[g*cig + ci, o, q]
               over i + pad == m*s + q*d  (n < nb, g < G, o < cog, i < tw, m < lw, q < K)
  MatmulLocal  C[b] = A[b % a_batch_mod] . B[b][:, b_offset : b_offset + N]
  Col2imLocal  out[n, c, i] (+)= sum col[n, c, q, m] over i + pad == m*s + q*d, for i in
               [i_begin, i_begin + i_count); outputs i < fresh_from accumulate, the others are written
"""
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Tuple

import numpy as np

DEVICE_CLASSES = ("cpu", "gpu")     # lavapipe/llvmpipe-like devices, and real GPUs


def cdiv(a, b):
    return -(-a // b)


@dataclass(frozen=True)
class ConvLocal:
    nb: int
    G: int
    cig: int
    cog: int
    lw: int
    tw: int
    K: int
    s: int
    d: int
    pad: int
    has_bias: bool

    @property
    def gcd(self):
        return math.gcd(self.s, self.d)

    @property
    def k_period(self):
        """Taps of one output phase are k_period apart."""
        return self.s // self.gcd

    def phase_fields(self):
        """Push fields every kernel of this problem needs to find a phase's first tap without
        looping: q*d = r (mod s) has a solution iff gcd | r, and then q = (r/gcd)*dinv mod k_period."""
        kp = self.k_period
        dinv = pow(self.d // self.gcd, -1, kp) if kp > 1 else 0
        return dict(s=self.s, d=self.d, pad=self.pad, kp=kp, gdiv=self.gcd, dinv=dinv)


@dataclass(frozen=True)
class MatmulLocal:
    batch: int
    M: int
    N: int
    K: int
    lda: int
    ldb: int
    ldc: int
    a_batch_mod: int
    a_batch_stride: int
    b_batch_stride: int
    c_batch_stride: int
    b_offset: int


@dataclass(frozen=True)
class Col2imLocal:
    nb: int
    C: int
    K: int
    lc: int
    s: int
    d: int
    pad: int
    tw: int
    i_begin: int
    i_count: int
    fresh_from: int
    has_bias: bool

    def phase_fields(self):
        return ConvLocal(1, 1, 1, 1, self.lc, self.tw, self.K, self.s, self.d, self.pad, False).phase_fields()


@dataclass(frozen=True)
class Kernel:
    name: str                      # shaders/<name>.comp, vkconvt/spv/<name>.spv
    op: str                        # the op it computes: conv_transpose_1d, matmul or col2im_1d
    push: Tuple[str, ...]          # Push block fields, in order (grid_x/y/z last)
    spec: Tuple[str, ...]          # specialization constants, constant_id order
    defaults: Dict[str, Tuple[int, ...]]   # device class -> spec values
    bindings: Tuple[Tuple[str, str], ...]  # (buffer, shape) in binding order
    setup: Callable                # (local, spec) -> (logical grid, push fields without grid_*)
    work: Callable                 # (local, spec, grid) -> {count: value}
    signed: Tuple[str, ...] = ()   # push fields declared `int` in the shader
    summary: str = ""
    x_layout: Callable = field(default=lambda lw, spec: (0, lw))   # -> (xoff, ldx) of the x buffer
    subgroup_ops: Tuple[str, ...] = ()     # subgroup operations the shader uses (vkinfo.SUBGROUP_OPS names)

    def supported(self, info):
        """Whether a device (vkinfo.DeviceInfo) offers what this kernel uses."""
        return all(op in info.subgroup_ops for op in self.subgroup_ops)

    @property
    def spv(self):
        return self.name + ".spv"


# ------------------------------------------------------------------------------- conv_transpose_1d
def _direct_geometry(loc, tt):
    nrep = min(loc.s, loc.tw)                  # one representative output per phase
    jblocks = cdiv(cdiv(loc.tw, loc.s), tt)
    return nrep, jblocks


def direct_setup(loc, spec):
    wg, tc, tt = spec
    nrep, jblocks = _direct_geometry(loc, tt)
    cblocks = cdiv(loc.cog, tc)
    fields = dict(cig=loc.cig, K=loc.K, lw=loc.lw, tw=loc.tw, nrep=nrep, jblocks=jblocks, cblocks=cblocks,
                  cog=loc.cog, has_bias=int(loc.has_bias), **loc.phase_fields())
    return (cdiv(nrep * jblocks, wg), loc.G * cblocks, loc.nb), fields


def direct_work(loc, spec, grid):
    wg, tc, tt = spec
    nrep, jblocks = _direct_geometry(loc, tt)
    inv = float(loc.nb) * loc.G * cdiv(loc.cog, tc) * nrep * jblocks
    p_step = loc.d // loc.gcd
    taps = inv * min(cdiv(loc.K, loc.k_period), cdiv(tt + loc.lw - 1, p_step) + 1)
    return {"inv": inv, "taps": taps, "mac": taps * loc.cig * tc * tt, "out": inv * tc * tt}


def direct_spec(spec, loc):
    """No wider channel tile than the channels there are (a depthwise layer would otherwise waste
    15/16 of its work)."""
    wg, tc, tt = spec
    return wg, min(tc, 1 << max(0, (loc.cog - 1).bit_length())), tt


# ------------------------------------------------------------------------------- matmul
def matmul_setup(loc, spec):
    wx, wy, tm, tn = spec
    fields = dict(M=loc.M, N=loc.N, K=loc.K, lda=loc.lda, ldb=loc.ldb, ldc=loc.ldc, a_batch_mod=loc.a_batch_mod,
                  a_batch_stride=loc.a_batch_stride, b_batch_stride=loc.b_batch_stride,
                  c_batch_stride=loc.c_batch_stride, b_offset=loc.b_offset)
    return (cdiv(loc.N, wx * tn), cdiv(loc.M, wy * tm), loc.batch), fields


def matmul_work(loc, spec, grid):
    wx, wy, tm, tn = spec
    inv = float(grid[0]) * wx * grid[1] * wy * grid[2]
    return {"mac": inv * tm * tn * loc.K, "out": inv * tm * tn}


# ------------------------------------------------------------------------------- col2im_1d
def col2im_setup(loc, spec):
    (wg,) = spec
    fields = dict(C=loc.C, K=loc.K, lc=loc.lc, tw=loc.tw, i_begin=loc.i_begin, i_count=loc.i_count,
                  fresh_from=loc.fresh_from, has_bias=int(loc.has_bias), **loc.phase_fields())
    return (cdiv(loc.i_count, wg), loc.C, loc.nb), fields


def col2im_work(loc, spec, grid):
    outs = float(loc.C) * loc.nb * loc.i_count
    kp = loc.s // math.gcd(loc.s, loc.d)
    per = min(cdiv(loc.K, kp), cdiv(loc.lc * loc.s, max(1, loc.d * kp)) + 1)
    return {"reads": outs * per, "out": outs}


PHASE_PUSH = ("s", "d", "pad", "kp", "gdiv", "dinv")
GRID = ("grid_x", "grid_y", "grid_z")   # the logical grid (grid-stride dispatch, see common.glsl)

KERNELS = {k.name: k for k in (
    Kernel(
        name="conv_transpose_1d", op="conv_transpose_1d",
        summary="portable direct kernel: a register tile of TT outputs of one phase x TC output channels",
        push=("cig", "K", "lw", "tw") + PHASE_PUSH + ("nrep", "jblocks", "cblocks", "cog", "has_bias") + GRID,
        signed=("pad",), spec=("wg", "tc", "tt"),
        defaults={"cpu": (8, 16, 8), "gpu": (64, 4, 4)},
        bindings=(("x", "(nb, G*cig, lw)"), ("w", "(G*cig, cog, K)"), ("bias", "(G*cog,) or (1,) unused"),
                  ("out", "(nb, G*cog, tw)")),
        setup=direct_setup, work=direct_work),
    Kernel(
        name="matmul", op="matmul",
        summary="portable register-blocked matmul: a TM x TN tile of C per invocation",
        push=("M", "N", "K", "lda", "ldb", "ldc", "a_batch_mod", "a_batch_stride", "b_batch_stride",
              "c_batch_stride", "b_offset") + GRID,
        spec=("wg_x", "wg_y", "tm", "tn"),
        defaults={"cpu": (8, 1, 8, 8), "gpu": (16, 16, 4, 4)},
        bindings=(("a", "(a_batch_mod, M, lda)"), ("b", "(batch, K, ldb)"), ("c", "(batch, M, ldc)")),
        setup=matmul_setup, work=matmul_work),
    Kernel(
        name="col2im_1d", op="col2im_1d",
        summary="gather col2im: one output per invocation, visiting only the taps that land on it",
        push=("C", "K", "lc", "tw", "i_begin", "i_count", "fresh_from", "has_bias") + PHASE_PUSH + GRID,
        signed=("pad",), spec=("wg",),
        defaults={"cpu": (64,), "gpu": (64,)},
        bindings=(("col", "(nb, C, K, lc)"), ("bias", "(C,) or (1,) unused"), ("out", "(nb, C, tw)")),
        setup=col2im_setup, work=col2im_work),
)}
OPS = ("conv_transpose_1d", "matmul", "col2im_1d")


def variants(op):
    """The kernels that compute `op`, in table order."""
    return [k for k in KERNELS.values() if k.op == op]


def default_choice(device_class):
    """{op: (kernel name, spec)} with the first kernel of each op and its defaults."""
    return {op: (variants(op)[0].name, variants(op)[0].defaults[device_class]) for op in OPS}


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
        v = int(fields[n])
        lo, hi = (-(1 << 31), 1 << 31) if n in kern.signed else (0, 1 << 32)
        if not lo <= v < hi:
            # schedule.py keeps every field in range; reaching this is a bug, not a user error
            raise OverflowError(f"internal: push constant {n}={v} of {name} does not fit 32 bits")
        vals.append(v & 0xFFFFFFFF)
    return np.asarray(vals, dtype=np.uint32)
