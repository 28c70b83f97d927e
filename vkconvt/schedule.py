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
from .fold import INT_LIMIT, Fold, trimmed, unrepresentable, window_bounds
from .kernels import Col2imLocal, ConvLocal, MatmulLocal, cdiv, round_up
from .params import FLOAT_BYTES

__all__ = ["Fold", "Limits", "schedule_conv", "split", "runs", "window_bounds", "x_layout"]
MIN_CHUNK = 256              # input positions per gemm chunk worth keeping before batch/channels split
MAX_WINDOWS = 1 << 20       # output windows worth listing; a problem needing more is refused
COUNTERS = {"schedule_conv": 0}   # complete conv schedules computed in this process (tests read it)


@dataclass(frozen=True)
class Limits:
    """What the device allows: bytes per storage buffer (maxStorageBufferRange), and what kernels
    it can run (kernels.Device: shared memory, invocations, subgroups, device class)."""
    max_buffer_bytes: int
    device: kernels.Device = kernels.Device()


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

    def local(self, p, fused=True):
        """The piece-local problem; the output activation only when the kernels write final
        outputs (`fused`), the input activation always (it applies to x as loaded)."""
        f, e = self.fold, p.epi
        return ConvLocal(self.n1 - self.n0, self.g1 - self.g0, self.ci1 - self.ci0, self.co1 - self.co0, f.lw,
                         self.t1 - self.t0, f.kw, f.s, f.d, f.pad, bool(p.bias and self.first),
                         e.act if fused else 0, e.slope if fused else 0.0, e.in_act, e.in_slope)


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
    safe: bool = False                    # specs exact for non-finite weights
    fused: bool = True                    # the kernels apply the output activation (else the host)
    out_half: bool = False                # the output comes back as float16 (to_float16 on the device)
    key: tuple = ()                       # what identifies it (the device's recording cache key)

    @property
    def workspace_bytes(self):
        return self.params.elem_bytes * self.col_floats

    def buffer_bytes(self):
        """{buffer: bytes} of one piece's device buffers (x, weights and columns in the storage type)."""
        eb = self.params.elem_bytes
        return {"x": eb * self.x_floats, "w": eb * self.w_floats, "col": eb * self.col_floats,
                "out": FLOAT_BYTES * self.out_floats, "out16": 2 * round_up(self.out_floats, 4) if self.out_half else 0}

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


def conv_geometry(p, algorithm, limits, budget, x_bound, align=1):
    """Piece sizes {nb, gc, cc, ic, tw}: every buffer fits the device, the gemm column buffer of
    one input position fits the budget, and every folded index fits 32 bits."""
    cap = limits.max_buffer_bytes
    col_budget = min(cap, budget)
    eb = p.elem_bytes                   # x, weights and columns (float16 storage: 2); the output is float32

    def bounds(sz):
        lw, kw, vmax = window_bounds(p.l_in, p.k, p.stride, p.dilation, sz["tw"])
        return lw, kw, vmax

    def over(sz):
        lw, kw, vmax = bounds(sz)
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
        lw, kw, vmax = bounds(sz)
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


def direct_dispatches(piece, p, choice, limits, safe, fused):
    """One dispatch of the first conv kernel of the choice that takes this piece."""
    loc = piece.local(p, fused)
    name, spec = kernels.pick("conv_transpose_1d", choice, loc, limits.device, safe)
    return [make_dispatch(name, loc, spec, limits)]


def matmul_align(choice):
    """Row alignment (floats) of the gemm operands: what the first matmul kernel of the choice needs
    (every later one, down to the portable kernel, reads any alignment)."""
    return kernels.KERNELS[choice["matmul"][0][0]].align


def gemm_dispatches(piece, p, choice, limits, lchunk, fused):
    """Column chunks of lchunk inputs: matmul into the column buffer, then col2im_1d, which adds
    to the outputs an earlier chunk already wrote (before `fresh`) and writes the others. Operand
    rows are padded to the matmul kernel's alignment: x rows ldx, weight rows lda, column rows ldc."""
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
                         c_batch_stride=m * ldc, b_offset=q0, in_act=loc.in_act, in_slope=loc.in_slope)
        name, spec = kernels.pick("matmul", choice, mm, limits.device)
        out.append(make_dispatch(name, mm, spec, limits))
        lo = q0 * loc.s - loc.pad
        hi = (q1 - 1) * loc.s + (loc.K - 1) * loc.d - loc.pad
        begin = max(0, min(lo, fresh))
        end = loc.tw if qi == len(chunks) - 1 else min(loc.tw, max(hi + 1, fresh))
        if end <= begin:
            continue
        c2i = Col2imLocal(loc.nb, loc.G * loc.cog, loc.K, lc, loc.s, loc.d, loc.pad - q0 * loc.s, loc.tw, begin,
                          end - begin, fresh, loc.has_bias, ldc, loc.act, loc.act_slope)
        name, spec = kernels.pick("col2im_1d", choice, c2i, limits.device)
        out.append(make_dispatch(name, c2i, spec, limits))
        fresh = max(fresh, end)
    return out


