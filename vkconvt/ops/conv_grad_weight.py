"""conv_grad_weight, declared: the weight gradient of conv_transpose1d,

    gw[g*cig + ci, co, k] = sum over n, l of x[n, g*cig + ci, l] * grad_out[n, g*cog + co, l*s - p + k*d]

(terms with grad_out positions in [0, L_out) only); conv1d's weight gradient is the same with x and
grad_out swapped. x is the transposed conv's input as its kernels saw it (an input activation
already applied), grad_out the gradient of its output.

Pieces: channel pieces (groups, rows ci, columns co of gw) outermost; inside each, data pieces (a
batch range and a window of x positions, folded: the grad_out window and taps it meets) that
accumulate into the piece's gw *on the device*, one step each; the last one downloads gw. Almost
every call is one channel piece and one data piece: one step, one submission.
direct: one conv1d_grad_weight kernel per data piece (batch and length summed inside), written by
the channel piece's first data piece (after a zero-fill dispatch when it misses taps) and added to
by the rest (the kernels' accumulate flag); no workspace.
gemm: per data piece, x-position chunks that fit the workspace budget: im2col_1d transposed of
grad_out (colT [n, g][l][co*K + k]), matmul C[n, g] = x[n, g] (cig x l) . colT, then col2im_1d adds
each batch entry's C into gw (its accumulate mode; the first writes). Chunks after the first
copy their x columns to a buffer of their own first (im2col_1d with K=1: the matmul's A has no
offset). All K taps are computed (the flat add needs gw's layout), so a problem whose full-K
indices do not fit 32 bits is left to direct.
"""
from dataclasses import dataclass

import numpy as np

from .. import kernels, reference
from ..errors import AlgorithmUnavailable, VkconvtMemoryError, WorkspaceTooSmall
from ..fold import INT_LIMIT, conv1d_windows
from ..kernels import Col2imLocal, MatmulLocal, round_up
from ..kernels.conv1d import GradWeightLocal, Im2colLocal
from ..params import FLOAT_BYTES, Grouped
from ..schedule import COUNTERS, Buffer, Schedule, Step, Transfer, make_dispatch, runs, split, split_room
from . import Op, register
from .conv_transpose1d import MAX_WINDOWS, MIN_CHUNK, matmul_align


@dataclass(frozen=True)
class GradWeightParams(Grouped):
    """x (n, c_in, l_in) and grad_out (n, c_out, l_out) of a conv_transpose1d -> gw (c_in, c_out/groups, k)."""
    n: int
    c_in: int
    l_in: int
    c_out: int
    l_out: int
    k: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    storage: str = "float32"

    @property
    def flops(self):
        return 2 * self.n * self.c_in * self.cog * self.k * self.l_in

    def out_bytes(self):
        return FLOAT_BYTES * self.c_in * self.cog * self.k

    def tag(self):
        return (f"N{self.n}_Ci{self.c_in}_Co{self.c_out}_L{self.l_in}_Lo{self.l_out}_K{self.k}_s{self.stride}"
                f"_p{self.padding}_d{self.dilation}_g{self.groups}"
                + {"float16": "_f16", "float64": "_f64"}.get(self.storage, ""))


@dataclass(frozen=True)
class ChannelPiece:
    g0: int
    g1: int
    ci0: int
    ci1: int
    co0: int
    co1: int


@dataclass(frozen=True)
class DataPiece:
    """Batch [n0, n1) and x positions [l0, l1) of a channel piece; fold: the grad_out window and
    taps they meet (fold.py: fold_conv1d with x positions as conv1d's outputs)."""
    ch: ChannelPiece
    n0: int
    n1: int
    l0: int
    l1: int
    fold: object


def _gemm_ld(p, cc, al):
    return round_up(cc * p.k, max(al, 2))


