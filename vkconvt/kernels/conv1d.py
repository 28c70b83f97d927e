"""Kernel-table entries for conv1d and the backward pass of conv_transpose1d (issue 19), registered
by kernels/__init__.py (their float16 twins follow the VKCONVT_F16 rule):

  conv1d               portable direct conv1d: a TC x TT register tile (any device)
  im2col_1d            the gemm path's column buffer (and its transposed layout)
  bias_act_1d          the gemm path's epilogue: bias + fused activation, into the output layout
  conv1d_grad_weight   conv_transpose1d's weight gradient, direct, accumulating over chunks
  (kernels/conv1d_shaped.py: conv1d_sg for llvmpipe, conv1d_tiled for GPUs, and the weight
  gradient's _sg and _tiled shapes)

Piece-local problems (dataclasses below) are device-free, like base.py's; the host folding that
keeps every index a shader computes below 2**31 is fold.py's (fold_conv1d, conv1d_windows). The
ops that run these kernels are declared in vkconvt/ops/conv1d.py and vkconvt/ops/conv_grad_weight.py.

The conv1d kernels' weight is the layer's (C_out, cig, K) reshaped (G, cog, cig, K) for
pack_weights; the grad_input of conv_transpose1d is conv1d(grad_out, w) with w's (C_in, C_out/g,
K) read as (out_ch, in_ch/g, K), unchanged.

conv1d's gemm path: im2col_1d (rows (ci, k) x positions, row pitch ldcol = the matmul's aligned
N) -> matmul per (n, g) with A = weights (G, cog, lda >= cig*kw) for the window's taps, a_batch_mod
G -> bias_act_1d from the matmul's rows (lds) into the output's (ldo, ooff).

Weight gradient (conv_transpose1d's; conv1d's own is the same kernel with x and grad_out swapped):
gw[g*cig + ci, o, k] = sum_{n, l} x[n, g*cig + ci, l] * go[n, g*cog + o, l*s - p + k*d]. Direct
kernels (no workspace): per tap a matmul with the reduction along the positions, the batch looped
inside, so one dispatch sums over n and l; windows over the x positions (conv1d_windows with
grad_out in the role of conv1d's input) are folded, and dispatched in order with the accumulate
flag: the first writes gw (when it meets every tap; else a zero-fill dispatch comes first), the
rest add into it. The matmul route (im2col_1d transposed: colT[g][l][co*K + k] = go[g*cog + co,
l*s - p + k*d], then C_g = x_g (cig x L) . colT_g) sums no batch and has no accumulate flag: the
op adds each batch entry's C into gw with col2im_1d (see ops/conv_grad_weight.py).
grad_bias is a plain sum over batch and length (reference.grad_bias; no kernel here).
"""
from dataclasses import dataclass

from .base import Kernel, cdiv
from .portable import ACT_FLOATS, ACT_PUSH, GRID

# ------------------------------------------------------------------------------- piece-local problems
@dataclass(frozen=True)
class Conv1dLocal:
    """out[n, g*cog + o, ooff + i] = bias + sum_{ci, q < K} w[g*cog + o, ci, kb + q] * x[n, g*cig + ci,
    xoff + i*s + q*d - pad], x positions outside [0, lw) reading 0 (n < nb, o < cog, i < tw).
    x rows are ldx apart, out rows ldo, the packed weight has wk taps (0 means lw, tw, K)."""
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
    kb: int = 0
    wk: int = 0
    xoff: int = 0
    ldx: int = 0
    ooff: int = 0
    ldo: int = 0
    act: int = 0
    act_slope: float = 0.0
    in_act: int = 0
    in_slope: float = 0.0

    def layout_fields(self):
        return dict(kb=self.kb, wk=self.wk or self.K, xoff=self.xoff, ldx=self.ldx or max(1, self.lw),
                    ooff=self.ooff, ldo=self.ldo or self.tw)

    def act_fields(self):
        return dict(act=self.act, act_slope=self.act_slope, in_act=self.in_act, in_slope=self.in_slope)


@dataclass(frozen=True)
class Im2colLocal:
    """col[n*G + g][ci*K + k][t] (transposed: [n*G + g][t][ci*K + k]) = x[n, g*cpg + ci, xoff + t*s +
    k*d - pad], 0 outside [0, lw); rows ldcol apart (t < tw)."""
    nb: int
    G: int
    cpg: int
    K: int
    lw: int
    tw: int
    s: int
    d: int
    pad: int
    ldcol: int
    transposed: bool = False
    xoff: int = 0
    ldx: int = 0


@dataclass(frozen=True)
class BiasActLocal:
    """out[n, c, ooff + i] = act(src[n, c, i] + bias[c]) (src rows lds apart, out rows ldo); with
    slices > 1, src is the sum of that many partial products slice_stride apart (split-K)."""
    nb: int
    C: int
    tw: int
    lds: int
    ldo: int
    ooff: int = 0
    has_bias: bool = False
    act: int = 0
    act_slope: float = 0.0
    slices: int = 1
    slice_stride: int = 0