def x_layout(step, algorithm, choice):
    """(xoff, ldx) of a step's input rows in the x buffer."""
    d, f = step.dispatches[0], step.piece.fold
    if algorithm == "gemm":
        return 0, round_up(max(f.lw, 1), matmul_align(choice))
    return kernels.KERNELS[d.kernel].x_layout(d.local, d.spec)


def w_floats(step, algorithm, choice):
    d, loc = step.dispatches[0], step.dispatches[0].local
    if algorithm == "gemm":
        pc = step.piece
        return (pc.g1 - pc.g0) * (pc.co1 - pc.co0) * step.piece.fold.kw * d.local.lda
    return kernels.KERNELS[d.kernel].w_floats(loc, d.spec)


def schedule_conv(p, algorithm, limits, budget, choice, complete=True, safe=False):
    """The ConvSchedule of conv_transpose1d p with algorithm 'direct' or 'gemm'; complete=False
    gives its classes of pieces with their counts instead of every piece (see conv_pieces);
    safe=True: kernel specs exact for non-finite weights."""
    choice = kernels.for_storage(choice, p.storage)
    al = matmul_align(choice) if algorithm == "gemm" else 1
    try:
        g = conv_geometry(p, algorithm, limits, budget, lambda lw: round_up(lw, al), al)
    except VkconvtMemoryError:
        if al == 1:
            raise
        # the aligned matmul kernel's padded columns do not fit: the portable one needs no padding
        portable = dict(choice, matmul=tuple(c for c in choice["matmul"] if c[0] == kernels.fallback("matmul", p.storage)))
        return schedule_conv(p, algorithm, limits, budget, portable, complete, safe)
    sched = ConvSchedule(p, algorithm, limits, dict(choice), g, complete=complete, budget=budget, safe=safe)
    sched.key = (p, algorithm, limits, budget if algorithm == "gemm" else None, tuple(sorted(choice.items())), safe)
    pieces = conv_pieces(p, g, complete)
    live = [pc for pc, _ in pieces if not pc.empty]
    lw_max = max([pc.fold.lw for pc in live], default=1)
    kw_max = max([pc.fold.kw for pc in live], default=1)
    sched.out_floats = g["nb"] * g["gc"] * g["cc"] * g["tw"]
    if algorithm == "gemm":
        per_pos = g["nb"] * g["gc"] * g["cc"] * kw_max * p.elem_bytes
        room = min(limits.max_buffer_bytes, budget) // per_pos
        sched.lchunk = lw_max if room >= round_up(lw_max, al) else max(al, room // al * al)
        sched.col_floats = g["nb"] * g["gc"] * g["cc"] * kw_max * round_up(sched.lchunk, al)
    # The kernels apply the output activation when they write every output's final value: one
    # input-channel chunk, one column chunk, no window left to the host's bias fill.
    sched.fused = (g["ic"] >= p.cig and (algorithm == "direct" or sched.lchunk >= lw_max)
                   and len(live) == len(pieces))
    memo = {}         # pieces with the same local problem share their dispatches
    for pc, count in pieces:
        loc = pc.local(p, sched.fused)
        if not pc.empty and loc not in memo:
            memo[loc] = (direct_dispatches(pc, p, choice, limits, safe, sched.fused) if algorithm == "direct"
                         else gemm_dispatches(pc, p, choice, limits, sched.lchunk, sched.fused))
        step = Step(pc, [] if pc.empty else memo[loc], count)
        if not pc.empty:
            xoff, ldx = x_layout(step, algorithm, choice)
            sched.x_floats = max(sched.x_floats, (pc.n1 - pc.n0) * (pc.g1 - pc.g0) * (pc.ci1 - pc.ci0) * ldx)
            sched.w_floats = max(sched.w_floats, w_floats(step, algorithm, choice))
        sched.steps.append(step)
    if p.elem_bytes * max(sched.x_floats, sched.w_floats) > limits.max_buffer_bytes:
        # a kernel's zero margins or padded layout overflow a buffer cut to the limit: the
        # portable kernels need neither (pieces were cut for them)
        portable = {op: tuple(c for c in choice[op] if c[0] == kernels.fallback(op, p.storage)) for op in choice}
        if portable != dict(choice):
            return schedule_conv(p, algorithm, limits, budget, portable, complete, safe)
    half_out(sched, choice)
    if complete:
        COUNTERS["schedule_conv"] += 1
    return sched


def half_out(sched, choice):
    """A float16 call whose one piece leaves the final output on the device (activation included)
    rounds it there (to_float16): half the bytes come back, and the host copies, not converts."""
    p, steps = sched.params, sched.steps
    if not p.out_float16 or len(steps) != 1 or steps[0].piece.empty or (p.epi.act and not sched.fused):
        return
    loc = kernels.PackLocal(p.n * p.c_out * p.l_out)
    name, spec = kernels.pick("to_float16", choice, loc, sched.limits.device)
    steps[0].dispatches = steps[0].dispatches + [make_dispatch(name, loc, spec, sched.limits)]
    sched.out_half = True
