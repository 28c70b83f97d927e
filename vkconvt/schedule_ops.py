"""Schedules of the standalone ops matmul and col2im_1d: the same splitter (schedule.split), pieces
and dispatches as conv_transpose1d's, over batch, rows and columns (matmul) or batch, channels and
output windows (col2im_1d, folded like a conv piece)."""
from dataclasses import dataclass
from typing import Dict, List

from . import kernels
from .errors import VkconvtMemoryError
from .fold import INT_LIMIT, Fold, fold_window, unrepresentable, window_bounds
from .kernels import Col2imLocal, MatmulLocal, round_up
from .params import FLOAT_BYTES
from .schedule import MAX_WINDOWS, Step, cdiv, make_dispatch, matmul_align, runs, split


@dataclass(frozen=True)
class MatmulPiece:
    b0: int
    b1: int
    r0: int
    r1: int
    c0: int
    c1: int


@dataclass
class OpSchedule:
    """The schedule of a standalone matmul or col2im_1d call: buffer sizes and steps."""
    op: str
    steps: List[Step]
    floats: Dict[str, int]


def schedule_matmul(a_batch, b_batch, m, kdim, n, limits, choice):
    """C (batch, m, n) = A (a_batch, m, kdim) . B (b_batch, kdim, n); a batch of 1 broadcasts."""
    cap = limits.max_buffer_bytes
    batch = max(a_batch, b_batch)
    al = matmul_align(choice)
    lda = round_up(kdim, al)

    def sizes(sz):
        bb, rows, cols = sz["bb"], sz["rows"], round_up(sz["cols"], al)
        return ((bb if a_batch > 1 else 1) * rows * lda * FLOAT_BYTES,
                (bb if b_batch > 1 else 1) * kdim * cols * FLOAT_BYTES, bb * rows * cols * FLOAT_BYTES)

    def over(sz):
        sa, sb, sc = sizes(sz)
        if max(sa, sb, sc) <= cap:
            return None
        if sa > cap or (sc > cap and sz["rows"] >= sz["cols"]):
            return ["bb", "rows", "cols"]
        return ["bb", "cols", "rows"]

    def fail(sz):
        raise VkconvtMemoryError(f"matmul: one row of K={kdim} floats ({kdim * FLOAT_BYTES} bytes) exceeds the "
                                 f"device's {cap}-byte storage buffers", kdim * FLOAT_BYTES, cap)

    g = split(dict(bb=batch, rows=m, cols=n), over, fail)
    steps = []
    for b0, b1 in runs(batch, g["bb"]):
        for r0, r1 in runs(m, g["rows"]):
            for c0, c1 in runs(n, g["cols"]):
                mr, nc, nbp = r1 - r0, c1 - c0, b1 - b0
                ldb = round_up(nc, al)
                loc = MatmulLocal(batch=nbp, M=mr, N=nc, K=kdim, lda=lda, ldb=ldb, ldc=ldb,
                                  a_batch_mod=nbp if a_batch > 1 else 1, a_batch_stride=mr * lda,
                                  b_batch_stride=kdim * ldb if b_batch > 1 else 0, c_batch_stride=mr * ldb,
                                  b_offset=0)
                name, spec = kernels.pick("matmul", choice, loc, limits.device)
                steps.append(Step(MatmulPiece(b0, b1, r0, r1, c0, c1), [make_dispatch(name, loc, spec, limits)]))
    sa, sb, sc = (v // FLOAT_BYTES for v in sizes(g))
    return OpSchedule("matmul", steps, {"a": sa, "b": sb, "c": sc})


# ------------------------------------------------------------------------------------ col2im_1d
@dataclass(frozen=True)
class Col2imPiece:
    n0: int
    n1: int
    c0: int
    c1: int
    t0: int
    t1: int
    fold: Fold


def schedule_col2im(n, c, k, l_in, l_out, stride, padding, dilation, has_bias, limits, choice):
    """col (n, c, k, l_in) -> out (n, c, l_out), cut over batch, channels and output windows."""
    cap = limits.max_buffer_bytes

    def over(sz):
        lw, kw, vmax = window_bounds(l_in, k, stride, dilation, sz["tw"])
        if vmax >= INT_LIMIT:
            return ["tw"]
        if sz["nb"] * sz["cc"] * kw * lw * FLOAT_BYTES > cap:
            return ["nb", "cc", "tw"]
        if sz["nb"] * sz["cc"] * sz["tw"] * FLOAT_BYTES > cap:
            return ["nb", "cc", "tw"]
        return None

    def fail(sz):
        lw, kw, vmax = window_bounds(l_in, k, stride, dilation, sz["tw"])
        if vmax >= INT_LIMIT:
            unrepresentable("col2im_1d", stride, dilation, padding)
        raise VkconvtMemoryError(f"col2im_1d: the columns of one output position ({kw}x{lw} floats) exceed the "
                                 f"device's {cap}-byte storage buffers", kw * lw * FLOAT_BYTES, cap)

    g = split(dict(nb=n, cc=c, tw=l_out), over, fail)
    if cdiv(l_out, g["tw"]) > MAX_WINDOWS:
        unrepresentable("col2im_1d", stride, dilation, padding)
    steps, col_floats = [], 1
    windows = [(t0, t1, fold_window(l_in, k, stride, dilation, padding, t0, t1)) for t0, t1 in runs(l_out, g["tw"])]
    for n0, n1 in runs(n, g["nb"]):
        for c0, c1 in runs(c, g["cc"]):
            for t0, t1, f in windows:
                pc = Col2imPiece(n0, n1, c0, c1, t0, t1, f)
                if f.kw == 0:
                    steps.append(Step(pc, []))
                    continue
                col_floats = max(col_floats, (n1 - n0) * (c1 - c0) * f.kw * f.lw)
                loc = Col2imLocal(n1 - n0, c1 - c0, f.kw, f.lw, f.s, f.d, f.pad, t1 - t0, 0, t1 - t0, 0, has_bias,
                                  f.lw)
                name, spec = kernels.pick("col2im_1d", choice, loc, limits.device)
                steps.append(Step(pc, [make_dispatch(name, loc, spec, limits)]))
    return OpSchedule("col2im_1d", steps, {"col": col_floats, "out": g["nb"] * g["cc"] * g["tw"]})