@dataclass(frozen=True)
class GradWeightLocal:
    """gw[g*cig + ci, o, kb + q] (+)= sum_{n < nb, m < lx} act_in(x[n, g*cig + ci, xoff + m]) *
    go[n, g*cog + o, goff + m*s + q*d - pad] over grad_out indices in [0, lg); gw rows hold ldk taps."""
    nb: int
    G: int
    cig: int
    cog: int
    K: int
    lx: int
    lg: int
    s: int
    d: int
    pad: int
    ldk: int
    kb: int = 0
    accumulate: bool = False
    xoff: int = 0
    ldx: int = 0
    goff: int = 0
    ldg: int = 0
    in_act: int = 0
    in_slope: float = 0.0


# ------------------------------------------------------------------------------- conv1d (portable)
def conv1d_choose(loc, spec, dev):
    """No wider channel tile than the channels there are (depthwise: TC = 1)."""
    wg, tc, tt = spec
    return wg, min(tc, 1 << max(0, (loc.cog - 1).bit_length())), tt


def conv1d_setup(loc, spec):
    wg, tc, tt = spec
    tblocks, cblocks = cdiv(loc.tw, tt), cdiv(loc.cog, tc)
    fields = dict(G=loc.G, cig=loc.cig, cog=loc.cog, K=loc.K, lw=loc.lw, tw=loc.tw, s=loc.s, d=loc.d, pad=loc.pad,
                  has_bias=int(loc.has_bias), tblocks=tblocks, cblocks=cblocks, **loc.layout_fields(),
                  **loc.act_fields())
    return (cdiv(tblocks, wg), loc.G * cblocks, loc.nb), fields


def conv1d_work(loc, spec, grid):
    wg, tc, tt = spec
    inv = float(loc.nb) * loc.G * cdiv(loc.cog, tc) * cdiv(loc.tw, tt)
    taps = inv * min(loc.K, cdiv(tt * loc.s + loc.lw, loc.d) + 1)
    return {"inv": inv, "taps": taps, "mac": taps * loc.cig * tc * tt, "out": inv * tc * tt}


def identity_conv1d_weights(dst, w, loc, spec):
    """PyTorch's conv1d layout as is: w (G, cog, cig, wk) -> (G*cog, cig, wk)."""
    dst[:w.size] = w.reshape(-1)


CONV1D_PUSH = ("G", "cig", "cog", "K", "kb", "wk", "lw", "ldx", "xoff", "tw", "ldo", "ooff", "s", "d", "pad",
               "has_bias", "tblocks", "cblocks") + ACT_PUSH + GRID
CONV1D_BINDINGS = (("x", "(nb, G*cig, ldx)"), ("w", "(G*cog, cig, wk)"), ("bias", "(G*cog,) or (1,) unused"),
                   ("out", "(nb, G*cog, ldo)"))
CONV1D = Kernel(
    name="conv1d", op="conv1d",
    summary="portable direct conv1d: a register tile of TT consecutive outputs x TC output channels",
    push=CONV1D_PUSH, signed=("pad",), floats=ACT_FLOATS, spec=("wg", "tc", "tt"),
    defaults={"cpu": (8, 8, 8), "gpu": (64, 4, 4)}, bindings=CONV1D_BINDINGS,
    setup=conv1d_setup, work=conv1d_work, choose=conv1d_choose, pack_weights=identity_conv1d_weights,
    w_floats=lambda loc, spec: loc.G * loc.cog * loc.cig * (loc.wk or loc.K), invocations=lambda spec: spec[0],
    search=(dict(tc=4), dict(tt=4)), shrink=("wg",),
    # a TC x TT register tile per invocation (conv_transpose_1d's rule)
    ranges=dict(wg=(1, 1024), tc=(1, 64), tt=(1, 64)), constraint=("tc * tt <= 128",))


# ------------------------------------------------------------------------------- im2col_1d
def im2col_setup(loc, spec):
    (wg,) = spec
    rows, length = (loc.tw, loc.cpg * loc.K) if loc.transposed else (loc.cpg * loc.K, loc.tw)
    fields = dict(G=loc.G, cpg=loc.cpg, K=loc.K, lw=loc.lw, ldx=loc.ldx or max(1, loc.lw), xoff=loc.xoff, tw=loc.tw,
                  ldcol=loc.ldcol, s=loc.s, d=loc.d, pad=loc.pad, transposed=int(loc.transposed))
    return (max(1, cdiv(rows * cdiv(length, 2), wg)), loc.G, loc.nb), fields


