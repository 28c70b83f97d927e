"""conv1d, declared: PyTorch's F.conv1d (and the grad_input of conv_transpose1d), its pieces and its
two algorithms' dispatches and transfers.

direct: one conv1d kernel per piece (the first of the choice that takes it). gemm: per piece, output
chunks that fit the workspace budget, each three dependent dispatches in the piece's one step:
im2col_1d (x -> the column buffer), matmul (weights . columns -> the matmul buffer), bias_act_1d
(bias and the fused activation, into the output). A piece is a batch range, group range,
output-channel range, input-channel chunk and output window, *folded* (fold.py:
fold_conv1d): its inputs and taps are the ones that meet its window, in window-local coordinates,
so every index a shader computes fits 32 bits. Input-channel chunks after the first add into the
output on the host. The problem's l_out is explicit: PyTorch's length, or fewer (the grad_input of
a transposed conv with output_padding) or more ('same' padding of an even kernel) outputs.
"""
from dataclasses import dataclass

import numpy as np

from .. import activations, kernels, reference
from ..activations import NONE, Epilogue
from ..errors import VkconvtMemoryError, WorkspaceTooSmall
from ..kernels import MatmulLocal, cdiv, round_up
from ..kernels.conv1d import BiasActLocal, Conv1dLocal, Im2colLocal
from ..fold import conv1d_windows
from ..params import FLOAT_BYTES, Grouped
from ..schedule import COUNTERS, Buffer, Schedule, Step, Transfer, make_dispatch, runs, split, split_room
from . import Op, register
from .grouped import GroupedIO
from .conv_transpose1d import (MAX_WINDOWS, MIN_CHUNK, ConvPiece, _bias_fill, _bias_upload, _portable,
                               matmul_align, run_classes)



@dataclass(frozen=True)
class Conv1dParams(Grouped):
    """Shape and hyper-parameters of one conv1d call (PyTorch semantics; l_out explicit)."""
    n: int
    c_in: int
    l_in: int
    c_out: int
    k: int
    l_out: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    bias: bool = False
    epi: Epilogue = NONE
    storage: str = "float32"
    out_float16: bool = False

    @property
    def flops(self):
        """2·N·C_out·(C_in/groups)·K·L_out: every tap of every output, as PyTorch counts them."""
        return 2 * self.n * self.c_out * self.cig * self.k * self.l_out

    def gemm_column_bytes(self, elem_bytes=None):
        """The gemm path's column buffer without a budget: C_in·K rows of L_out, per batch entry."""
        return self.n * self.c_in * self.k * self.l_out * (elem_bytes or self.elem_bytes)

    def out_bytes(self):
        return FLOAT_BYTES * self.n * self.c_out * self.l_out

    def tag(self):
        return (f"N{self.n}_Ci{self.c_in}_Co{self.c_out}_L{self.l_in}_K{self.k}_s{self.stride}_p{self.padding}"
                f"_d{self.dilation}_g{self.groups}_Lo{self.l_out}" + ("_b" if self.bias else "") + self.epi.tag()
                + {"float16": "_f16", "float64": "_f64"}.get(self.storage, ""))


@dataclass(frozen=True)
class Conv1dPiece(ConvPiece):
    """Batch [n0, n1), groups [g0, g1), output channels [co0, co1) and input channels [ci0, ci1) of
    each group, outputs [t0, t1), folded: conv_transpose1d's piece, with conv1d's local problem.
    Input-channel chunks after the first add to the output."""

    def local(self, p, fused=True):
        f, e = self.fold, p.epi
        return Conv1dLocal(self.n1 - self.n0, self.g1 - self.g0, self.ci1 - self.ci0, self.co1 - self.co0, f.lw,
                           self.t1 - self.t0, f.kw, f.s, f.d, f.pad, bool(p.bias and self.first),
                           act=e.act if fused else 0, act_slope=e.slope if fused else 0.0, in_act=e.in_act,
                           in_slope=e.in_slope)


