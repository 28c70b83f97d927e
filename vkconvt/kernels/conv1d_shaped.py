"""Shaped conv1d and weight-gradient kernels (issue 19; see kernels/conv1d.py):

  conv1d_sg     llvmpipe: lanes own output channels (vec4 weights), J consecutive outputs share
                their inputs through subgroupShuffle, CI input channels per trip
  conv1d_tiled  real GPUs: an implicit GEMM [cog x (K*cig)] . [(K*cig) x outputs], both operands
                staged through shared memory, register tiles, coalesced loads and stores
  conv1d_grad_weight_sg  llvmpipe: conv_transpose1d's weight gradient as matmul_sg per tap (x rows
                shared by shuffle, vec4 along positions), batch and length summed in registers
  conv1d_grad_weight_tiled  GPUs: the same per-tap matmul with both operands staged through shared
                memory along the positions (coalesced), register tiles of ci x o

Both take kernels/conv1d.py's Conv1dLocal and read the layer's weight packed once (every piece
reads taps kb.. of it), so their layouts depend on the layer and the spec's layout entries alone.
"""
import math

from .base import Kernel, cdiv, round_up
from .conv1d import CONV1D_BINDINGS, GRAD_WEIGHT
from .cpu import SHUFFLE, _blocked_transpose
from .gpu import MIN_WORKGROUPS, _profile, fit_threads, shrink_2d_to_fill, shrink_to_fill, shrink_to_fit, thread_tile
from .portable import ACT_FLOATS, ACT_PUSH, GRID

MAX_J = 64          # J >= 80 crashed lavapipe 25.0.7's shader compiler in conv_transpose_1d_sg


def _wk(loc):
    return loc.wk or loc.K


# ------------------------------------------------------------------------------- conv1d_sg
def _sg_pads(loc, spec):
    return round_up(loc.cig, spec[3]), round_up(loc.cog, 4)


def sg_choose(loc, spec, dev):
    """8 output channels per lane unless 4 waste fewer padded channels; the block length J (48/32
    with 8 channels, 64/48 with 4) that pads the outputs least. Fewer than 8 output channels per
    group (depthwise) go to the portable kernel: lanes own channels here."""
    if loc.cog < 8:
        return None
    wg, _, _, ci, sg = spec

    def waste(to):
        return cdiv(loc.cog, wg * to) * wg * to
    to = 8 if waste(8) <= waste(4) * 1.05 else 4
    cands = tuple(j for j in ((48, 32) if to == 8 else (64, 48)) if j % sg == 0 and j <= MAX_J) or (sg,)
    j = min(cands, key=lambda jj: (cdiv(loc.tw, jj) * jj * (1.0 if jj == cands[0] else 1.03), -jj))
    return wg, to, j, ci, sg


def sg_setup(loc, spec):
    wg, to, j = spec[:3]
    ci_pad, o_pad = _sg_pads(loc, spec)
    kb_, ob = cdiv(loc.tw, j), cdiv(loc.cog, wg * to)
    fields = dict(G=loc.G, cig=loc.cig, cog=loc.cog, K=loc.K, lw=loc.lw, tw=loc.tw, s=loc.s, d=loc.d, pad=loc.pad,
                  has_bias=int(loc.has_bias), ci_pad=ci_pad, o_pad=o_pad, KB=kb_, OB=ob, **loc.layout_fields(),
                  **loc.act_fields())
    return (kb_, loc.G * ob, loc.nb), fields


def sg_work(loc, spec, grid):
    wg, to, j = spec[:3]
    ci_pad, _ = _sg_pads(loc, spec)
    groups = float(grid[0]) * grid[1] * grid[2]
    taps = groups * min(loc.K, cdiv(j * loc.s + loc.lw, loc.d) + 1)
    return {"groups": groups, "taps": taps, "mac": taps * ci_pad * j * wg * to, "out": groups * j * wg * to}


def sg_weights(dst, w, loc, spec):
    """w (G, cog, cig, wk) -> [G][wk][ci_pad][o_pad], zero padded."""
    ci_pad, o_pad = _sg_pads(loc, spec)
    dst4 = dst[:loc.G * _wk(loc) * ci_pad * o_pad].reshape(loc.G, _wk(loc), ci_pad, o_pad)
    _blocked_transpose(dst4, w.transpose(0, 2, 1, 3), loc.cig)      # wants (G, cig, cog, K)
    dst4[:, :, loc.cig:, :] = 0
    dst4[:, :, :, loc.cog:] = 0