def geometry(p, algorithm, limits, budget, al):
    """Piece sizes {gc, ic, cc, nb, lx}: every buffer fits the device; gemm: gw's product rows and
    the columns of one x position (MIN_CHUNK of them while channels can be split) fit the budget."""
    cap, eb = limits.max_buffer_bytes, p.elem_bytes
    col_budget = min(cap, budget)
    xal = max(4, al)

    def over(sz):
        gc, ic, cc, nb, lx = sz["gc"], sz["ic"], sz["cc"], sz["nb"], sz["lx"]
        lg = min(p.l_out, (lx - 1) * p.stride + (p.k - 1) * p.dilation + 1)
        ldb = _gemm_ld(p, cc, al) if algorithm == "gemm" else cc * p.k
        if gc * ic * ldb * FLOAT_BYTES > cap:
            return ["gc", "ic", "cc"]
        if algorithm == "gemm":
            fixed, per_pos = nb * gc * ic * ldb * eb, nb * gc * (ldb + ic) * eb
            if fixed + per_pos * al > col_budget or (
                    fixed + per_pos * min(lx, MIN_CHUNK) > col_budget and nb * gc * max(ic, cc) > 1):
                return ["nb", "gc", "cc", "ic"]
        if nb * gc * ic * round_up(lx, xal) * eb > cap:
            return ["nb", "gc", "ic", "lx"]
        if nb * gc * cc * lg * eb > cap:
            return ["nb", "gc", "cc", "lx"]
        return None

    def fail(sz):
        if algorithm == "gemm":
            need = (_gemm_ld(p, 1, al) * (1 + al) + al) * eb
            if need > col_budget:
                raise WorkspaceTooSmall(f"conv_grad_weight {p.tag()}: algorithm 'gemm' needs at least {need} bytes "
                                        f"of workspace (K={p.k} taps of one channel) but the budget is {col_budget} "
                                        "bytes", need, col_budget)
        raise VkconvtMemoryError(f"conv_grad_weight {p.tag()}: no split fits {cap} bytes per buffer (K={p.k} "
                                 "taps of one channel pair)", budget_bytes=cap)

    return split(dict(gc=p.groups, ic=p.cig, cc=p.cog, nb=p.n, lx=p.l_in), over, fail)


def data_pieces(p, g, ch):
    """The live data pieces of a channel piece (windows no grad_out position reaches are left out)."""
    windows = conv1d_windows(p.l_out, p.k, p.stride, p.dilation, p.padding, p.l_in, g["lx"])
    if len(windows) > MAX_WINDOWS:
        raise ValueError(f"conv_grad_weight {p.tag()}: more than {MAX_WINDOWS} windows; use backend='numpy'")
    return [DataPiece(ch, n0, n1, l0, l1, f) for n0, n1 in runs(p.n, g["nb"]) for l0, l1, f in windows if f.kw]


def dispatch(op, choice, local, dev, binds=None):
    name, spec = kernels.pick(op, choice, local, dev)
    return make_dispatch(name, local, spec, binds)


def direct_dispatches(p, dp, choice, dev, first, ldx):
    ch, f = dp.ch, dp.fold
    gc, ic, cc = ch.g1 - ch.g0, ch.ci1 - ch.ci0, ch.co1 - ch.co0
    out = []
    if first and (f.kb, f.kw) != (0, p.k):          # this piece misses taps: gw starts from zeros
        zero = GradWeightLocal(1, gc, ic, cc, p.k, 0, 0, 1, 1, 0, p.k)
        out.append(dispatch("conv1d_grad_weight", {}, zero, dev))
    loc = GradWeightLocal(dp.n1 - dp.n0, gc, ic, cc, f.kw, dp.l1 - dp.l0, f.lw, f.s, f.d, f.pad, p.k, f.kb,
                          accumulate=bool(out) or not first, ldx=ldx, ldg=max(1, f.lw))
    return out + [dispatch("conv1d_grad_weight", choice, loc, dev)]


