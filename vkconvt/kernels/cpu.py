"""Kernels shaped for llvmpipe (lavapipe), where each invocation is one SIMD lane and every storage
buffer load costs about 14 instructions per lane (37 for a vec4) against 2 for a multiply-add: share
loaded values across lanes with subgroupShuffle, keep large per-lane register tiles, load vec4
(the measured choices are summarised in each shader's header, shaders/<name>.comp).

  conv_transpose_1d_sg  dense and grouped layers: lanes own output channels (vec4 weights), the J
                        outputs of one phase share their inputs through shuffles, taps in pairs
  conv_transpose_1d_dw  depthwise layers (one input and one output channel per group): lanes own
                        channels, the taps are registers, inputs read as vec4
  matmul_sg             A values shared by shuffle, a 64 x 4 tile of C per lane, vec4 loads
"""
import os
import threading

from .base import Kernel, cdiv, phase_constants, round_up
from .portable import ACT_FLOATS, ACT_PUSH, GRID, MATMUL_BINDINGS, MATMUL_PUSH, matmul_setup

SHUFFLE = ("basic", "shuffle")
MAX_J = 64          # J >= 80 crashes lavapipe 25.0.7's shader compiler (a stack overflow)
MAX_S = 65535       # the sg kernel's phase arithmetic ((ph/gd) * inv) needs s < 2**16
PARALLEL_FLOATS = 1 << 20      # weights this large (4 MiB of float32) are repacked by two threads
CPUS = os.cpu_count() or 1


def _blocked_transpose(dst4, w, ci_dim):
    """dst4[g, q, ci, o] = w[g, ci, o, q] in blocks of 16 input channels (cache-friendly: a plain
    strided transpose of a large weight costs 4-8x a copy). A weight of PARALLEL_FLOATS or more is
    repacked by two threads, each half of the input channels (NumPy releases the GIL while it
    copies): a one-off weight is repacked on every call, and 1536 x 768 x 16 took 22 ms alone, 12
    ms in two halves on this 2-vCPU machine."""
    def run(a, b):
        for c0 in range(a, b, 16):
            c1 = min(c0 + 16, b)
            dst4[:, :, c0:c1, :w.shape[2]] = w[:, c0:c1].transpose(0, 3, 1, 2)

    mid = ci_dim // 32 * 16
    if w.size < PARALLEL_FLOATS or mid == 0 or CPUS < 2:
        run(0, ci_dim)
        return
    failed = []

    def second_half():
        try:
            run(mid, ci_dim)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failed.append(exc)
    th = threading.Thread(target=second_half, name="vkconvt-repack", daemon=True)
    th.start()
    try:
        run(0, mid)
    finally:
        th.join()
    if failed:
        raise failed[0]


# ------------------------------------------------------------------------------- conv_transpose_1d_sg
def _sg_pads(loc, spec):
    wg, to, j, ci, sg, edge, pair, cip = spec
    return round_up(loc.cig, max(ci, cip)), round_up(loc.cog, 4)


def sg_choose(loc, spec, dev):
    """8 output channels per lane unless 4 waste fewer padded channels; the block length J (48/32
    with 8 channels, 64/48 with 4) that pads a phase's outputs least."""
    if loc.s > MAX_S or loc.cog < 8:
        return None        # huge strides, and few output channels (lanes own channels), go elsewhere
    wg, _, _, ci, sg, edge, pair, cip = spec

    def waste(to):
        return cdiv(loc.cog, 8 * to) * 8 * to
    to = 8 if waste(8) <= waste(4) * 1.05 else 4
    n_ph = cdiv(loc.tw, loc.s)
    cands = (48, 32) if to == 8 else (64, 48)
    fits = [jj for jj in cands if jj % sg == 0]         # a block is whole windows of SG lanes
    if not fits:
        return None
    j = min(fits, key=lambda jj: (cdiv(n_ph, jj) * jj * (1.0 if jj == cands[0] else 1.03), -jj))
    return wg, to, j, ci, sg, edge, pair, cip