def bounds(p, tw):
    """Upper bounds of (inputs, taps) that meet a window of tw outputs."""
    lw = min(p.l_in, (tw - 1) * p.stride + (p.k - 1) * p.dilation + 1)
    kw = min(p.k, ((tw - 1) * p.stride + p.l_in - 1) // p.dilation + 1)
    return lw, kw


def geometry(p, algorithm, limits, budget, align):
    """Piece sizes {nb, gc, cc, ic, tw}: every buffer fits the device, and on the gemm path the
    columns and matmul rows of one output position (MIN_CHUNK of them where the batch or channels
    can still be split) fit the budget."""
    cap, eb = limits.max_buffer_bytes, p.elem_bytes
    col_budget = min(cap, budget)

    def over(sz):
        nb, gc, cc, ic, tw = sz["nb"], sz["gc"], sz["cc"], sz["ic"], sz["tw"]
        lw, kw = bounds(p, tw)
        if gc * cc * round_up(ic * kw, align) * eb > cap:
            return ["gc", "cc", "ic", "tw"]
        if algorithm == "gemm":
            per_pos = nb * gc * (ic * kw + cc) * eb
            if per_pos * align > col_budget or (per_pos * min(tw, MIN_CHUNK) > col_budget and nb * gc * max(ic, cc) > 1):
                return ["nb", "gc", "ic", "cc"]
        if nb * gc * ic * lw * eb > cap:
            return ["nb", "gc", "ic", "tw"]
        if nb * gc * cc * tw * FLOAT_BYTES > cap:
            return ["nb", "gc", "cc", "tw"]
        return None

    def fail(sz):
        _, kw = bounds(p, sz["tw"])
        if algorithm == "gemm" and (kw + 1) * eb * align > col_budget:
            need = (kw + 1) * eb * align
            raise WorkspaceTooSmall(
                f"conv1d {p.tag()}: algorithm 'gemm' needs at least {need} bytes of workspace (one column of "
                f"K={kw} {p.storage} values and its product) but the budget is {col_budget} bytes", need, col_budget)
        raise VkconvtMemoryError(f"conv1d {p.tag()}: no split fits {cap} bytes per buffer (one output "
                                 f"channel's taps of one input channel: {kw * eb} bytes)", budget_bytes=cap)

    g = split(dict(nb=p.n, gc=p.groups, cc=p.cog, ic=p.cig, tw=p.l_out), over, fail)
    if cdiv(p.l_out, g["tw"]) > MAX_WINDOWS:
        raise ValueError(f"conv1d {p.tag()}: more than {MAX_WINDOWS} output windows; use backend='numpy'")
    return g


def pieces(p, g, complete=True):
    """[(piece, count)], input-channel chunks innermost; complete=False: one representative per
    class of pieces (what the cost model prices), as conv_transpose1d's."""
    windows = conv1d_windows(p.l_in, p.k, p.stride, p.dilation, p.padding, p.l_out, g["tw"])
    if len(windows) > MAX_WINDOWS:
        raise ValueError(f"conv1d {p.tag()}: more than {MAX_WINDOWS} output windows; use backend='numpy'")

    def axis(total, size):
        return [(r, 1) for r in runs(total, size)] if complete else run_classes(total, size)
    out = []
    for (n0, n1), nn in axis(p.n, g["nb"]):
        for (g0, g1), ng in axis(p.groups, g["gc"]):
            for (co0, co1), nc in axis(p.cog, g["cc"]):
                for t0, t1, fold in windows:
                    for (ci0, ci1), ni in axis(p.cig, g["ic"] if fold.kw else p.cig):
                        out.append((Conv1dPiece(n0, n1, g0, g1, co0, co1, ci0, ci1, t0, t1, fold), nn * ng * nc * ni))
    return out


def gemm_dispatches(loc, choice, limits, lchunk, splits=1):
    """Output chunks of lchunk: im2col_1d, matmul, bias_act_1d each (dependent, in order). splits:
    the split-K slices the matmul buffer may hold (bias_act_1d sums them)."""
    al = matmul_align(choice)
    kdim = loc.cig * loc.K
    lda, ldc = round_up(kdim, al), round_up(min(lchunk, loc.tw), al)
    out = []
    for c0, c1 in runs(loc.tw, lchunk):
        lc = c1 - c0
        im = Im2colLocal(loc.nb, loc.G, loc.cig, loc.K, loc.lw, lc, loc.s, loc.d, loc.pad - c0 * loc.s, ldc,
                         ldx=max(1, loc.lw))
        mm = MatmulLocal(batch=loc.nb * loc.G, M=loc.cog, N=lc, K=kdim, lda=lda, ldb=ldc, ldc=ldc, a_batch_mod=loc.G,
                         a_batch_stride=loc.cog * lda, b_batch_stride=kdim * ldc, c_batch_stride=loc.cog * ldc,
                         b_offset=0, in_act=loc.in_act, in_slope=loc.in_slope, max_splits=splits)
        dm = dispatch("matmul", choice, mm, limits, {"a": "w", "b": "col", "c": "mm"})
        ba = BiasActLocal(loc.nb, loc.G * loc.cog, lc, ldc, loc.tw, c0, loc.has_bias, loc.act, loc.act_slope,
                          kernels.KERNELS[dm.kernel].slices(dm.spec), mm.c_size)
        out += [dispatch("im2col_1d", choice, im, limits), dm, dispatch("bias_act_1d", choice, ba, limits, {"src": "mm"})]
    return out


def dispatch(op, choice, local, limits, binds=None):
    """The dispatch of the first kernel of choice[op] that takes `local` (binds: schedule.make_dispatch's)."""
    name, spec = kernels.pick(op, choice, local, limits.device)
    return make_dispatch(name, local, spec, binds)


def _weight_upload(pc, d, algorithm, p):
    """The piece's weights in the layout of the kernel that runs it (gemm: matmul rows of lda),
    tagged so that kept weights are written once."""
    f = pc.fold
    wkey = (pc.g0, pc.g1, pc.co0, pc.co1, pc.ci0, pc.ci1, f.kb, f.kw)

    def piece_w(args):
        w4 = args["weights"].weight.reshape(p.groups, p.cog, p.cig, p.k)
        return w4[pc.g0:pc.g1, pc.co0:pc.co1, pc.ci0:pc.ci1, f.kb:f.kb + f.kw]
    if algorithm == "gemm":
        lda = d.local.lda
        words = (pc.g1 - pc.g0) * (pc.co1 - pc.co0) * lda

        def pack(view, args):
            w = piece_w(args)
            rows = view[:words].reshape(w.shape[0], w.shape[1], lda)
            rows[..., :w.shape[2] * w.shape[3]] = w.reshape(w.shape[0], w.shape[1], -1)
            rows[..., w.shape[2] * w.shape[3]:] = 0
        ident = ("gemm", lda, wkey)
    else:
        kern = kernels.KERNELS[d.kernel]
        words = kern.w_floats(d.local, d.spec)

        def pack(view, args):
            kern.pack_weights(view, piece_w(args), d.local, d.spec)
        ident = (d.kernel, d.spec, wkey)

    def tag(args):
        token = args["weights"].token
        return None if token is None else (token, "conv1d") + ident
    return Transfer("w", "weights", dtype=p.storage, pack=pack, tag=tag, words=-(-words * p.elem_bytes // 4)), words


class Conv1dOp(GroupedIO, Op):
    def schedule(self, p, algorithm, limits, budget, choice, complete=True, safe=False):
        choice = kernels.for_storage(choice, p.storage)
        al = matmul_align(choice) if algorithm == "gemm" else 1
        try:
            g = geometry(p, algorithm, limits, budget, al)
        except VkconvtMemoryError:
            if al == 1:
                raise
            return self.schedule(p, algorithm, limits, budget, _portable(choice, ("matmul",), p.storage), complete,
                                 safe)
        sched = Schedule(self.name, p, algorithm, limits, dict(choice), complete=complete, budget=budget, safe=safe)
        sched.key = (self.name, p, algorithm, limits, budget if algorithm == "gemm" else None,
                     tuple(sorted(choice.items())))
        listed = pieces(p, g, complete)
        live = [pc for pc, _ in listed if not pc.empty]
        fused = g["ic"] >= p.cig and len(live) == len(listed)
        tw_max = max([pc.t1 - pc.t0 for pc in live], default=1)
        lchunk, eb, splits = tw_max, p.elem_bytes, 1
        if algorithm == "gemm":
            kw_max = max([pc.fold.kw for pc in live], default=1)
            per_pos = g["nb"] * g["gc"] * (g["ic"] * kw_max + g["cc"]) * eb
            room = min(limits.max_buffer_bytes, budget) // per_pos
            lchunk = tw_max if room >= round_up(tw_max, al) else max(al, room // al * al)
            sched.notes["length chunk"] = lchunk
            # split-K: as many matmul buffers as the budget beside the column buffer holds
            ld = round_up(lchunk, al) * eb
            splits = split_room(limits, budget, g["nb"] * g["gc"] * g["cc"] * ld,
                                g["nb"] * g["gc"] * g["ic"] * kw_max * ld)
        if g["ic"] < p.cig:
            sched.notes["input-channel chunks"] = cdiv(p.cig, g["ic"])
        sched.info.update(geometry=g, fused=fused)
        half = p.out_float16 and len(listed) == 1 and listed[0][1] == 1 and bool(live) and (fused or not p.epi.act)
        if half:
            sched.info["out_half"] = True
        memo, words = {}, dict(x=1, w=1, col=1, mm=1)
        for pc, count in listed:
            if pc.empty:
                sched.steps.append(Step(pc, [], count, host=_bias_fill(pc, p)))
                continue
            loc = pc.local(p, fused)
            if loc not in memo:
                memo[loc] = (gemm_dispatches(loc, choice, limits, lchunk, splits) if algorithm == "gemm"
                             else [dispatch("conv1d", choice, loc, limits)])
            ds = memo[loc]
            f, nb, gc = pc.fold, pc.n1 - pc.n0, pc.g1 - pc.g0
            xoff, ldx = kernels.KERNELS[ds[0].kernel].x_layout(loc, ds[0].spec) if algorithm == "direct" else (0, f.lw)
            wt, w_words = _weight_upload(pc, ds[1] if algorithm == "gemm" else ds[0], algorithm, p)
            words["x"] = max(words["x"], nb * gc * (pc.ci1 - pc.ci0) * ldx)
            words["w"] = max(words["w"], w_words)
            if algorithm == "gemm":
                mm = ds[1].local
                words["col"] = max(words["col"], mm.batch * mm.K * mm.ldb)
                words["mm"] = max(words["mm"], ds[2].local.slices * mm.batch * mm.M * mm.ldc)
            if half:
                loc16 = kernels.PackLocal(p.n * p.c_out * p.l_out)
                ds = ds + [dispatch("to_float16", choice, loc16, limits, {"src": "out", "dst": "out16"})]
            step = Step(pc, ds, count)
            ups = [Transfer("x", "x", ((pc.n0, pc.n1), (pc.g0, pc.g1), (pc.ci0, pc.ci1)), (f.lb, f.lb + f.lw), ldx,
                            xoff, p.storage, zero=True), wt]
            if (p.bias or p.epi.per_channel) and pc.first:
                ups.append(_bias_upload(pc, p))
            step.uploads = tuple(ups)
            step.downloads = (Transfer("out16" if half else "out", "out", ((pc.n0, pc.n1), (pc.g0, pc.g1),
                                                                         (pc.co0, pc.co1)), (pc.t0, pc.t1),
                                       pc.t1 - pc.t0, 0, "float16" if half else "float32", add=not pc.first),)
            sched.steps.append(step)
        sched.note_split_k()
        self._buffers(sched, p, g, words, half, algorithm)
        if eb * max(words["x"], words["w"]) > limits.max_buffer_bytes:
            portable = _portable(choice, choice, p.storage)       # padded layouts overflow: the portable kernels
            if portable != dict(choice):
                return self.schedule(p, algorithm, limits, budget, portable, complete, safe)
        if complete:
            COUNTERS["schedules"] += 1
        return sched

    @staticmethod
    def _buffers(sched, p, g, words, half, algorithm):
        def stored(n):
            return -(-n * p.elem_bytes // 4)
        out_words = g["nb"] * g["gc"] * g["cc"] * g["tw"]
        sched.buffers = {"x": Buffer(stored(words["x"])), "w": Buffer(stored(words["w"])),
                         "out": Buffer(out_words, "work" if half else "out")}
        if p.bias or p.epi.per_channel:
            sched.buffers["bias"] = Buffer((3 if p.epi.per_channel else 1) * g["gc"] * g["cc"])
        if algorithm == "gemm":
            sched.buffers["col"] = Buffer(stored(words["col"]), "work", workspace=True)
            sched.buffers["mm"] = Buffer(stored(words["mm"]), "work", workspace=True)
        if half:
            sched.buffers["out16"] = Buffer(2 * cdiv(out_words, 4), "out")

    def workspace(self, p):
        return {"direct": 0, "gemm": p.gemm_column_bytes() + p.n * p.c_out * p.l_out * p.elem_bytes}

    def numpy_features(self, p):
        return {"np_calls": 1.0, "np_mac": float(p.flops) / 2, "np_taps": float(min(p.k, p.l_out)),
                "np_adds": float(p.n) * p.c_out * p.l_out * p.k}

    # ------------------------------------------------------------------ running (describe, out_array, bind, finish: GroupedIO)
    def reference(self, p, algorithm, args):
        x, w, b = args["x"], args["weights"].weight, args["weights"].bias
        if x.dtype == np.float16 or w.dtype == np.float16:
            x, w = x.astype(np.float32), w.astype(np.float32)   # the float16 values, computed in float32
        x = activations.apply_input(x, p.epi)
        fn = reference.conv1d_gemm if algorithm == "gemm" else reference.conv1d_direct
        out = fn(x, w, b, p.stride, p.padding, p.dilation, p.groups, l_out=p.l_out)
        return activations.apply(out, p.epi, args["weights"].act_params)


OP = register(Conv1dOp("conv1d", ("direct", "gemm"), ("conv1d", "im2col_1d", "matmul", "bias_act_1d", "to_float16")))
