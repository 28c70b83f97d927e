"""The portable kernels: plain GLSL 4.50, no subgroup operations, no shared memory; correct on any
Vulkan device, and the fallback for a piece a specialised kernel cannot take."""
from dataclasses import dataclass

from .base import Kernel, cdiv, phase_constants

GRID = ("grid_x", "grid_y", "grid_z")   # the logical grid (grid-stride dispatch, see common.glsl)
PHASE_PUSH = ("s", "d", "pad", "kp", "gdiv", "dinv")
ACT_PUSH = ("act", "act_slope", "in_act", "in_slope")      # fused activations (activations.py)
ACT_FLOATS = ("act_slope", "in_slope")


# ------------------------------------------------------------------------------- conv_transpose_1d
def _direct_geometry(loc, tt):
    nrep = min(loc.s, loc.tw)                  # one representative output per phase
    return nrep, cdiv(cdiv(loc.tw, loc.s), tt)


def direct_choose(loc, spec, dev):
    """No wider channel tile than the channels there are (a depthwise layer would otherwise waste
    15/16 of its work)."""
    wg, tc, tt = spec
    return wg, min(tc, 1 << max(0, (loc.cog - 1).bit_length())), tt


def direct_setup(loc, spec):
    wg, tc, tt = spec
    nrep, jblocks = _direct_geometry(loc, tt)
    cblocks = cdiv(loc.cog, tc)
    fields = dict(cig=loc.cig, K=loc.K, lw=loc.lw, tw=loc.tw, nrep=nrep, jblocks=jblocks, cblocks=cblocks,
                  cog=loc.cog, has_bias=int(loc.has_bias), **loc.phase_fields(), **loc.act_fields())
    return (cdiv(nrep * jblocks, wg), loc.G * cblocks, loc.nb), fields


def direct_work(loc, spec, grid):
    wg, tc, tt = spec
    nrep, jblocks = _direct_geometry(loc, tt)
    _, kp, dg, _ = phase_constants(loc.s, loc.d)
    inv = float(loc.nb) * loc.G * cdiv(loc.cog, tc) * nrep * jblocks
    taps = inv * min(cdiv(loc.K, kp), cdiv(tt + loc.lw - 1, dg) + 1)
    return {"inv": inv, "taps": taps, "mac": taps * loc.cig * tc * tt, "out": inv * tc * tt}


CONV = Kernel(
    name="conv_transpose_1d", op="conv_transpose_1d",
    summary="portable direct kernel: a register tile of TT outputs of one phase x TC output channels",
    push=("cig", "K", "lw", "tw") + PHASE_PUSH + ("nrep", "jblocks", "cblocks", "cog", "has_bias") + ACT_PUSH + GRID,
    signed=("pad",), floats=ACT_FLOATS, spec=("wg", "tc", "tt"),
    defaults={"cpu": (8, 16, 8), "gpu": (64, 4, 4)},
    bindings=(("x", "(nb, G*cig, lw)"), ("w", "(G*cig, cog, K)"), ("bias", "(G*cog,) or (1,) unused"),
              ("out", "(nb, G*cog, tw)")),
    setup=direct_setup, work=direct_work, choose=direct_choose, invocations=lambda spec: spec.wg,
    search=(dict(tc=8), dict(tc=8, tt=4)), shrink=("wg",),
    # any sizes are correct; the register tile is bounded (16 x 8 takes ~25 s to compile on lavapipe)
    ranges=dict(wg=(1, 1024), tc=(1, 64), tt=(1, 64)), constraint=("tc * tt <= 128",))


# ------------------------------------------------------------------------------- matmul
def _even_tn(choose):
    """The portable matmul's float16 twin stores C two columns per 32-bit word: TN must be even."""
    def wrapped(loc, spec, dev):
        spec = spec if choose is None else choose(loc, spec, dev)
        return None if spec is None else spec._replace(tn=spec.tn + spec.tn % 2)
    return wrapped


def matmul_setup(loc, spec):
    wx, wy, tm, tn = spec
    fields = dict(M=loc.M, N=loc.N, K=loc.K, lda=loc.lda, ldb=loc.ldb, ldc=loc.ldc, a_batch_mod=loc.a_batch_mod,
                  a_batch_stride=loc.a_batch_stride, b_batch_stride=loc.b_batch_stride,
                  c_batch_stride=loc.c_batch_stride, b_offset=loc.b_offset, in_act=loc.in_act, in_slope=loc.in_slope)
    return (cdiv(loc.N, wx * tn), cdiv(loc.M, wy * tm), loc.batch), fields


