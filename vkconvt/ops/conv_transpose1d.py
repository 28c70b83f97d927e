"""conv_transpose1d, declared: its pieces, its two algorithms' dispatches and transfers.

direct: one conv kernel per piece (the first of the choice that takes it). gemm: per piece, column
chunks of the input: matmul into the column buffer, then col2im_1d gathers it into the output.
A piece is a batch range, group range, output-channel range, input-channel chunk and output window,
*folded* (fold.py): its inputs and taps are the ones that reach its window, in window-local
coordinates, so every index a shader computes fits 32 bits. Input-channel chunks after the first
add into the output on the host.
"""
from dataclasses import dataclass

import numpy as np

from .. import activations, kernels, reference
from ..errors import VkconvtMemoryError, WorkspaceTooSmall
from ..fold import INT_LIMIT, Fold, trimmed, unrepresentable, window_bounds
from ..kernels import Col2imLocal, ConvLocal, MatmulLocal, cdiv, round_up
from ..params import FLOAT_BYTES, all_finite
from ..schedule import COUNTERS, Buffer, Schedule, Step, Transfer, make_dispatch, runs, split, split_room
from . import Op, register
from .grouped import GroupedIO

MIN_CHUNK = 256              # input positions per gemm chunk worth keeping before batch/channels split
MAX_WINDOWS = 1 << 20        # output windows worth listing; a problem needing more is refused


@dataclass(frozen=True)
class ConvPiece:
    """Batch [n0, n1), groups [g0, g1), channels [co0, co1) and input channels [ci0, ci1) of each
    group, output positions [t0, t1), folded (see Fold). Input-channel chunks after the first
    (ci0 > 0) add to the output; the first writes it, bias included."""
    n0: int
    n1: int
    g0: int
    g1: int
    co0: int
    co1: int
    ci0: int
    ci1: int
    t0: int
    t1: int
    fold: Fold

    @property
    def empty(self):
        return self.fold.kw == 0

    @property
    def first(self):
        return self.ci0 == 0

    def local(self, p, fused=True):
        """The piece-local problem; the output activation only when the kernels write final
        outputs (`fused`), the input activation always (it applies to x as loaded)."""
        f, e = self.fold, p.epi
        return ConvLocal(self.n1 - self.n0, self.g1 - self.g0, self.ci1 - self.ci0, self.co1 - self.co0, f.lw,
                         self.t1 - self.t0, f.kw, f.s, f.d, f.pad, bool(p.bias and self.first),
                         e.act if fused else 0, e.slope if fused else 0.0, e.in_act, e.in_slope)


def geometry(p, algorithm, limits, budget, x_bound, align=1):
    """Piece sizes {nb, gc, cc, ic, tw}: every buffer fits the device, the gemm column buffer of
    one input position fits the budget, and every folded index fits 32 bits."""
    cap = limits.max_buffer_bytes
    col_budget = min(cap, budget)
    eb = p.elem_bytes                   # x, weights and columns (float16 storage: 2); the output is float32

    def over(sz):
        lw, kw, vmax = window_bounds(p.l_in, p.k, p.stride, p.dilation, sz["tw"])
        nb, gc, cc, ic, tw = sz["nb"], sz["gc"], sz["cc"], sz["ic"], sz["tw"]
        if vmax >= INT_LIMIT:
            return ["tw"]
        if gc * ic * cc * kw * eb > cap:
            return ["gc", "cc", "ic", "tw"]
        if algorithm == "gemm":
            per_pos = nb * gc * cc * kw * eb
            if per_pos * align > col_budget or (per_pos * min(lw, MIN_CHUNK) > col_budget and nb * gc * cc > 1):
                return ["nb", "gc", "cc", "tw"]
        if nb * gc * ic * x_bound(lw) * eb > cap:
            return ["nb", "gc", "ic", "tw"]
        if nb * gc * cc * tw * FLOAT_BYTES > cap:
            return ["nb", "gc", "cc", "tw"]
        return None

    def fail(sz):
        lw, kw, vmax = window_bounds(p.l_in, p.k, p.stride, p.dilation, sz["tw"])
        if vmax >= INT_LIMIT:
            unrepresentable(f"conv_transpose1d {p.tag()}", p.stride, p.dilation, p.padding)
        if algorithm == "gemm" and kw * eb * align > col_budget:
            need = kw * eb * align
            raise WorkspaceTooSmall(
                f"conv_transpose1d {p.tag()}: algorithm 'gemm' needs at least {need} bytes of workspace "
                f"(one column of K={kw} {p.storage} values) but the budget is {col_budget} bytes", need, col_budget)
        raise VkconvtMemoryError(f"conv_transpose1d {p.tag()}: no split fits {cap} bytes per buffer "
                                 f"(one output channel's taps of one input channel: {kw * eb} bytes)",
                                 budget_bytes=cap)

    g = split(dict(nb=p.n, gc=p.groups, cc=p.cog, ic=p.cig, tw=p.l_out), over, fail)
    if cdiv(p.l_out, g["tw"]) > MAX_WINDOWS:
        unrepresentable(f"conv_transpose1d {p.tag()}", p.stride, p.dilation, p.padding)
    return g