def sg_safe(spec):
    """EDGE_SELECT discards the products of positions outside the input with a select; it turns
    tap pairing off, so its single-tap loop takes 2 channels per trip."""
    wg, to, j, ci, sg, edge, pair, cip = spec
    return wg, to, j, 2, sg, 1, pair, cip


def sg_setup(loc, spec):
    wg, to, j = spec[:3]
    g, kp, dg, dinv = phase_constants(loc.s, loc.d)
    ci_pad, o_pad = _sg_pads(loc, spec)
    kb, ob = cdiv(cdiv(loc.tw, loc.s), j), cdiv(loc.cog, wg * to)
    fields = dict(cig=loc.cig, cog=loc.cog, G=loc.G, K=loc.K, s=loc.s, d=loc.d, pad=loc.pad, lw=loc.lw, tw=loc.tw,
                  xoff=0, ldx=max(1, loc.lw), has_bias=int(loc.has_bias), gd=g, P=kp, Dp=dg, inv=dinv,
                  ci_pad=ci_pad, o_pad=o_pad, KB=kb, OB=ob, **loc.act_fields())
    return (loc.s * kb, loc.G * ob, loc.nb), fields


def sg_work(loc, spec, grid):
    wg, to, j = spec[:3]
    _, kp, dg, _ = phase_constants(loc.s, loc.d)
    ci_pad, _ = _sg_pads(loc, spec)
    groups = float(grid[0]) * grid[1] * grid[2]
    taps = groups * min(cdiv(loc.K, kp), cdiv(j + loc.lw - 1, dg) + 1)
    return {"groups": groups, "taps": taps, "mac": taps * ci_pad * j * wg * to, "out": groups * j * wg * to}


def sg_weights(dst, w, loc, spec):
    """[G][K][ci_pad][o_pad], zero padded."""
    ci_pad, o_pad = _sg_pads(loc, spec)
    dst4 = dst[:loc.G * loc.K * ci_pad * o_pad].reshape(loc.G, loc.K, ci_pad, o_pad)
    _blocked_transpose(dst4, w, loc.cig)
    dst4[:, :, loc.cig:, :] = 0
    dst4[:, :, :, loc.cog:] = 0


CONV_SG = Kernel(
    name="conv_transpose_1d_sg", op="conv_transpose_1d",
    summary="llvmpipe direct kernel: lanes own output channels, one phase's outputs share inputs by shuffle",
    push=("cig", "cog", "G", "K", "s", "d", "pad", "lw", "tw", "xoff", "ldx", "has_bias", "gd", "P", "Dp", "inv",
          "ci_pad", "o_pad", "KB", "OB") + ACT_PUSH + GRID,
    signed=("pad",), floats=ACT_FLOATS, spec=("wg", "to", "j", "ci", "sg", "edge_select", "pair", "cip"),
    defaults={"cpu": (8, 8, 48, 1, 8, 0, 1, 2), "gpu": (32, 4, 32, 1, 32, 0, 1, 2)},
    bindings=(("x", "(nb, G*cig, ldx)"), ("w", "[G][K][ci_pad][o_pad]"), ("bias", "(G*cog,) or (1,) unused"),
              ("out", "(nb, G*cog, tw)")),
    setup=sg_setup, work=sg_work, choose=sg_choose, safe=sg_safe, pack_weights=sg_weights,
    w_floats=lambda loc, spec: loc.G * loc.K * _sg_pads(loc, spec)[0] * _sg_pads(loc, spec)[1],
    subgroup_ops=SHUFFLE, min_subgroup=lambda spec: spec.sg, invocations=lambda spec: spec.wg,
    search=(dict(pair=0), dict(cip=1)),
    # TO: vec4s of channels per lane (TO4 = TO/4: TO = 6 would leave channels unwritten); SG: a
    # power of two (it then divides the device's subgroup size), every subgroup holds whole windows
    # (WG % SG) and a block is whole windows (J % SG; else the shuffles index past the window);
    # J <= 64 (80 crashes lavapipe's compiler); CI, CIP >= 1 (0: the channel loop never ends), and
    # the unrolled bodies stay <= 1536 multiply-adds (CI <= 4, CIP <= 2 at J = 48, TO = 8).
    ranges=dict(wg=(1, 1024), to=(4, 8), j=(4, MAX_J), ci=(1, 4), sg=(4, 128), edge_select=(0, 1), pair=(0, 1),
                cip=(1, 2)),
    constraint=("to % 4 == 0", "sg & (sg - 1) == 0", "wg % sg == 0", "j % sg == 0"))