CONV1D_SG = Kernel(
    name="conv1d_sg", op="conv1d",
    summary="llvmpipe direct conv1d: lanes own output channels, J outputs share inputs by shuffle",
    push=("G", "cig", "cog", "K", "kb", "wk", "lw", "ldx", "xoff", "tw", "ldo", "ooff", "s", "d", "pad", "has_bias",
          "ci_pad", "o_pad", "KB", "OB") + ACT_PUSH + GRID,
    signed=("pad",), floats=ACT_FLOATS, spec=("wg", "to", "j", "ci", "sg"),
    defaults={"cpu": (8, 8, 48, 2, 8), "gpu": (32, 4, 32, 2, 32)},
    bindings=(("x", "(nb, G*cig, ldx)"), ("w", "[G][wk][ci_pad][o_pad]"), ("bias", "(G*cog,) or (1,) unused"),
              ("out", "(nb, G*cog, ldo)")),
    setup=sg_setup, work=sg_work, choose=sg_choose, pack_weights=sg_weights,
    w_floats=lambda loc, spec: loc.G * _wk(loc) * _sg_pads(loc, spec)[0] * _sg_pads(loc, spec)[1],
    subgroup_ops=SHUFFLE, min_subgroup=lambda spec: spec[4], invocations=lambda spec: spec[0],
    search=(dict(ci=1),),
    # TO: vec4 channel groups per lane; SG: a power of two, whole shuffle groups per workgroup (WG %
    # SG: every shuffled lane exists) and per block (J % SG: JR loads per lane); J <= 64 (lavapipe's
    # compiler crashed at 80 in the sibling kernel); CI input channels per trip
    ranges=dict(wg=(1, 1024), to=(4, 8), j=(4, MAX_J), ci=(1, 4), sg=(4, 128)),
    constraint=("to % 4 == 0", "sg & (sg - 1) == 0", "wg % sg == 0", "j % sg == 0"))


# ------------------------------------------------------------------------------- conv1d_tiled
def _tile(spec):
    wx, wy, tm4, tn, bt, bc = spec
    return 4 * tm4 * wy, tn * wx, bt * bc          # BM channels, BN outputs, BK reduction rows


def _grid(loc, spec):
    bm, bn, _ = _tile(spec)
    return cdiv(loc.tw, bn), loc.G * cdiv(loc.cog, bm), loc.nb


def tiled_shared(spec):
    bm, bn, bk = _tile(spec)
    return 4 * bk * (bm + bn)