def run_classes(total, size):
    """runs() as classes: [((start, stop) of the first run of each length, how many)]; the first
    run is its own class (the first input-channel chunk writes the output, later ones add)."""
    full, rest = divmod(total, size)
    out = [((0, min(size, total)), 1)]
    if full > 1:
        out.append(((size, 2 * size), full - 1))
    if rest and full:
        out.append(((full * size, total), 1))
    return out


def pieces(p, g, complete=True):
    """[(piece, count)]. complete: every piece (count 1), input-channel chunks innermost (the
    host adds chunks after the first). Otherwise one representative per class of pieces that
    share their sizes and window, with how many there are: what the cost model prices, without
    listing thousands of identical pieces."""
    windows = [w for t0, t1 in runs(p.l_out, g["tw"])
               for w in trimmed(p.l_in, p.k, p.stride, p.dilation, p.padding, t0, t1)]

    def axis(total, size):
        return [(r, 1) for r in runs(total, size)] if complete else run_classes(total, size)
    out = []
    for (n0, n1), nn in axis(p.n, g["nb"]):
        for (g0, g1), ng in axis(p.groups, g["gc"]):
            for (co0, co1), nc in axis(p.cog, g["cc"]):
                for t0, t1, fold in windows:
                    for (ci0, ci1), ni in axis(p.cig, g["ic"] if fold.kw else p.cig):   # empty: one bias piece
                        out.append((ConvPiece(n0, n1, g0, g1, co0, co1, ci0, ci1, t0, t1, fold), nn * ng * nc * ni))
    return out


def matmul_align(choice):
    """Row alignment (elements) of the gemm operands: what the first matmul kernel of the choice
    needs (every later one, down to the portable kernel, reads any alignment)."""
    return kernels.KERNELS[choice["matmul"][0][0]].align


def direct_dispatches(piece, p, choice, limits, safe, fused):
    """One dispatch of the first conv kernel of the choice that takes this piece."""
    loc = piece.local(p, fused)
    name, spec = kernels.pick("conv_transpose_1d", choice, loc, limits.device, safe)
    return [make_dispatch(name, loc, spec)]


def gemm_dispatches(piece, p, choice, limits, lchunk, fused, splits=1):
    """Column chunks of lchunk inputs: matmul into the column buffer, then col2im_1d, which adds
    to the outputs an earlier chunk already wrote (before `fresh`) and writes the others. Operand
    rows are padded to the matmul kernel's alignment: x rows ldx, weight rows lda, column rows ldc.
    splits: the split-K slices the column buffer may hold (the matmul kernel takes up to that many
    where its grid is short of filling the GPU; col2im_1d sums them)."""
    loc = piece.local(p, fused)
    al = matmul_align(choice)
    lda, ldx = round_up(loc.cig, al), round_up(loc.lw, al)
    m = loc.cog * loc.K
    out, fresh = [], 0
    chunks = runs(loc.lw, lchunk)
    for qi, (q0, q1) in enumerate(chunks):
        lc = q1 - q0
        ldc = round_up(lc, al)
        mm = MatmulLocal(batch=loc.nb * loc.G, M=m, N=lc, K=loc.cig, lda=lda, ldb=ldx, ldc=ldc,
                         a_batch_mod=loc.G, a_batch_stride=m * lda, b_batch_stride=loc.cig * ldx,
                         c_batch_stride=m * ldc, b_offset=q0, in_act=loc.in_act, in_slope=loc.in_slope,
                         max_splits=splits)
        name, spec = kernels.pick("matmul", choice, mm, limits.device)
        out.append(make_dispatch(name, mm, spec, {"a": "w", "b": "x", "c": "col"}))
        slices = kernels.KERNELS[name].slices(spec)
        lo = q0 * loc.s - loc.pad
        hi = (q1 - 1) * loc.s + (loc.K - 1) * loc.d - loc.pad
        begin = max(0, min(lo, fresh))
        end = loc.tw if qi == len(chunks) - 1 else min(loc.tw, max(hi + 1, fresh))
        if end <= begin:
            continue
        c2i = Col2imLocal(loc.nb, loc.G * loc.cog, loc.K, lc, loc.s, loc.d, loc.pad - q0 * loc.s, loc.tw, begin,
                          end - begin, fresh, loc.has_bias, ldc, loc.act, loc.act_slope, slices,
                          mm.c_size)
        name, spec = kernels.pick("col2im_1d", choice, c2i, limits.device)
        out.append(make_dispatch(name, c2i, spec))
        fresh = max(fresh, end)
    return out


