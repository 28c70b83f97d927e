"""Kernels shaped for real GPUs, built the way fast GPU kernels are: consecutive lanes read
consecutive addresses, workgroup tiles of both operands staged in shared memory, a register tile per
thread, vec4 loads where aligned; tile sizes are specialization constants chosen per device (shared
memory, invocations) and per problem (enough workgroups to fill the GPU). Correct on lavapipe (the
test suite forces them); their speed on a GPU has not been measured here (no GPU was available).

  conv_transpose_1d_tiled  the direct conv as a matmul per output phase:
                           [cog x (cig*taps)] . [(cig*taps) x outputs], shifted input columns
  matmul_tiled             BM x BN tiles of C, A and B staged through shared memory; split-K (KS slices
                           of the reduction) where the grid is too small to fill the GPU

Split-K: where C has too few tiles to fill the GPU (fewer than MIN_WORKGROUPS), matmul_tiled first
cuts the reduction into KS slices (spec `ks`: at most that many; each slice at least SPLIT_MIN_TILES
k tiles deep) that write KS partial copies of C, summed by the consumer in slice order (col2im_1d on
conv_transpose1d's and the weight gradient's gemm paths, bias_act_1d on conv1d's; deterministic, no
atomics); only if the grid is still short do the per-thread tiles shrink. It applies where the
consumer sums slices and the workspace budget holds them (MatmulLocal.max_splits; never the matmul
op alone). tune's search tries ks=1 against it.

Register tiles hold at most 32 accumulators per thread (8 x 4 or 4 x 8): compiled by AMD's ACO
(scripts/gpu_compile_report.py) that is 64 VGPRs, 4 waves per SIMD on GCN and 8-16 on RDNA; the
8 x 8 tiles used before took 128 VGPRs, 2 waves per SIMD on GCN (vega10, polaris10), for 1.0
instead of 1.5 bytes of shared-memory reads per multiply-add.
"""
import math

from .base import Kernel, cdiv, phase_constants, round_up
from .cpu import _blocked_transpose
from .portable import ACT_FLOATS, ACT_PUSH, GRID, MATMUL_PUSH, matmul_setup

MIN_WORKGROUPS = {"large": 256, "small": 32}      # enough tiles to fill ~100 / ~8 compute units
# k tiles (BK rows) per split-K slice at least: a slice of 64 x 128 outputs then does >= 64 multiply-adds
# per partial sum it writes, above a GPU's ratio of arithmetic to memory bandwidth (~25 on an H200)
SPLIT_MIN_TILES = 4



def shrink_to_fit(sp, shared, dev, order):
    """Halve spec entries (index, floor) in `order`, one at a time, until shared(sp) fits the
    device's shared memory; None when nothing is left to halve."""
    while shared(sp) > dev.max_shared_bytes:
        for i, low in order:
            if sp[i] > low:
                sp[i] //= 2
                break
        else:
            return None
    return tuple(sp)