def gemm_dispatches(p, dp, choice, dev, first, last, lchunk, al, splits=1):
    """x-position chunks of one data piece: [x copy], im2col_1d transposed, matmul, one col2im_1d
    per batch entry adding its product into gw. gw's only product (one batch entry, one chunk, one
    data piece; float32: the matmul's C is gw's layout) is written by the matmul itself, unless the
    matmul splits its reduction (split-K, up to `splits` slices of the product buffer: col2im_1d
    sums them)."""
    ch, f = dp.ch, dp.fold
    nb, gc, ic, cc = dp.n1 - dp.n0, ch.g1 - ch.g0, ch.ci1 - ch.ci0, ch.co1 - ch.co0
    lx, ldb = dp.l1 - dp.l0, _gemm_ld(p, cc, al)
    pad0 = f.lb + p.padding - dp.l0 * p.stride            # grad_out index of (m, k) is m*s + k*d - pad0
    reach = (min(lchunk, lx) - 1) * p.stride + (p.k - 1) * p.dilation
    if reach >= INT_LIMIT or not -INT_LIMIT < pad0 < INT_LIMIT - lx * p.stride:
        raise AlgorithmUnavailable(f"conv_grad_weight {p.tag()}: algorithm 'gemm' computes every tap, whose indices "
                                   "would not fit 32 bits here; algorithm 'direct' folds them")
    chunks = runs(lx, lchunk)
    flat = gc * ic * ldb
    only = first and last and nb == 1 and len(chunks) == 1 and p.storage == "float32"
    out = []
    for q0, q1 in chunks:
        lc = q1 - q0
        a_role, lda = "x", round_up(lx, max(4, al))
        if len(chunks) > 1:
            a_role, lda = "xa", round_up(lchunk, al)
            cp = Im2colLocal(nb, gc, ic, 1, lx, lc, 1, 1, -q0, lda, ldx=round_up(lx, max(4, al)))
            out.append(dispatch("im2col_1d", choice, cp, dev, {"col": "xa"}))
        im = Im2colLocal(nb, gc, cc, p.k, f.lw, lc, p.stride, p.dilation, pad0 - q0 * p.stride, ldb, True,
                         ldx=max(1, f.lw))
        mm = MatmulLocal(batch=nb * gc, M=ic, N=cc * p.k, K=lc, lda=lda, ldb=ldb, ldc=ldb, a_batch_mod=nb * gc,
                         a_batch_stride=ic * lda, b_batch_stride=lc * ldb, c_batch_stride=ic * ldb, b_offset=0,
                         max_splits=splits)
        name, spec = kernels.pick("matmul", choice, mm, dev)
        slices = kernels.KERNELS[name].slices(spec)
        only = only and slices == 1
        out += [dispatch("im2col_1d", choice, im, dev, {"x": "go", "col": "colT"}),
                make_dispatch(name, mm, spec, {"a": a_role, "b": "colT", "c": "gw" if only else "cm"})]
        for n in range(0 if only else nb):
            write = first and q0 == 0 and n == 0
            add = Col2imLocal(1, 1, 1, nb * flat, 1, 1, n * flat, flat, 0, flat, 0 if write else flat, False, nb * flat,
                              slices=slices, slice_stride=mm.c_size)
            out.append(dispatch("col2im_1d", choice, add, dev, {"col": "cm", "out": "gw"}))
    return out