def matmul_work(loc, spec, grid):
    inv = float(grid[0]) * grid[1] * grid[2] * spec[0] * spec[1]
    return {"mac": inv * spec[2] * spec[3] * loc.K, "out": inv * spec[2] * spec[3]}


MATMUL_PUSH = ("M", "N", "K", "lda", "ldb", "ldc", "a_batch_mod", "a_batch_stride", "b_batch_stride",
               "c_batch_stride", "b_offset", "in_act", "in_slope") + GRID
MATMUL_BINDINGS = (("a", "(a_batch_mod, M, lda)"), ("b", "(batch, K, ldb)"), ("c", "(batch, M, ldc)"))
MATMUL = Kernel(
    name="matmul", op="matmul",
    summary="portable register-blocked matmul: a TM x TN tile of C per invocation",
    push=MATMUL_PUSH, floats=("in_slope",), spec=("wg_x", "wg_y", "tm", "tn"),
    defaults={"cpu": (8, 1, 8, 8), "gpu": (16, 16, 4, 4)},
    bindings=MATMUL_BINDINGS, setup=matmul_setup, work=matmul_work, invocations=lambda spec: spec.wg_x * spec.wg_y,
    search=(dict(tm=4),), f16=dict(align=2, choose_wrapper=lambda choose: _even_tn(choose)), shrink=("wg_x", "wg_y"),
    # any sizes are correct (the float16 twin rounds TN up to even); the register tile is bounded
    ranges=dict(wg_x=(1, 1024), wg_y=(1, 1024), tm=(1, 64), tn=(1, 64)), constraint=("tm * tn <= 64",))


# ------------------------------------------------------------------------------- col2im_1d
def col2im_setup(loc, spec):
    (wg,) = spec
    fields = dict(C=loc.C, K=loc.K, lc=loc.lc, ldcol=loc.ldcol or loc.lc, tw=loc.tw, i_begin=loc.i_begin,
                  i_count=loc.i_count, fresh_from=loc.fresh_from, has_bias=int(loc.has_bias), slices=loc.slices,
                  slice_stride=loc.slice_stride, **loc.phase_fields(),
                  act=loc.act, act_slope=loc.act_slope)
    return (cdiv(loc.i_count, wg), loc.C, loc.nb), fields


def col2im_work(loc, spec, grid):
    outs = float(loc.C) * loc.nb * loc.i_count
    _, kp, _, _ = phase_constants(loc.s, loc.d)
    per = min(cdiv(loc.K, kp), cdiv(loc.lc * loc.s, max(1, loc.d * kp)) + 1)
    return {"reads": outs * per * loc.slices, "out": outs}


COL2IM = Kernel(
    name="col2im_1d", op="col2im_1d",
    summary="gather col2im: one output per invocation, visiting only the taps that land on it",
    push=("C", "K", "lc", "ldcol", "tw", "i_begin", "i_count", "fresh_from", "has_bias", "slices", "slice_stride")
    + PHASE_PUSH
    + ("act", "act_slope") + GRID,
    signed=("pad",), floats=("act_slope",), spec=("wg",),
    defaults={"cpu": (64,), "gpu": (64,)},
    bindings=(("col", "(slices, nb, C, K, ldcol)"), ("bias", "(C,) or (1,) unused"), ("out", "(nb, C, tw)")),
    setup=col2im_setup, work=col2im_work, invocations=lambda spec: spec.wg, shrink=("wg",), ranges=dict(wg=(1, 1024)))


# ------------------------------------------------------------------------------- to_float16
@dataclass(frozen=True)
class PackLocal:
    """n floats of the output buffer rounded to packed halves."""
    n: int


def to_float16_setup(loc, spec):
    (wg,) = spec
    return (cdiv(cdiv(loc.n, 4), wg), 1, 1), dict(n=loc.n)


TO_FLOAT16 = Kernel(
    name="to_float16", op="to_float16",
    summary="a float16 call's output rounded once to packed halves on the device (4 per invocation)",
    push=("n",) + GRID, spec=("wg",), defaults={"cpu": (256,), "gpu": (256,)},
    bindings=(("src", "(n,)"), ("dst", "(n,) as halves")),
    setup=to_float16_setup, work=lambda loc, spec, grid: {"out": float(loc.n)}, invocations=lambda spec: spec.wg,
    f16=None, shrink=("wg",), ranges=dict(wg=(1, 1024)))