def shrink_to_fill(sp, workgroups, want, floor):
    """Halve a tiled kernel's register tile (sp[3], then sp[2]), then its threads (sp[0], then sp[1]; a
    workgroup not below `floor` invocations) until workgroups(sp) >= want (the grid fills the GPU)."""
    while workgroups(sp) < want:
        if sp[3] > 1:
            sp[3] //= 2
        elif sp[2] > 1:
            sp[2] //= 2
        elif sp[0] > 1 and (sp[0] // 2) * sp[1] >= floor:
            sp[0] //= 2
        elif sp[1] > 1 and sp[0] * (sp[1] // 2) >= floor:
            sp[1] //= 2
        else:
            break
    return sp


def fit_threads(sp, dev):
    """Halve a 2-D workgroup (sp[0] x sp[1] threads; the taller side first) until it fits the
    device's invocations."""
    while sp[0] * sp[1] > dev.max_invocations:
        sp[1 if sp[1] >= sp[0] and sp[1] > 1 else 0] //= 2


def shrink_2d_to_fill(sp, tile, workgroups, want, floor, wg_y_while_tall=False):
    """Halve a matmul-like kernel's per-thread tile (sp[3] while the tile is at least as wide as tall,
    then sp[2], then sp[3]), then its threads (sp[1], then sp[0]; a workgroup not below `floor`
    invocations) until workgroups(sp) >= want. wg_y_while_tall: sp[1] halves only while the tile
    (tile(sp) = (rows, columns)) is at least as tall as wide."""
    while workgroups(sp) < want:
        bm, bn = tile(sp)
        if sp[3] > 1 and bn >= bm:
            sp[3] //= 2
        elif sp[2] > 1:
            sp[2] //= 2
        elif sp[3] > 1:
            sp[3] //= 2
        elif sp[1] > 1 and sp[0] * sp[1] // 2 >= floor and (bm >= bn or not wg_y_while_tall):
            sp[1] //= 2
        elif sp[0] > 1 and sp[0] * sp[1] // 2 >= floor:
            sp[0] //= 2
        else:
            break
    return sp


def split_k(tiles, want, K, bk, cap):
    """Slices of a reduction of K rows (BK per tile) for a grid of `tiles` workgroups: enough to reach
    `want` workgroups, at most `cap`, each slice at least SPLIT_MIN_TILES tiles deep and none empty
    (KC = roundup(ceil(K / S), BK) rows each, as the shader computes them); 1 when the grid fills."""
    if tiles >= want or cap <= 1:
        return 1
    s = max(1, min(cap, cdiv(want, tiles), K // (SPLIT_MIN_TILES * bk)))
    return cdiv(K, round_up(cdiv(K, s), bk))


def thread_tile(dev, cog, nt, tm4_max, tn, bm, bn_max):
    """(WG_X, WG_Y, TM4, TN) of a tiled conv kernel: nt threads (within the device's invocations), a
    channel tile of up to bm following cog (TM4 vec4s of channels per thread), TN outputs per thread
    with the output tile at most bn_max."""
    while nt > dev.max_invocations:
        nt //= 2
    bm = max(4, min(bm, _next_pow2(cog)))
    tm4 = min(tm4_max, bm // 4)
    wy = max(1, min(bm // (4 * tm4), nt))
    wx = min(max(1, nt // wy), 128)
    while tn * wx > bn_max and tn > 1:
        tn //= 2
    return wx, wy, tm4, tn


def _profile(dev):
    """'large' (discrete NVIDIA/AMD, Intel Xe: >= 48 KiB shared, >= 1024 invocations) or 'small'."""
    return "large" if dev.max_shared_bytes >= 48 * 1024 and dev.max_invocations >= 1024 else "small"


def _next_pow2(v):
    return 1 << max(0, (int(v) - 1).bit_length())


# ------------------------------------------------------------------------------- conv_transpose_1d_tiled
def _conv_tile(spec):
    wx, wy, tm4, tn, bt, bc, masked = spec
    return 4 * tm4 * wy, tn * wx, bt * bc          # BM channels, BN outputs, BK reduction rows


def _conv_grid(loc, spec):
    bm, bn, _ = _conv_tile(spec)
    nph = min(loc.s, loc.tw)
    utiles = cdiv(cdiv(loc.tw, loc.s), bn)
    return (nph * utiles, loc.G * cdiv(loc.cog, bm), loc.nb), nph, utiles


def conv_shared(spec):
    bm, bn, bk = _conv_tile(spec)
    return 4 * bk * (bm + bn)


def conv_choose(loc, spec, dev):
    """Tiles for the device (large: 256 threads, 8 channels x 4 outputs each, 128 x 64; small: 128
    threads, 4 x 4 each, 64 x 32), then for the piece: the channel tile follows cog (depthwise: 4),
    the reduction block min(cig, 16) channels x taps, a short input narrows the output tile, and
    tiles shrink until the grid fills the GPU; finally the device's shared memory and invocation
    limits. MASKED = 0: plain
    multiply-adds (safe() turns masking on for non-finite weights)."""
    prof = _profile(dev)
    nt, tm4_max, tn, bm, bn_max = (256, 2, 4, 128, 256) if prof == "large" else (128, 1, 4, 64, 128)
    if prof == "large":
        # the base spec's register tile and thread count start the search (tune tries others: `search`);
        # the defaults give the tile above
        nt, tm4_max, tn = min(nt, spec.wg_x * spec.wg_y), spec.tm4, spec.tn
    wx, wy, tm4, tn = thread_tile(dev, loc.cog, nt, tm4_max, tn, bm, bn_max)
    floor = max(dev.subgroup_size, 1)
    while tn * wx > max(2 * max(loc.lw, 1), 16):
        if tn > 1:
            tn //= 2
        elif (wx // 2) * wy >= floor:
            wx //= 2
        else:
            break
    _, kp, _, _ = phase_constants(loc.s, loc.d)
    bc = max(1, min(16, loc.cig))
    bt = max(1, min(16 // bc, cdiv(loc.K, kp)))
    sp = [wx, wy, tm4, tn, bt, bc, 0]
    shrink_to_fill(sp, lambda sp: math.prod(_conv_grid(loc, sp)[0]), MIN_WORKGROUPS[prof], floor)
    # halve, in this order: BT, BC (down to 4), TN, TM4, WG_X, BC (down to 1), WG_Y
    return shrink_to_fit(sp, conv_shared, dev, ((4, 1), (5, 4), (3, 1), (2, 1), (0, 1), (5, 1), (1, 1)))


def conv_setup(loc, spec):
    grid, nph, utiles = _conv_grid(loc, spec)
    g, kp, dg, dinv = phase_constants(loc.s, loc.d)
    fields = dict(G=loc.G, cig=loc.cig, cog=loc.cog, cogp=round_up(loc.cog, 4), K=loc.K, lw=loc.lw,
                  ldx=max(1, loc.lw), xoff=0, tw=loc.tw, s=loc.s, d=loc.d, pad=loc.pad, gsd=g, kp=kp, dg=dg, dinv=dinv,
                  nph=nph, utiles=utiles, has_bias=int(loc.has_bias), **loc.act_fields())
    return grid, fields


def conv_work(loc, spec, grid):
    bm, bn, bk = _conv_tile(spec)
    _, kp, dg, _ = phase_constants(loc.s, loc.d)
    tiles = float(grid[0]) * grid[1] * grid[2]
    taps = min(cdiv(loc.K, kp), cdiv(bn + loc.lw, dg) + 1)
    return {"tiles": tiles, "mac": tiles * round_up(taps, spec[4]) * round_up(loc.cig, spec[5]) * bm * bn}


def conv_weights(dst, w, loc, spec):
    """(G, K, cig, cogp), cogp = cog rounded up to 4 with zeros (vec4 loads along o)."""
    cogp = round_up(loc.cog, 4)
    dst4 = dst[:loc.G * loc.K * loc.cig * cogp].reshape(loc.G, loc.K, loc.cig, cogp)
    _blocked_transpose(dst4, w, loc.cig)
    dst4[:, :, :, loc.cog:] = 0


CONV_TILED = Kernel(
    name="conv_transpose_1d_tiled", op="conv_transpose_1d",
    summary="GPU direct kernel: a matmul per output phase, operand tiles in shared memory",
    push=("G", "cig", "cog", "cogp", "K", "lw", "ldx", "xoff", "tw", "s", "d", "pad", "gsd", "kp", "dg", "dinv",
          "nph", "utiles", "has_bias") + ACT_PUSH + GRID,
    signed=("pad",), floats=ACT_FLOATS, spec=("wg_x", "wg_y", "tm4", "tn", "bt", "bc", "masked"),
    defaults={"cpu": (8, 2, 1, 4, 1, 16, 0), "gpu": (32, 8, 2, 4, 1, 16, 0)},
    bindings=(("x", "(nb, G*cig, ldx)"), ("w", "(G, K, cig, cogp)"), ("bias", "(G*cog,)"), ("out", "(nb, G*cog, tw)")),
    setup=conv_setup, work=conv_work, choose=conv_choose, safe=lambda spec: spec[:6] + (1,),
    pack_weights=conv_weights, w_floats=lambda loc, spec: loc.G * loc.K * loc.cig * round_up(loc.cog, 4),
    shared_bytes=conv_shared, invocations=lambda spec: spec.wg_x * spec.wg_y,
    # conv_choose sets every field per piece; any sizes are correct, the register tile is bounded
    # (at most 32 accumulators: 64 VGPRs on AMD, see the module doc)
    ranges=dict(wg_x=(1, 1024), wg_y=(1, 1024), tm4=(1, 8), tn=(1, 32), bt=(1, 64), bc=(1, 64), masked=(0, 1)),
    constraint=("4 * tm4 * tn <= 32",),
    # tune's alternatives on a large GPU (the register tile per thread: 16 to 32 accumulators)
    search=(dict(tm4=1), dict(tm4=1, tn=8), dict(tn=2), dict(wg_x=16, wg_y=16)))


# ------------------------------------------------------------------------------- matmul_tiled
def _mm_tile(spec):
    wx, wy, tm, tn4, bk, ks = spec
    return tm * wy, 4 * tn4 * wx


def matmul_shared(spec):
    bm, bn = _mm_tile(spec)
    bk4 = spec[4] // 4
    return 4 * spec[4] * (bm + (1 if bk4 >= 8 else 8 // bk4)) + 4 * spec[4] * bn


def matmul_choose(loc, spec, dev):
    """large: 16 x 16 threads, 4 x 8 outputs each (64 x 128 tiles); small: at most 16 x 8 threads, 4 x 4;
    where the grid is short of filling the GPU, split-K first (up to `ks` slices, where the consumer
    sums them: loc.max_splits), then tiles shrink (outputs per thread, then threads, not below one
    subgroup) until the grid fills the GPU; then until shared memory and invocations fit."""
    prof = _profile(dev)
    # large: the base spec (the defaults: 16 x 16 threads, 4 x 8 each; tune tries others: `search`);
    # small: the base spec within 16 x 8 threads, 4 x 4 each
    sp = list(spec) if prof == "large" else [min(spec.wg_x, 16), min(spec.wg_y, 8), min(spec.tm, 4),
                                              min(spec.tn4, 1), spec.bk, spec.ks]
    fit_threads(sp, dev)

    def tiles(sp):
        bm, bn = _mm_tile(sp)
        return cdiv(loc.N, bn) * cdiv(loc.M, bm) * loc.batch
    want = MIN_WORKGROUPS[prof]
    sp[5] = split_k(tiles(sp), want, loc.K, sp[4], min(sp[5], loc.max_splits))
    shrink_2d_to_fill(sp, _mm_tile, lambda sp: tiles(sp) * sp[5], want, max(dev.subgroup_size, 1),
                      wg_y_while_tall=True)
    return shrink_to_fit(sp, matmul_shared, dev, ((4, 8), (2, 1), (3, 1), (4, 4), (1, 1), (0, 1)))


def matmul_tiled_setup(loc, spec):
    bm, bn = _mm_tile(spec)
    _, fields = matmul_setup(loc, (1, 1, 1, 1))
    return (cdiv(loc.N, bn), cdiv(loc.M, bm), loc.batch * spec[5]), fields


def matmul_tiled_work(loc, spec, grid):
    """Every workgroup (slices included) does one slice's depth; each slice writes its tile of C."""
    bm, bn = _mm_tile(spec)
    tiles = float(grid[0]) * grid[1] * grid[2]
    depth = round_up(cdiv(loc.K, spec[5]), spec[4])
    return {"mac": tiles * bm * bn * depth, "out": tiles * bm * bn}


MATMUL_TILED = Kernel(
    name="matmul_tiled", op="matmul",
    summary="GPU matmul: BM x BN tiles, A and B staged through shared memory, coalesced vec4 loads, split-K",
    push=MATMUL_PUSH, floats=("in_slope",), spec=("wg_x", "wg_y", "tm", "tn4", "bk", "ks"),
    defaults={"cpu": (16, 8, 4, 1, 16, 1), "gpu": (16, 16, 4, 2, 16, 8)},
    bindings=(("a", "(a_batch_mod, M, lda)"), ("b", "(batch, K, ldb)"), ("c", "(ks, batch, M, ldc)")),
    setup=matmul_tiled_setup, work=matmul_tiled_work, choose=matmul_choose,
    shared_bytes=matmul_shared, invocations=lambda spec: spec.wg_x * spec.wg_y, f16=dict(align=4),
    slices=lambda spec: spec.ks,
    # matmul_choose sets every field per piece; BK: a multiple of 4 (rows staged as vec4; BK < 4
    # divides by zero in the shader's padding), the register tile at most 32 accumulators; any KS
    # is correct (a slice past K writes zeros)
    ranges=dict(wg_x=(1, 1024), wg_y=(1, 1024), tm=(1, 32), tn4=(1, 8), bk=(4, 64), ks=(1, 64)),
    constraint=("bk % 4 == 0", "tm * 4 * tn4 <= 32"),
    # tune's alternatives on a large GPU (tile shape, accumulators per thread, reduction depth, and
    # shrinking tiles instead of split-K)
    search=(dict(tm=8, tn4=1), dict(tm=2), dict(bk=32), dict(wg_x=32, wg_y=8), dict(ks=1)))