class ConvGradWeightOp(Op):
    def schedule(self, p, algorithm, limits, budget, choice, complete=True, safe=False):
        choice = kernels.for_storage(choice, p.storage)
        al = matmul_align(choice) if algorithm == "gemm" else 1
        g = geometry(p, algorithm, limits, budget, al)
        sched = Schedule(self.name, p, algorithm, limits, dict(choice), budget=budget)
        sched.key = (self.name, p, algorithm, limits, budget if algorithm == "gemm" else None,
                     tuple(sorted(choice.items())))
        eb, xal, dev = p.elem_bytes, max(4, al), limits.device
        lchunk, splits = g["lx"], 1
        if algorithm == "gemm":
            ldb = _gemm_ld(p, g["cc"], al)
            room = min(limits.max_buffer_bytes, budget) - g["nb"] * g["gc"] * g["ic"] * ldb * eb
            if room < g["nb"] * g["gc"] * ldb * round_up(g["lx"], al) * eb:      # chunks: x columns copied too
                lchunk = max(al, room // (g["nb"] * g["gc"] * (ldb + g["ic"]) * eb) // al * al)
            sched.notes["length chunk"] = lchunk
            # split-K: as many product buffers as the budget beside the transposed columns holds
            splits = split_room(limits, budget, g["nb"] * g["gc"] * g["ic"] * ldb * eb,
                                g["nb"] * g["gc"] * ldb * round_up(min(lchunk, g["lx"]), al) * eb)
        words = dict(x=1, go=1, gw=1, xa=0, colT=1, cm=0)
        for g0, g1 in runs(p.groups, g["gc"]):
            for ci0, ci1 in runs(p.cig, g["ic"]):
                for co0, co1 in runs(p.cog, g["cc"]):
                    ch = ChannelPiece(g0, g1, ci0, ci1, co0, co1)
                    dps = data_pieces(p, g, ch)
                    for i, dp in enumerate(dps):
                        sched.steps.append(self._step(p, dp, i == 0, i == len(dps) - 1, algorithm, choice, dev,
                                                      lchunk, al, xal, words, splits))
        if len(sched.steps) > 1:
            sched.notes["accumulating steps"] = len(sched.steps)
        sched.note_split_k()
        stored = lambda n: -(-n * eb // 4)  # noqa: E731
        sched.buffers = {"x": Buffer(stored(words["x"])), "go": Buffer(stored(words["go"])),
                         "gw": Buffer(words["gw"], "out")}
        if algorithm == "gemm":
            for role in ("xa", "colT", "cm"):
                if words[role]:
                    sched.buffers[role] = Buffer(stored(words[role]), "work", workspace=True)
        COUNTERS["schedules"] += 1
        return sched

    @staticmethod
    def _step(p, dp, first, last, algorithm, choice, dev, lchunk, al, xal, words, splits=1):
        ch, f = dp.ch, dp.fold
        nb, gc, ic, cc = dp.n1 - dp.n0, ch.g1 - ch.g0, ch.ci1 - ch.ci0, ch.co1 - ch.co0
        ldx = round_up(dp.l1 - dp.l0, xal)
        if algorithm == "gemm":
            ds = gemm_dispatches(p, dp, choice, dev, first, last, lchunk, al, splits)
            ldw = _gemm_ld(p, cc, al)
            for d in ds:
                if d.binds[-1] in ("xa", "colT", "cm"):
                    loc = d.local
                    n = (loc.nb * loc.G * (loc.tw if loc.transposed else loc.cpg * loc.K) * loc.ldcol
                         if isinstance(loc, Im2colLocal)
                         else kernels.KERNELS[d.kernel].slices(d.spec) * loc.batch * loc.M * loc.ldc)
                    words[d.binds[-1]] = max(words[d.binds[-1]], n)
        else:
            ds = direct_dispatches(p, dp, choice, dev, first, ldx)
            ldw = cc * p.k
        words["x"] = max(words["x"], nb * gc * ic * ldx)
        words["go"] = max(words["go"], nb * gc * cc * max(1, f.lw))
        words["gw"] = max(words["gw"], gc * ic * ldw)
        st = Step(dp, ds)
        st.uploads = (Transfer("x", "x", ((dp.n0, dp.n1), (ch.g0, ch.g1), (ch.ci0, ch.ci1)), (dp.l0, dp.l1), ldx, 0,
                               p.storage, zero=True),
                      Transfer("go", "grad_out", ((dp.n0, dp.n1), (ch.g0, ch.g1), (ch.co0, ch.co1)),
                               (f.lb, f.lb + f.lw), max(1, f.lw), 0, p.storage))
        if last:
            st.downloads = (Transfer("gw", "out", ((ch.g0, ch.g1), (ch.ci0, ch.ci1)), (ch.co0 * p.k, ch.co1 * p.k),
                                     ldw, 0, "float32"),)
        return st

    def workspace(self, p):
        ldb = round_up(p.cog * p.k, 4)
        return {"direct": 0, "gemm": p.elem_bytes * p.n * p.groups * (p.l_in * ldb + p.cig * ldb)}

    def numpy_features(self, p):
        return {"np_calls": 1.0, "np_mac": float(p.flops) / 2, "np_taps": float(min(p.k, p.l_in))}

    def describe(self, p):
        return (f"conv_grad_weight {p.tag()}  ->  grad_weight ({p.c_in}, {p.cog}, {p.k}), "
                f"{p.flops / 1e6:.1f} MFLOP")

    def out_array(self, p, sched=None):
        return np.zeros((p.c_in, p.cog, p.k), np.float64 if p.storage == "float64" else np.float32)

    def bind(self, p, args, out):
        return dict(args, x=args["x"].reshape(p.n, p.groups, p.cig, p.l_in),
                    grad_out=args["grad_out"].reshape(p.n, p.groups, p.cog, p.l_out),
                    out=out.reshape(p.groups, p.cig, p.cog * p.k))

    def reference(self, p, algorithm, args):
        x, go = args["x"], args["grad_out"]
        if x.dtype == np.float16:
            x, go = x.astype(np.float32), go.astype(np.float32)
        return reference.conv_transpose1d_grad_weight(x, go, p.k, p.stride, p.padding, p.dilation, p.groups)


OP = register(ConvGradWeightOp("conv_grad_weight", ("direct", "gemm"),
                               ("conv1d_grad_weight", "im2col_1d", "matmul", "col2im_1d")))