def tiled_choose(loc, spec, dev):
    """Tiles for the device (large: 256 threads, 128-channel tiles; small: 128 threads, 64), then
    for the piece: the channel tile follows cog, the output tile a short output, the reduction
    block min(cig, 16) channels x taps; tiles shrink until the grid fills the GPU, then until shared
    memory and invocations fit (the order of conv_transpose_1d_tiled's choice)."""
    prof = _profile(dev)
    nt, tm4_max, tn, bm, bn_max = (256, 2, 8, 128, 256) if prof == "large" else (128, 1, 4, 64, 128)
    wx, wy, tm4, tn = thread_tile(dev, loc.cog, nt, tm4_max, tn, bm, bn_max)
    floor = max(dev.subgroup_size, 1)
    while tn * wx > max(loc.tw, 16):
        if tn > 1:
            tn //= 2
        elif (wx // 2) * wy >= floor:
            wx //= 2
        else:
            break
    bc = max(1, min(16, loc.cig))
    bt = max(1, min(16 // bc, loc.K))
    sp = [wx, wy, tm4, tn, bt, bc]
    shrink_to_fill(sp, lambda sp: math.prod(_grid(loc, sp)), MIN_WORKGROUPS[prof], floor)
    # halve, in this order: BT, BC (down to 4), TN, TM4, WG_X, BC (down to 1), WG_Y
    return shrink_to_fit(sp, tiled_shared, dev, ((4, 1), (5, 4), (3, 1), (2, 1), (0, 1), (5, 1), (1, 1)))


def tiled_setup(loc, spec):
    grid = _grid(loc, spec)
    fields = dict(G=loc.G, cig=loc.cig, cog=loc.cog, cogp=round_up(loc.cog, 4), K=loc.K, lw=loc.lw, tw=loc.tw,
                  s=loc.s, d=loc.d, pad=loc.pad, utiles=grid[0], has_bias=int(loc.has_bias), **loc.layout_fields(),
                  **loc.act_fields())
    return grid, fields


def tiled_work(loc, spec, grid):
    bm, bn, _ = _tile(spec)
    tiles = float(grid[0]) * grid[1] * grid[2]
    taps = min(loc.K, cdiv(bn * loc.s + loc.lw, loc.d) + 1)
    return {"tiles": tiles, "mac": tiles * round_up(taps, spec[4]) * round_up(loc.cig, spec[5]) * bm * bn}


def tiled_weights(dst, w, loc, spec):
    """w (G, cog, cig, wk) -> (G, wk, cig, cogp), cogp = cog rounded up to 4 with zeros."""
    cogp = round_up(loc.cog, 4)
    dst4 = dst[:loc.G * _wk(loc) * loc.cig * cogp].reshape(loc.G, _wk(loc), loc.cig, cogp)
    _blocked_transpose(dst4, w.transpose(0, 2, 1, 3), loc.cig)
    dst4[:, :, :, loc.cog:] = 0


CONV1D_TILED = Kernel(
    name="conv1d_tiled", op="conv1d",
    summary="GPU direct conv1d: an implicit GEMM per (n, g), operand tiles in shared memory",
    push=("G", "cig", "cog", "cogp", "K", "kb", "wk", "lw", "ldx", "xoff", "tw", "ldo", "ooff", "s", "d", "pad",
          "utiles", "has_bias") + ACT_PUSH + GRID,
    signed=("pad",), floats=ACT_FLOATS, spec=("wg_x", "wg_y", "tm4", "tn", "bt", "bc"),
    defaults={"cpu": (8, 2, 1, 4, 1, 16), "gpu": (32, 8, 2, 4, 1, 16)},
    bindings=(("x", "(nb, G*cig, ldx)"), ("w", "(G, wk, cig, cogp)"), ("bias", "(G*cog,)"), ("out", "(nb, G*cog, ldo)")),
    setup=tiled_setup, work=tiled_work, choose=tiled_choose, pack_weights=tiled_weights,
    w_floats=lambda loc, spec: loc.G * _wk(loc) * loc.cig * round_up(loc.cog, 4),
    shared_bytes=tiled_shared, invocations=lambda spec: spec[0] * spec[1],
    # a TN x 4*TM4 register tile per thread (conv_transpose_1d_tiled's rule)
    ranges=dict(wg_x=(1, 1024), wg_y=(1, 1024), tm4=(1, 8), tn=(1, 32), bt=(1, 64), bc=(1, 64)),
    constraint=("4 * tm4 * tn <= 32",))

# ------------------------------------------------------------------------------- conv1d_grad_weight_sg
def gw_sg_choose(loc, spec, dev):
    """TM: 64 input channels, fewer (a multiple of SG) for a narrower layer; fewer than SG input or
    4 output channels per group (depthwise) go to the portable kernel."""
    wg, tm, tn, sg = spec
    if loc.cig < sg or loc.cog < 4:
        return None
    return wg, min(tm, round_up(loc.cig, sg)), tn, sg


def gw_sg_setup(loc, spec):
    wg, tm, tn, _ = spec
    ob, ib = cdiv(loc.cog, wg * tn), cdiv(loc.cig, tm)
    _, fields = GRAD_WEIGHT.setup(loc, (1, 1, 1))
    fields = {k: v for k, v in fields.items() if k not in ("oblocks", "iblocks")}
    return (ob, loc.G * ib, max(1, loc.K)), dict(fields, OB=ob, IB=ib)


def gw_sg_work(loc, spec, grid):
    wg, tm, tn, _ = spec
    groups = float(grid[0]) * grid[1] * grid[2]
    trips = groups * loc.nb * cdiv(min(loc.lx, cdiv(loc.lg, loc.s) + 1) + 3, 4)
    return {"groups": groups, "trips": trips, "mac": trips * 4 * tm * wg * tn, "out": groups * tm * wg * tn}


GRAD_WEIGHT_SG = Kernel(
    name="conv1d_grad_weight_sg", op="conv1d_grad_weight",
    summary="llvmpipe weight gradient: matmul_sg's shape per tap, x rows shared by shuffle, batch and length "
            "summed in registers, accumulate flag for chunks",
    push=("nb", "G", "cig", "cog", "K", "lx", "ldx", "xoff", "lg", "ldg", "goff", "s", "d", "pad", "ldk", "kb",
          "accumulate", "OB", "IB", "in_act", "in_slope") + GRID,
    signed=("pad",), floats=("in_slope",), spec=("wg", "tm", "tn", "sg"),
    defaults={"cpu": (8, 64, 4, 8), "gpu": (32, 64, 4, 32)},
    bindings=GRAD_WEIGHT.bindings, setup=gw_sg_setup, work=gw_sg_work, choose=gw_sg_choose,
    x_layout=lambda loc, spec: (0, round_up(max(loc.lx, 1), 4)),   # vec4 rows: ldx % 4 == 0, any xoff
    subgroup_ops=SHUFFLE, min_subgroup=lambda spec: spec[3], invocations=lambda spec: spec[0],
    search=(dict(tm=32),),
    # matmul_sg's rules: TN vec4 column groups, SG a power of two dividing WG and TM, TM <= 64 and
    # TM*TN <= 256 accumulators
    ranges=dict(wg=(1, 1024), tm=(4, 64), tn=(4, 16), sg=(4, 128)),
    constraint=("tn % 4 == 0", "sg & (sg - 1) == 0", "wg % sg == 0", "tm % sg == 0", "tm * tn <= 256"))

# ------------------------------------------------------------------------------- conv1d_grad_weight_tiled
def _gw_tile(spec):
    wx, wy, tm, tn, bk = spec
    return tm * wy, tn * wx                        # BM input channels, BN output channels


def gw_tiled_shared(spec):
    bm, bn = _gw_tile(spec)
    return 4 * spec[4] * (bm + bn + 2)


def _gw_grid(loc, spec):
    bm, bn = _gw_tile(spec)
    return cdiv(loc.cog, bn), loc.G * cdiv(loc.cig, bm), max(1, loc.K)


def gw_tiled_choose(loc, spec, dev):
    """large: 16 x 16 threads, 8 x 8 channels each (128 x 128 tiles); small: 16 x 8 threads, 4 x 4;
    narrow layers shrink the tile sides, then tiles shrink (channels per thread, then threads, not
    below one subgroup) until the grid fills the GPU, then until shared memory and invocations fit."""
    prof = _profile(dev)
    sp = [16, 16, 8, 8, 16] if prof == "large" else [16, 8, 4, 4, 16]
    fit_threads(sp, dev)
    while sp[2] > 1 and _gw_tile(sp)[0] >= 2 * loc.cig:
        sp[2] //= 2
    while sp[3] > 1 and _gw_tile(sp)[1] >= 2 * loc.cog:
        sp[3] //= 2
    shrink_2d_to_fill(sp, _gw_tile, lambda sp: math.prod(_gw_grid(loc, sp)), MIN_WORKGROUPS[prof],
                      max(dev.subgroup_size, 1))
    return shrink_to_fit(sp, gw_tiled_shared, dev, ((4, 4), (2, 1), (3, 1), (1, 1), (0, 1)))


def gw_tiled_setup(loc, spec):
    grid = _gw_grid(loc, spec)
    _, fields = GRAD_WEIGHT.setup(loc, (1, 1, 1))
    fields = {k: v for k, v in fields.items() if k not in ("oblocks", "iblocks")}
    return grid, dict(fields, OB=grid[0], IB=grid[1] // loc.G)


def gw_tiled_work(loc, spec, grid):
    bm, bn = _gw_tile(spec)
    tiles = float(grid[0]) * grid[1] * grid[2]
    steps = loc.nb * round_up(min(loc.lx, cdiv(loc.lg, loc.s) + 1), spec[4])
    return {"tiles": tiles, "mac": tiles * steps * bm * bn, "out": tiles * bm * bn}


GRAD_WEIGHT_TILED = Kernel(
    name="conv1d_grad_weight_tiled", op="conv1d_grad_weight",
    summary="GPU weight gradient: a per-tap matmul, x and grad_out staged along positions in shared memory",
    push=GRAD_WEIGHT_SG.push, signed=("pad",), floats=("in_slope",), spec=("wg_x", "wg_y", "tm", "tn", "bk"),
    defaults={"cpu": (16, 8, 4, 4, 16), "gpu": (16, 16, 4, 8, 16)},
    bindings=GRAD_WEIGHT.bindings, setup=gw_tiled_setup, work=gw_tiled_work, choose=gw_tiled_choose,
    shared_bytes=gw_tiled_shared, invocations=lambda spec: spec[0] * spec[1],
    # a TM x TN register tile per thread
    ranges=dict(wg_x=(1, 1024), wg_y=(1, 1024), tm=(1, 16), tn=(1, 16), bk=(1, 64)), constraint=("tm * tn <= 64",))

BASE = (CONV1D_SG, CONV1D_TILED, GRAD_WEIGHT_SG, GRAD_WEIGHT_TILED)
assert CONV1D_BINDINGS[0] == CONV1D_SG.bindings[0] == CONV1D_TILED.bindings[0]