IM2COL = Kernel(
    name="im2col_1d", op="im2col_1d",
    summary="conv1d's column buffer, rows (ci, k) x positions, or transposed; a pair of elements per invocation",
    push=("G", "cpg", "K", "lw", "ldx", "xoff", "tw", "ldcol", "s", "d", "pad", "transposed") + GRID,
    signed=("pad",), spec=("wg",), defaults={"cpu": (64,), "gpu": (256,)},
    bindings=(("x", "(nb, G*cpg, ldx)"), ("col", "(nb*G, cpg*K, ldcol) or (nb*G, tw, ldcol)")),
    setup=im2col_setup, work=lambda loc, spec, grid: {"out": float(loc.nb) * loc.G * loc.cpg * loc.K * loc.tw},
    invocations=lambda spec: spec[0], shrink=("wg",), ranges=dict(wg=(1, 1024)))


# ------------------------------------------------------------------------------- bias_act_1d
def bias_act_setup(loc, spec):
    (wg,) = spec
    fields = dict(C=loc.C, tw=loc.tw, lds=loc.lds, ldo=loc.ldo, ooff=loc.ooff, has_bias=int(loc.has_bias),
                  slices=loc.slices, slice_stride=loc.slice_stride, act=loc.act, act_slope=loc.act_slope)
    return (cdiv(loc.tw, wg), loc.C, loc.nb), fields


BIAS_ACT = Kernel(
    name="bias_act_1d", op="bias_act_1d",
    summary="gemm epilogue: the matmul's rows + bias, fused activation, into the output's layout",
    push=("C", "tw", "lds", "ldo", "ooff", "has_bias", "slices", "slice_stride", "act", "act_slope") + GRID,
    floats=("act_slope",),
    spec=("wg",), defaults={"cpu": (64,), "gpu": (256,)},
    bindings=(("src", "(slices, nb, C, lds)"), ("bias", "(C,) or (1,) unused"), ("out", "(nb, C, ldo)")),
    setup=bias_act_setup, work=lambda loc, spec, grid: {"out": float(loc.nb) * loc.C * loc.tw * loc.slices},
    invocations=lambda spec: spec[0], shrink=("wg",), ranges=dict(wg=(1, 1024)))


# ------------------------------------------------------------------------------- conv1d_grad_weight
def grad_weight_choose(loc, spec, dev):
    wg, ti, to = spec
    return wg, min(ti, 1 << max(0, (loc.cig - 1).bit_length())), min(to, 1 << max(0, (loc.cog - 1).bit_length()))


def grad_weight_setup(loc, spec):
    wg, ti, to = spec
    oblocks, iblocks = cdiv(loc.cog, to), cdiv(loc.cig, ti)
    fields = dict(nb=loc.nb, G=loc.G, cig=loc.cig, cog=loc.cog, K=loc.K, lx=loc.lx, ldx=loc.ldx or max(1, loc.lx),
                  xoff=loc.xoff, lg=loc.lg, ldg=loc.ldg or max(1, loc.lg), goff=loc.goff, s=loc.s, d=loc.d,
                  pad=loc.pad, ldk=loc.ldk, kb=loc.kb, accumulate=int(loc.accumulate), oblocks=oblocks,
                  iblocks=iblocks, in_act=loc.in_act, in_slope=loc.in_slope)
    return (cdiv(oblocks, wg), loc.G * iblocks, max(1, loc.K)), fields


def grad_weight_work(loc, spec, grid):
    wg, ti, to = spec
    inv = float(loc.G) * cdiv(loc.cig, ti) * cdiv(loc.cog, to) * loc.K
    steps = inv * loc.nb * min(loc.lx, cdiv(loc.lg, loc.s) + 1)
    return {"inv": inv, "steps": steps, "mac": steps * ti * to, "out": inv * ti * to}


GRAD_WEIGHT = Kernel(
    name="conv1d_grad_weight", op="conv1d_grad_weight",
    summary="conv_transpose1d's weight gradient, direct: TI x TO channels of one tap per invocation, "
            "batch and length summed inside, accumulate flag for chunks",
    push=("nb", "G", "cig", "cog", "K", "lx", "ldx", "xoff", "lg", "ldg", "goff", "s", "d", "pad", "ldk", "kb",
          "accumulate", "oblocks", "iblocks", "in_act", "in_slope") + GRID,
    signed=("pad",), floats=("in_slope",), spec=("wg", "ti", "to"),
    defaults={"cpu": (8, 8, 8), "gpu": (64, 4, 4)},
    bindings=(("x", "(nb, G*cig, ldx)"), ("go", "(nb, G*cog, ldg)"), ("gw", "(G*cig, cog, ldk)")),
    setup=grad_weight_setup, work=grad_weight_work, choose=grad_weight_choose, invocations=lambda spec: spec[0],
    search=(dict(ti=4, to=4),), shrink=("wg",),
    # a TI x TO register tile per invocation
    ranges=dict(wg=(1, 1024), ti=(1, 64), to=(1, 64)), constraint=("ti * to <= 128",))

BASE = (CONV1D, IM2COL, BIAS_ACT, GRAD_WEIGHT)
