"""Device-free scheduling: how a problem is cut into pieces whose buffers fit the device, and the
dispatches of each piece, in order. No kp here: the Vulkan backend executes a schedule, the cost
model counts its work, `explain()` prints it.

One splitter (`split`) serves conv_transpose1d, matmul and col2im_1d: it halves the dimensions a
problem-specific rule names until every buffer fits. Halving is logarithmic in the sizes, and a
piece list is never larger than the buffers it fills, so no size (stride 2**63 included) makes
scheduling slow; a problem that no split makes fit raises at once.

Every conv piece is *folded* on the host (fold.py), so that every index a shader computes fits a
signed 32-bit int; a problem where even a single output cannot be folded that small is refused
with a ValueError.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from . import kernels
from .errors import VkconvtMemoryError, WorkspaceTooSmall
from .fold import INT_LIMIT, Fold, fold_window, trimmed, unrepresentable, window_bounds
from .kernels import Col2imLocal, ConvLocal, MatmulLocal, cdiv
from .params import FLOAT_BYTES

__all__ = ["Fold", "Limits", "schedule_conv", "schedule_matmul", "schedule_col2im", "split", "window_bounds"]
MIN_CHUNK = 256              # input positions per gemm chunk worth keeping before batch/channels split
MAX_WINDOWS = 1 << 20       # output windows worth listing; a problem needing more is refused
COUNTERS = {"schedule_conv": 0}   # complete conv schedules computed in this process (tests read it)


@dataclass(frozen=True)
class Limits:
    """What the device allows: bytes per storage buffer (maxStorageBufferRange)."""
    max_buffer_bytes: int


def split(sizes, over, fail):
    """The one splitter: halve the dimensions of `sizes` (a dict) in the order over(sizes) names,
    one at a time, until it names none; fail(sizes) raises when every named one is already 1."""
    sizes = dict(sizes)
    while True:
        order = over(sizes)
        if not order:
            return sizes
        for dim in order:
            if sizes[dim] > 1:
                sizes[dim] = cdiv(sizes[dim], 2)
                break
        else:
            fail(sizes)


def runs(total, size):
    """[(start, stop)] covering range(total) in steps of size."""
    return [(a, min(total, a + size)) for a in range(0, total, size)]


@dataclass(frozen=True)
class Dispatch:
    """One dispatch of a kernel: its logical grid of workgroups (the shaders walk it grid-stride,
    so any size fits one dispatch), push fields without grid_x/y/z, specialization constants,
    and the piece-local problem it solves."""
    kernel: str
    grid: Tuple[int, int, int]
    fields: dict
    spec: Tuple[int, ...]
    local: object

    def push(self):
        return kernels.pack(self.kernel, **self.fields, grid_x=self.grid[0], grid_y=self.grid[1], grid_z=self.grid[2])


def make_dispatch(name, local, spec, limits):
    grid, fields = kernels.KERNELS[name].setup(local, spec)
    return Dispatch(name, grid, fields, tuple(spec), local)


# ------------------------------------------------------------------------------------ conv_transpose1d
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

    def local(self, has_bias):
        f = self.fold
        return ConvLocal(self.n1 - self.n0, self.g1 - self.g0, self.ci1 - self.ci0, self.co1 - self.co0, f.lw,
                         self.t1 - self.t0, f.kw, f.s, f.d, f.pad, bool(has_bias and self.first))


@dataclass
class Step:
    """A piece and its dispatches in order; `count` pieces like it when the schedule lists classes."""
    piece: object
    dispatches: List[Dispatch]
    count: int = 1


@dataclass
class ConvSchedule:
    """Everything a conv_transpose1d call on the Vulkan backend will do, computed without a device."""
    params: object
    algorithm: str
    limits: Limits
    choice: Dict[str, tuple]              # op -> (kernel name, spec)
    geometry: Dict[str, int]              # nb, gc, cc, ic, tw per piece
    steps: List[Step] = field(default_factory=list)
    x_floats: int = 1
    w_floats: int = 1
    out_floats: int = 1
    col_floats: int = 0
    lchunk: int = 0
    complete: bool = True                 # every piece (False: classes of pieces with counts)
    budget: int = 0                       # the workspace budget it was cut for
    key: tuple = ()                       # what identifies it (the device's recording cache key)

    @property
    def workspace_bytes(self):
        return FLOAT_BYTES * self.col_floats

    @property
    def dispatch_count(self):
        return sum(len(st.dispatches) * st.count for st in self.steps)

    def summary(self):
        g = self.geometry
        p = self.params
        out = {"pieces": sum(st.count for st in self.steps), "batch/piece": g["nb"], "dispatches": self.dispatch_count,
               "kernels": "+".join(sorted({d.kernel for st in self.steps for d in st.dispatches})) or "-"}
        if g["ic"] < p.cig:
            out["input-channel chunks"] = cdiv(p.cig, g["ic"])
        if self.algorithm == "gemm":
            out["length chunk"] = self.lchunk
        return out


def conv_geometry(p, algorithm, limits, budget, x_layout):
    """Piece sizes {nb, gc, cc, ic, tw}: every buffer fits the device, the gemm column buffer of
    one input position fits the budget, and every folded index fits 32 bits."""
    cap = limits.max_buffer_bytes
    col_budget = min(cap, budget)

    def bounds(sz):
        lw, kw, vmax = window_bounds(p.l_in, p.k, p.stride, p.dilation, sz["tw"])
        return lw, kw, vmax

    def over(sz):
        lw, kw, vmax = bounds(sz)
        nb, gc, cc, ic, tw = sz["nb"], sz["gc"], sz["cc"], sz["ic"], sz["tw"]
        if vmax >= INT_LIMIT:
            return ["tw"]
        if gc * ic * cc * kw * FLOAT_BYTES > cap:
            return ["gc", "cc", "ic", "tw"]
        if algorithm == "gemm":
            per_pos = nb * gc * cc * kw * FLOAT_BYTES
            if per_pos > col_budget or (per_pos * min(lw, MIN_CHUNK) > col_budget and nb * gc * cc > 1):
                return ["nb", "gc", "cc", "tw"]
        if nb * gc * ic * x_layout(lw)[1] * FLOAT_BYTES > cap:
            return ["nb", "gc", "ic", "tw"]
        if nb * gc * cc * tw * FLOAT_BYTES > cap:
            return ["nb", "gc", "cc", "tw"]
        return None

    def fail(sz):
        lw, kw, vmax = bounds(sz)
        if vmax >= INT_LIMIT:
            unrepresentable(f"conv_transpose1d {p.tag()}", p.stride, p.dilation, p.padding)
        if algorithm == "gemm" and kw * FLOAT_BYTES > col_budget:
            need = kw * FLOAT_BYTES
            raise WorkspaceTooSmall(
                f"conv_transpose1d {p.tag()}: algorithm 'gemm' needs at least {need} bytes of workspace "
                f"(one column of K={kw} floats) but the budget is {col_budget} bytes", need, col_budget)
        raise VkconvtMemoryError(f"conv_transpose1d {p.tag()}: no split fits {cap} bytes per buffer "
                                 f"(one output channel's taps of one input channel: {kw * FLOAT_BYTES} bytes)",
                                 budget_bytes=cap)

    g = split(dict(nb=p.n, gc=p.groups, cc=p.cog, ic=p.cig, tw=p.l_out), over, fail)
    if cdiv(p.l_out, g["tw"]) > MAX_WINDOWS:
        unrepresentable(f"conv_transpose1d {p.tag()}", p.stride, p.dilation, p.padding)
    return g


def conv_pieces(p, g, complete=True):
    """[(piece, count)]. complete: every piece (count 1), input-channel chunks innermost (the
    backend adds chunks after the first). Otherwise one representative per class of pieces that
    share their sizes and window, with how many there are: what the cost model prices, without
    listing thousands of identical pieces."""
    windows = [w for t0, t1 in runs(p.l_out, g["tw"])
               for w in trimmed(p.l_in, p.k, p.stride, p.dilation, p.padding, t0, t1)]
    axis = runs if complete else run_classes
    pieces = []
    for (n0, n1), nn in _counted(axis(p.n, g["nb"]), complete):
        for (g0, g1), ng in _counted(axis(p.groups, g["gc"]), complete):
            for (co0, co1), nc in _counted(axis(p.cog, g["cc"]), complete):
                for t0, t1, fold in windows:
                    chunks = axis(p.cig, g["ic"] if fold.kw else p.cig)     # an empty window: one bias-only piece
                    for (ci0, ci1), ni in _counted(chunks, complete):
                        pieces.append((ConvPiece(n0, n1, g0, g1, co0, co1, ci0, ci1, t0, t1, fold), nn * ng * nc * ni))
    return pieces


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


def _counted(items, complete):
    return [(r, 1) for r in items] if complete else items


def direct_dispatches(piece, p, choice, limits):
    name, spec = choice["conv_transpose_1d"]
    loc = piece.local(p.bias)
    return [make_dispatch(name, loc, kernels.direct_spec(spec, loc), limits)]


def gemm_dispatches(piece, p, choice, limits, lchunk):
    """Column chunks of lchunk inputs: matmul into the column buffer, then col2im_1d, which adds
    to the outputs an earlier chunk already wrote (before `fresh`) and writes the others."""
    loc = piece.local(p.bias)
    mm_name, mm_spec = choice["matmul"]
    c2i_name, c2i_spec = choice["col2im_1d"]
    m = loc.cog * loc.K
    out, fresh = [], 0
    chunks = runs(loc.lw, lchunk)
    for qi, (q0, q1) in enumerate(chunks):
        lc = q1 - q0
        mm = MatmulLocal(batch=loc.nb * loc.G, M=m, N=lc, K=loc.cig, lda=loc.cig, ldb=loc.lw, ldc=lc,
                         a_batch_mod=loc.G, a_batch_stride=m * loc.cig, b_batch_stride=loc.cig * loc.lw,
                         c_batch_stride=m * lc, b_offset=q0)
        out.append(make_dispatch(mm_name, mm, mm_spec, limits))
        lo = q0 * loc.s - loc.pad
        hi = (q1 - 1) * loc.s + (loc.K - 1) * loc.d - loc.pad
        begin = max(0, min(lo, fresh))
        end = loc.tw if qi == len(chunks) - 1 else min(loc.tw, max(hi + 1, fresh))
        if end <= begin:
            continue
        c2i = Col2imLocal(loc.nb, loc.G * loc.cog, loc.K, lc, loc.s, loc.d, loc.pad - q0 * loc.s, loc.tw, begin,
                          end - begin, fresh, loc.has_bias)
        out.append(make_dispatch(c2i_name, c2i, c2i_spec, limits))
        fresh = max(fresh, end)
    return out


def schedule_conv(p, algorithm, limits, budget, choice, complete=True):
    """The ConvSchedule of conv_transpose1d p with algorithm 'direct' or 'gemm'; complete=False
    gives its classes of pieces with their counts instead of every piece (see conv_pieces)."""
    direct_kernel = kernels.KERNELS[choice["conv_transpose_1d"][0]]
    spec = choice["conv_transpose_1d"][1]
    x_layout = (lambda lw: direct_kernel.x_layout(lw, spec)) if algorithm == "direct" else (lambda lw: (0, lw))
    g = conv_geometry(p, algorithm, limits, budget, x_layout)
    sched = ConvSchedule(p, algorithm, limits, dict(choice), g, complete=complete, budget=budget)
    sched.key = (p, algorithm, limits, budget if algorithm == "gemm" else None, tuple(sorted(choice.items())))
    pieces = conv_pieces(p, g, complete)
    live = [pc for pc, _ in pieces if not pc.empty]
    lw_max = max([pc.fold.lw for pc in live], default=1)
    kw_max = max([pc.fold.kw for pc in live], default=1)
    sched.x_floats = g["nb"] * g["gc"] * g["ic"] * max(x_layout(lw_max)[1], 1)
    sched.w_floats = g["gc"] * g["ic"] * g["cc"] * kw_max
    sched.out_floats = g["nb"] * g["gc"] * g["cc"] * g["tw"]
    if algorithm == "gemm":
        per_pos = g["nb"] * g["gc"] * g["cc"] * kw_max * FLOAT_BYTES
        sched.lchunk = max(1, min(lw_max, min(limits.max_buffer_bytes, budget) // per_pos))
        sched.col_floats = g["nb"] * g["gc"] * g["cc"] * kw_max * sched.lchunk
    memo = {}         # pieces with the same local problem share their dispatches
    for pc, count in pieces:
        loc = pc.local(p.bias)
        if not pc.empty and loc not in memo:
            memo[loc] = (direct_dispatches(pc, p, choice, limits) if algorithm == "direct"
                         else gemm_dispatches(pc, p, choice, limits, sched.lchunk))
        sched.steps.append(Step(pc, [] if pc.empty else memo[loc], count))
    if complete:
        COUNTERS["schedule_conv"] += 1
    return sched


# ------------------------------------------------------------------------------------ matmul
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

    def sizes(sz):
        bb, rows, cols = sz["bb"], sz["rows"], sz["cols"]
        return ((bb if a_batch > 1 else 1) * rows * kdim * FLOAT_BYTES,
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
    name, spec = choice["matmul"]
    steps = []
    for b0, b1 in runs(batch, g["bb"]):
        for r0, r1 in runs(m, g["rows"]):
            for c0, c1 in runs(n, g["cols"]):
                mr, nc, nbp = r1 - r0, c1 - c0, b1 - b0
                loc = MatmulLocal(batch=nbp, M=mr, N=nc, K=kdim, lda=kdim, ldb=nc, ldc=nc,
                                  a_batch_mod=nbp if a_batch > 1 else 1, a_batch_stride=mr * kdim,
                                  b_batch_stride=kdim * nc if b_batch > 1 else 0, c_batch_stride=mr * nc,
                                  b_offset=0)
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
    name, spec = choice["col2im_1d"]
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
                loc = Col2imLocal(n1 - n0, c1 - c0, f.kw, f.lw, f.s, f.d, f.pad, t1 - t0, 0, t1 - t0, 0, has_bias)
                steps.append(Step(pc, [make_dispatch(name, loc, spec, limits)]))
    return OpSchedule("col2im_1d", steps, {"col": col_floats, "out": g["nb"] * g["cc"] * g["tw"]})