def x_layout(dispatches, fold, algorithm, choice):
    """(xoff, ldx) of a step's input rows in the x buffer."""
    if algorithm == "gemm":
        return 0, round_up(max(fold.lw, 1), matmul_align(choice))
    d = dispatches[0]
    return kernels.KERNELS[d.kernel].x_layout(d.local, d.spec)


def w_words(dispatches, pc, algorithm):
    d = dispatches[0]
    if algorithm == "gemm":
        return (pc.g1 - pc.g0) * (pc.co1 - pc.co0) * pc.fold.kw * d.local.lda
    return kernels.KERNELS[d.kernel].w_floats(d.local, d.spec)


# ------------------------------------------------------------------------------------ transfers
def _weight_upload(pc, d, algorithm, p):
    """The weights of a piece in the layout of the kernel that runs it (packed on the host),
    tagged so that a layer's kept weights are written once."""
    f = pc.fold
    wkey = (pc.g0, pc.g1, pc.co0, pc.co1, pc.ci0, pc.ci1, f.kb, f.kw)
    words = w_words([d], pc, algorithm)
    if algorithm == "gemm":
        lda = d.local.lda

        def pack(view, args):
            wt = args["weights"].layout("gemm", p.gemm_weight)[pc.g0:pc.g1, pc.co0:pc.co1, f.kb:f.kb + f.kw,
                                                               pc.ci0:pc.ci1]
            rows = view[:wt.shape[0] * wt.shape[1] * wt.shape[2] * lda].reshape(wt.shape[:3] + (lda,))
            rows[..., :wt.shape[3]] = wt
            rows[..., wt.shape[3]:] = 0
        ident = ("gemm", lda, wkey)
    else:
        kern = kernels.KERNELS[d.kernel]

        def pack(view, args):
            w4 = args["weights"].weight.reshape(p.groups, p.cig, p.cog, p.k)
            kern.pack_weights(view, w4[pc.g0:pc.g1, pc.ci0:pc.ci1, pc.co0:pc.co1, f.kb:f.kb + f.kw], d.local, d.spec)
        ident = (d.kernel, d.spec, wkey)

    def tag(args):
        token = args["weights"].token
        return None if token is None else (token,) + ident
    return Transfer("w", "weights", dtype=p.storage, pack=pack, tag=tag, words=-(-words * p.elem_bytes // 4))


def _bias_upload(pc, p):
    """[bias | alpha | 1/(beta + eps)] rows of the piece's channels (per-channel activations)."""
    nparts = 3 if p.epi.per_channel else 1
    rows = (pc.g1 - pc.g0) * (pc.co1 - pc.co0)

    def pack(view, args):
        w = args["weights"]
        parts = [np.zeros(p.c_out, np.float32) if w.bias is None else w.bias]
        if p.epi.per_channel:
            parts += [w.act_params[0], w.act_params[1]]
        dst = view[:nparts * rows].reshape(nparts, pc.g1 - pc.g0, pc.co1 - pc.co0)
        for i, a in enumerate(parts):
            dst[i] = a.reshape(p.groups, p.cog)[pc.g0:pc.g1, pc.co0:pc.co1]

    def tag(args):
        token = args["weights"].token
        return None if token is None else (token, "bias", nparts, pc.g0, pc.g1, pc.co0, pc.co1)
    return Transfer("bias", "weights", pack=pack, tag=tag, words=nparts * rows)


def _transfers(sched, pc, dispatches):
    p, algorithm = sched.params, sched.algorithm
    f = pc.fold
    xoff, ldx = x_layout(dispatches, f, algorithm, sched.choice)
    ups = [Transfer("x", "x", ((pc.n0, pc.n1), (pc.g0, pc.g1), (pc.ci0, pc.ci1)), (f.lb, f.lb + f.lw), ldx, xoff,
                    p.storage, zero=True),
           _weight_upload(pc, dispatches[0], algorithm, p)]
    if (p.bias or p.epi.per_channel) and pc.first:
        ups.append(_bias_upload(pc, p))
    half = sched.info.get("out_half")
    down = Transfer("out16" if half else "out", "out", ((pc.n0, pc.n1), (pc.g0, pc.g1), (pc.co0, pc.co1)),
                    (pc.t0, pc.t1), pc.t1 - pc.t0, 0, "float16" if half else "float32", add=not pc.first)
    return tuple(ups), (down,)


def _bias_fill(pc, p):
    """A piece no input reaches: its outputs are the bias (zeros are already there)."""
    def fill(args):
        b = args["weights"].bias
        if b is not None:
            b2 = b.reshape(p.groups, p.cog)
            args["out"][pc.n0:pc.n1, pc.g0:pc.g1, pc.co0:pc.co1, pc.t0:pc.t1] = b2[pc.g0:pc.g1, pc.co0:pc.co1, None][None]
    return fill


class ConvTranspose1dOp(GroupedIO, Op):
    def schedule(self, p, algorithm, limits, budget, choice, complete=True, safe=False):
        choice = kernels.for_storage(choice, p.storage)
        al = matmul_align(choice) if algorithm == "gemm" else 1
        try:
            g = geometry(p, algorithm, limits, budget, lambda lw: round_up(lw, al), al)
        except VkconvtMemoryError:
            if al == 1:
                raise
            # the aligned matmul kernel's padded columns do not fit: the portable one needs no padding
            return self.schedule(p, algorithm, limits, budget, _portable(choice, ("matmul",), p.storage), complete,
                                 safe)
        sched = Schedule(self.name, p, algorithm, limits, dict(choice), complete=complete, budget=budget, safe=safe)
        sched.key = (self.name, p, algorithm, limits, budget if algorithm == "gemm" else None,
                     tuple(sorted(choice.items())), safe)
        listed = pieces(p, g, complete)
        live = [pc for pc, _ in listed if not pc.empty]
        lw_max = max([pc.fold.lw for pc in live], default=1)
        kw_max = max([pc.fold.kw for pc in live], default=1)
        lchunk, col, splits = 0, 0, 1
        if algorithm == "gemm":
            per_pos = g["nb"] * g["gc"] * g["cc"] * kw_max * p.elem_bytes
            room = min(limits.max_buffer_bytes, budget) // per_pos
            lchunk = lw_max if room >= round_up(lw_max, al) else max(al, room // al * al)
            col = g["nb"] * g["gc"] * g["cc"] * kw_max * round_up(lchunk, al)
            splits = split_room(limits, budget, 4 * -(-col * p.elem_bytes // 4))     # column buffers for split-K
        # The kernels apply the output activation when they write every output's final value: one
        # input-channel chunk, one column chunk, no window left to the host's bias fill.
        fused = g["ic"] >= p.cig and (algorithm == "direct" or lchunk >= lw_max) and len(live) == len(listed)
        sched.info.update(geometry=g, fused=fused)
        if algorithm == "gemm":
            sched.notes["length chunk"] = lchunk
        if g["ic"] < p.cig:
            sched.notes["input-channel chunks"] = cdiv(p.cig, g["ic"])
        half = p.out_float16 and len(listed) == 1 and listed[0][1] == 1 and bool(live) and (fused or not p.epi.act)
        if half:
            sched.info["out_half"] = True
        memo, x_words, w_max = {}, 1, 1     # pieces with the same local problem share their dispatches
        for pc, count in listed:
            if pc.empty:
                sched.steps.append(Step(pc, [], count, host=_bias_fill(pc, p)))
                continue
            loc = pc.local(p, fused)
            if loc not in memo:
                memo[loc] = (direct_dispatches(pc, p, choice, limits, safe, fused) if algorithm == "direct"
                             else gemm_dispatches(pc, p, choice, limits, lchunk, fused, splits))
            ds = memo[loc]
            _, ldx = x_layout(ds, pc.fold, algorithm, choice)
            x_words = max(x_words, (pc.n1 - pc.n0) * (pc.g1 - pc.g0) * (pc.ci1 - pc.ci0) * ldx)
            w_max = max(w_max, w_words(ds, pc, algorithm))
            if half:
                n = p.n * p.c_out * p.l_out
                loc16 = kernels.PackLocal(n)
                name, spec = kernels.pick("to_float16", choice, loc16, limits.device)
                ds = ds + [make_dispatch(name, loc16, spec, {"src": "out", "dst": "out16"})]
            step = Step(pc, ds, count)
            step.uploads, step.downloads = _transfers(sched, pc, ds)
            sched.steps.append(step)
        eb = p.elem_bytes

        def words(n_elems):
            return -(-n_elems * eb // 4)
        out_words = g["nb"] * g["gc"] * g["cc"] * g["tw"]
        sched.buffers = {"x": Buffer(words(x_words)), "w": Buffer(words(w_max)), "out": Buffer(out_words, "out")}
        if p.bias or p.epi.per_channel:
            sched.buffers["bias"] = Buffer((3 if p.epi.per_channel else 1) * g["gc"] * g["cc"])
        if algorithm == "gemm":
            slices = sched.note_split_k()      # the matmul writes that many column buffers, col2im_1d sums them
            sched.info["columns"] = FLOAT_BYTES * words(col)         # one column buffer: the least gemm needs
            sched.buffers["col"] = Buffer(slices * words(col), "work", workspace=True)
        if half:
            sched.buffers["out"] = Buffer(out_words, "work")
            sched.buffers["out16"] = Buffer(2 * cdiv(out_words, 4), "out")
        if eb * max(x_words, w_max) > limits.max_buffer_bytes:
            # a kernel's zero margins or padded layout overflow a buffer cut to the limit: the
            # portable kernels need neither (pieces were cut for them)
            portable = _portable(choice, choice, p.storage)
            if portable != dict(choice):
                return self.schedule(p, algorithm, limits, budget, portable, complete, safe)
        if complete:
            COUNTERS["schedules"] += 1
        return sched

    def workspace(self, p):
        return {"direct": 0, "gemm": p.gemm_column_bytes()}

    def numpy_features(self, p):
        return {"np_calls": 1.0, "np_mac": float(p.flops) / 2, "np_taps": float(min(p.k, p.l_in)),
                "np_adds": float(p.n) * p.c_out * p.l_in * p.k}

    # ------------------------------------------------------------------ running (describe, out_array, bind, finish: GroupedIO)
    def reference(self, p, algorithm, args):
        x, weights = args["x"], args["weights"]
        if x.dtype == np.float16 or weights.weight.dtype == np.float16:
            # float16 storage: the float16 values, computed in float32 (the caller rounds the result once)
            from ..params import Weights
            x = x.astype(np.float32)
            weights = Weights(weights.weight.astype(np.float32), weights.bias, act_params=weights.act_params)
        x = activations.apply_input(x, p.epi)
        out = (reference.conv_transpose1d_gemm(x, weights, p) if algorithm == "gemm"
               else reference.conv_transpose1d_direct(x, weights.weight, weights.bias, p))
        return activations.apply(out, p.epi, weights.act_params)

    # ------------------------------------------------------------------ non-finite weights
    @staticmethod
    def check_after(plan, weights):
        """Kernels that may multiply a weight by a zero margin are exact unless a weight is inf/NaN
        (0*inf). One-off weights larger than the output are not scanned: the result is (a product
        0*inf would show as a NaN), and only a non-finite result is computed again exactly."""
        return plan.needs_finite and weights.token is None and weights.weight.size > plan.params.out_bytes() // 4

    def exact_needed(self, plan, args):
        w = args["weights"]
        return plan.needs_finite and not self.check_after(plan, w) and not w.finite

    def recheck(self, plan, args, out):
        return self.check_after(plan, args["weights"]) and not all_finite(out)


def _portable(choice, ops, storage):
    """The choice with only the portable kernel left for `ops`."""
    return {op: (tuple(c for c in entries if c[0] == kernels.fallback(op, storage)) if op in ops else entries)
            for op, entries in choice.items()}


OP = register(ConvTranspose1dOp("conv_transpose1d", ("direct", "gemm"),
                                ("conv_transpose_1d", "matmul", "col2im_1d", "to_float16")))