# ------------------------------------------------------------------------------- conv_transpose_1d_dw
DW_MAX_FAST_TAPS = 64        # longer filters take the generic path (no huge unrolls)


def dw_choose(loc, spec, dev):
    """The fast path (S = s, KS = K compiled in) when d == 1, K <= 64 and s <= 16; else the generic
    path (S = 0). OV: the widest output vector (4, 2, 1) that divides tw, pad and s*P."""
    if loc.cig != 1 or loc.cog != 1:
        return None
    wg, _, _, p, _, edge = spec
    if loc.d == 1 and loc.K <= DW_MAX_FAST_TAPS and loc.s <= 16:
        ov = next((v for v in (4, 2) if loc.tw % v == 0 and loc.pad % v == 0 and (loc.s * p) % v == 0), 1)
        return wg, loc.s, loc.K, p, ov, edge
    return wg, 0, 1, 4, 1, edge


def dw_safe(spec):
    return spec[:5] + (1,)


def _dw_jrange(loc, S, P):
    jlo = (loc.pad // S) // 4 * 4                       # floor(pad/S) rounded down to a multiple of 4
    return jlo, (loc.tw - 1 + loc.pad) // S + 1


def dw_x_layout(loc, spec):
    """The zero margins the fast path reads (the generic path needs none)."""
    wg, S, KS, P = spec[:4]
    if S == 0:
        return 0, max(1, loc.lw)
    jlo, jmax = _dw_jrange(loc, S, P)
    xoff = round_up(max(0, -jlo) + cdiv(KS, S) - 1, 4)     # reads start at jlo - TM + 1
    jend = jlo + round_up(max(jmax - jlo, 1), P)             # reads end before jend
    return xoff, round_up(xoff + max(loc.lw, jend), 4)


def _dw_geometry(loc, spec, target_groups=16):
    wg, S, KS, P = spec[:4]
    ncg = cdiv(loc.G, wg)
    if S == 0:
        total, unit, jlo = loc.tw, 1, 0
    else:
        jlo, jmax = _dw_jrange(loc, S, P)
        total, unit = max(jmax - jlo, 1), P
    jb = round_up(max(cdiv(total, max(1, cdiv(target_groups, ncg))), 4 * unit), unit)
    return jlo, jb, cdiv(total, jb)


def dw_setup(loc, spec):
    g, kp, dg, dinv = phase_constants(loc.s, loc.d)
    jlo, jb, njb = _dw_geometry(loc, spec)
    xoff, ldx = dw_x_layout(loc, spec)
    fields = dict(G=loc.G, K=loc.K, s=loc.s, d=loc.d, pad=loc.pad, lw=loc.lw, tw=loc.tw, xoff=xoff, ldx=ldx,
                  has_bias=int(loc.has_bias), jlo=jlo, JB=jb, NJB=njb, gd=g, P=kp, Dp=dg, inv=dinv,
                  KP=round_up(loc.K, 4), **loc.act_fields())
    return (njb, cdiv(loc.G, spec[0]), loc.nb), fields


def dw_work(loc, spec, grid):
    outs = float(loc.nb) * loc.G * loc.tw
    _, kp, _, _ = phase_constants(loc.s, loc.d)
    return {"out": outs, "mac": outs * cdiv(loc.K, kp), "fast": outs if spec[1] else 0.0}


def dw_weights(dst, w, loc, spec):
    kp = round_up(loc.K, 4)
    dst2 = dst[:loc.G * kp].reshape(loc.G, kp)
    dst2[:, :loc.K] = w[:, 0, 0, :]
    dst2[:, loc.K:] = 0


CONV_DW = Kernel(
    name="conv_transpose_1d_dw", op="conv_transpose_1d",
    summary="depthwise kernel: lanes own channels, taps in registers, inputs as vec4",
    push=("G", "K", "s", "d", "pad", "lw", "tw", "xoff", "ldx", "has_bias", "jlo", "JB", "NJB", "gd", "P", "Dp",
          "inv", "KP") + ACT_PUSH + GRID,
    signed=("pad", "jlo"), floats=ACT_FLOATS, spec=("wg", "s", "ks", "p", "ov", "edge_select"),
    defaults={"cpu": (8, 2, 12, 16, 2, 0), "gpu": (64, 2, 12, 16, 2, 0)},
    bindings=(("x", "(nb, G, ldx)"), ("w", "(G, KP)"), ("bias", "(G,) or (1,) unused"), ("out", "(nb, G, tw)")),
    setup=dw_setup, work=dw_work, choose=dw_choose, safe=dw_safe, x_layout=dw_x_layout, pack_weights=dw_weights,
    w_floats=lambda loc, spec: loc.G * round_up(loc.K, 4), invocations=lambda spec: spec.wg,
    search=(dict(p=8),),
    # S (0: the generic path), KS and OV are set per piece by dw_choose; P: inputs per block read
    # as vec4 (a multiple of 4), at most 16 (the fast path unrolls S*P*ceil(KS/S) <= 64*P products);
    # OV: an output vector width dividing a block's S*P outputs.
    ranges=dict(wg=(1, 1024), s=(0, 16), ks=(1, DW_MAX_FAST_TAPS), p=(4, 16), ov=(1, 4), edge_select=(0, 1)),
    constraint=("p % 4 == 0", "ov in (1, 2, 4)", "s == 0 or s * p % ov == 0"))


# ------------------------------------------------------------------------------- matmul_sg
def matmul_sg_setup(loc, spec):
    wg, tm, tn = spec[:3]
    _, fields = matmul_setup(loc, (1, 1, 1, 1))
    return (cdiv(loc.N, wg * tn), cdiv(loc.M, tm), loc.batch), fields


def matmul_sg_work(loc, spec, grid):
    wg, tm, tn = spec[:3]
    tiles = float(grid[0]) * grid[1] * grid[2]
    return {"mac": tiles * wg * tm * tn * loc.K, "out": tiles * wg * tm * tn}


MATMUL_SG = Kernel(
    name="matmul_sg", op="matmul",
    summary="llvmpipe matmul: A values shared by shuffle, a TM x TN tile per lane, vec4 loads",
    push=MATMUL_PUSH, floats=("in_slope",), spec=("wg", "tm", "tn", "sg", "kk"),
    defaults={"cpu": (8, 64, 4, 8, 4), "gpu": (32, 64, 4, 32, 4)},
    bindings=MATMUL_BINDINGS, setup=matmul_sg_setup, work=matmul_sg_work, subgroup_ops=SHUFFLE,
    min_subgroup=lambda spec: spec.sg, invocations=lambda spec: spec.wg, align=4,
    search=(dict(tm=32),), f16=dict(align=4),
    # TN: vec4 column groups per lane (TN4 = TN/4: TN = 3 computes no column at all); SG: a power of
    # two, whole broadcast groups per subgroup (WG % SG) and per row tile (TM % SG); TM <= 64 (96
    # crashes lavapipe's compiler) and TM*TN <= 256 accumulators; KK: 4 (vec4 A loads) or 2 (vec2).
    ranges=dict(wg=(1, 1024), tm=(4, 64), tn=(4, 16), sg=(4, 128), kk=(2, 4)),
    constraint=("tn % 4 == 0", "sg & (sg - 1) == 0", "wg % sg == 0", "tm % sg == 0", "kk in (2, 4)",
                "tm * tn <= 256"))

