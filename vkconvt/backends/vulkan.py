"""The Vulkan backend: shaders/{matmul,col2im_1d,conv_transpose_1d}.comp dispatched through kp.

A call becomes a *plan*: the problem is cut into pieces whose buffers each fit the device's
maxStorageBufferRange (and, for the gemm column buffer, the workspace budget), every piece's grid
is cut into dispatches no larger than maxComputeWorkGroupCount, and each dispatch is recorded in
its own kp sequence (Kompute records no compute->compute barrier between two dispatches of one
sequence; sequences evaluated in order are correctly ordered). Plans are cached per device by
shape, so a repeated call only copies data in, evaluates pre-recorded sequences and copies out.
"""
import math
import os
from dataclasses import dataclass, field
import numpy as np

from .. import device as devmod
from ..errors import VkconvtMemoryError, WorkspaceTooSmall
from ..params import FLOAT_BYTES, output_length

name = "vulkan"

# Push-constant blocks: the same fields in the same order as in each shader's `Push` block.
PUSH = {
    "matmul": ("M", "N", "K", "lda", "ldb", "ldc", "a_batch_mod", "a_batch_stride", "b_batch_stride",
               "c_batch_stride", "b_offset", "base_x", "base_y", "base_z"),
    "col2im_1d": ("C", "K", "lc", "lbase", "stride", "padding", "dilation", "k_period", "tw", "t0",
                  "t_begin", "t_count", "fresh_from", "has_bias", "g0", "cocount", "cog", "co0",
                  "base_x", "base_y", "base_z"),
    "conv_transpose_1d": ("cig", "gcount", "K", "lw", "lb", "stride", "padding", "dilation", "k_period",
                          "tw", "t0", "jmin", "jblocks", "cblocks", "has_bias", "g0", "cocount", "cog",
                          "co0", "base_x", "base_y", "base_z"),
}

# Specialization constants per op (constant_id order) and their defaults per device type.
# llvmpipe pays for every buffer load per lane, so big register tiles win there; GPUs want small
# tiles and many invocations.
SPEC = {
    "matmul": ("wg_x", "wg_y", "tm", "tn"),
    "col2im_1d": ("wg",),
    "conv_transpose_1d": ("wg", "tc", "tt"),
}
DEFAULT_TUNING = {
    "cpu": {"matmul": (8, 1, 8, 8), "col2im_1d": (64,), "conv_transpose_1d": (8, 16, 8)},
    "gpu": {"matmul": (16, 16, 4, 4), "col2im_1d": (64,), "conv_transpose_1d": (64, 4, 4)},
}


def pack(op, **fields):
    """The push-constant array of `op`, fields in PUSH order; every field must be given."""
    names = PUSH[op]
    missing = set(names) - set(fields)
    extra = set(fields) - set(names)
    if missing or extra:
        raise KeyError(f"push constants of {op}: missing {sorted(missing)}, unknown {sorted(extra)}")
    vals = [int(fields[n]) for n in names]
    if any(v < 0 or v >= 1 << 32 for v in vals):
        raise OverflowError(f"push constant of {op} out of uint32 range: {dict(zip(names, vals))}")
    return np.asarray(vals, dtype=np.uint32)


def cdiv(a, b):
    return -(-a // b)


def batch_slice(arr, b0, b1):
    """Batches [b0, b1) of a batched operand; the single batch of a broadcast one."""
    return slice(b0, b1) if arr.shape[0] > 1 else slice(0, 1)


def split_grid(grid, limit):
    """Cut a grid of workgroups into parts no larger than `limit` per dimension: [(base, count)]."""
    parts = []
    for bz in range(0, grid[2], limit[2]):
        for by in range(0, grid[1], limit[1]):
            for bx in range(0, grid[0], limit[0]):
                parts.append(((bx, by, bz), (min(limit[0], grid[0] - bx), min(limit[1], grid[1] - by),
                                             min(limit[2], grid[2] - bz))))
    return parts


def unavailable_reason():
    """None when the Vulkan backend can start here, else why not."""
    try:
        import kp  # noqa: F401
    except ImportError as exc:
        return (f"the Kompute Python package 'kp' is not installed ({exc}); scripts/setup.sh builds "
                "kp==0.9.0 from its sdist")
    from .. import vkinfo
    try:
        devices = vkinfo.list_devices()
    except vkinfo.VulkanUnavailable as exc:
        return str(exc)
    if not devices:
        return "the Vulkan loader reports no device (Debian: apt-get install mesa-vulkan-drivers)"
    for op in devmod.OPS:
        if not os.path.exists(devmod.shader_path(op)):
            return f"SPIR-V module {devmod.shader_path(op)} is missing (run scripts/compile_shaders.py)"
    return None


# ---------------------------------------------------------------------------------------- plans
@dataclass
class Piece:
    """One part of a conv_transpose1d call: batch [n0, n1), groups [g0, g1) with channels
    [co0, co1) of each group, output positions [t0, t1), input positions [lb, lb + lw)."""
    n0: int
    n1: int
    g0: int
    g1: int
    co0: int
    co1: int
    t0: int
    t1: int
    lb: int
    lw: int
    seqs: list = field(default_factory=list)


@dataclass
class Plan:
    tensors: list
    algorithms: list
    pieces: list
    nbytes: int
    bound: tuple = ()               # tensors in the order the op uses them (the dummy included)
    workspace_bytes: int = 0        # the gemm column buffer (0 for direct)
    weight_token: object = None
    last_device_ns: float = 0.0
    algo_cache: dict = field(default_factory=dict)   # (op, tensors, grid, spec) -> kp algorithm
    seq_cache: dict = field(default_factory=dict)    # matmul: piece shape -> its sequences

    def destroy(self, dev):
        for seqs in [p.seqs for p in self.pieces] + list(self.seq_cache.values()):
            for s in seqs:
                s.destroy()
        for a in self.algorithms:
            a.destroy()
        dev.release(self.tensors)


MIN_CHUNK = 256   # input positions per gemm chunk worth keeping before batch/channels are split


def _fits_conv(p, nb, gc, cc, tw, cap, algorithm, col_cap):
    lw = _input_span(p, tw)
    x = nb * gc * p.cig * lw * FLOAT_BYTES
    w = gc * p.cig * cc * p.k * FLOAT_BYTES
    o = nb * gc * cc * tw * FLOAT_BYTES
    over = {"x": x > cap, "w": w > cap, "out": o > cap}
    if algorithm == "gemm":
        # The column buffer holds chunks of input positions: split batch, groups and channels
        # first, so that chunks stay long (few dispatches); go below MIN_CHUNK positions only
        # when nothing else is left to split.
        per_pos = nb * gc * cc * p.k * FLOAT_BYTES
        budget = min(cap, col_cap)
        over["col"] = per_pos > budget or (per_pos * min(lw, MIN_CHUNK) > budget and nb * gc * cc > 1)
    return over


def _input_span(p, tw):
    """How many input positions can reach a window of tw outputs (an upper bound)."""
    return min(p.l_in, (tw - 1 + (p.k - 1) * p.dilation) // p.stride + 2)


def conv_geometry(p, cap, algorithm, col_cap=None):
    """Piece sizes (nb, groups per piece, channels per piece, output window) so that every buffer
    fits `cap` bytes and, for gemm, one input position of the column buffer fits col_cap."""
    col_cap = cap if col_cap is None else col_cap
    nb, gc, cc, tw = p.n, p.groups, p.cog, p.l_out
    while True:
        over = _fits_conv(p, nb, gc, cc, tw, cap, algorithm, col_cap)
        if not any(over.values()):
            return nb, gc, cc, tw
        if over["w"] or over.get("col"):
            order = ("gc", "cc", "nb") if over["w"] else ("nb", "gc", "cc")
        elif over["x"]:
            order = ("nb", "gc", "tw")
        else:
            order = ("nb", "gc", "cc", "tw")
        for dim in order:
            val = {"nb": nb, "gc": gc, "cc": cc, "tw": tw}[dim]
            if val > 1:
                val = cdiv(val, 2)
                if dim == "nb":
                    nb = val
                elif dim == "gc":
                    gc = val
                elif dim == "cc":
                    cc = val
                else:
                    tw = val
                break
        else:
            if over.get("col") and not (over["x"] or over["w"] or over["out"]):
                need = p.k * FLOAT_BYTES
                raise WorkspaceTooSmall(
                    f"conv_transpose1d {p.tag()}: algorithm 'gemm' needs at least {need} bytes of workspace "
                    f"(one column of K={p.k} floats) but the budget is {col_cap} bytes", need, col_cap)
            raise VkconvtMemoryError(f"conv_transpose1d {p.tag()}: no split fits {cap} bytes per buffer "
                                     f"(over: {[k for k, v in over.items() if v]}); pieces are not split over "
                                     "input channels", budget_bytes=cap)


def conv_pieces(p, nb, gc, cc, tw):
    pieces = []
    for n0 in range(0, p.n, nb):
        for g0 in range(0, p.groups, gc):
            co_ranges = [(0, p.cog)] if cc == p.cog else [(c, min(p.cog, c + cc)) for c in range(0, p.cog, cc)]
            for co0, co1 in co_ranges:
                for t0 in range(0, p.l_out, tw):
                    t1 = min(p.l_out, t0 + tw)
                    lo = max(0, -(-(t0 + p.padding - (p.k - 1) * p.dilation) // p.stride))
                    hi = min(p.l_in, (t1 - 1 + p.padding) // p.stride + 1)
                    lb, lw = (lo, hi - lo) if hi > lo else (0, 0)
                    pieces.append(Piece(n0, min(p.n, n0 + nb), g0, min(p.groups, g0 + gc), co0, co1,
                                        t0, t1, lb, lw))
    return pieces


@dataclass
class Dispatch:
    """One logical dispatch: op, grid of workgroups (before splitting to device limits), push
    constant fields (without base_x/y/z) and specialization constants."""
    op: str
    grid: tuple
    fields: dict
    spec: tuple


@dataclass
class Schedule:
    """Everything a conv_transpose1d plan will do, computed without a device: buffer sizes, the
    pieces and, per piece, its dispatches in order. The Vulkan backend builds from it; the cost
    model counts work from it."""
    pieces: list
    dispatches: list
    x_floats: int
    w_floats: int
    out_floats: int
    col_floats: int = 0
    lchunk: int = 0


def direct_spec(tuning, cocount):
    """(wg, tc, tt) for a direct piece of `cocount` channels per group: no wider channel tile
    than the channels there are (a depthwise layer would otherwise waste 15/16 of its work)."""
    wg, tc, tt = (int(v) for v in tuning["conv_transpose_1d"])
    return wg, min(tc, 1 << max(0, (cocount - 1).bit_length())), tt


def schedule_conv(p, algorithm, cap, col_cap, tuning):
    nb, gc, cc, tw = conv_geometry(p, cap, algorithm, col_cap)
    pieces = conv_pieces(p, nb, gc, cc, tw)
    lw_max = max(max(pc.lw, 1) for pc in pieces)
    sched = Schedule(pieces, [], nb * gc * p.cig * lw_max, gc * p.cig * cc * p.k, nb * gc * cc * tw)
    if algorithm == "gemm":
        per_pos = nb * gc * cc * p.k * FLOAT_BYTES
        sched.lchunk = max(1, min(lw_max, min(cap, col_cap) // per_pos))
        sched.col_floats = nb * gc * cc * p.k * sched.lchunk
    common = dict(stride=p.stride, padding=p.padding, dilation=p.dilation,
                  k_period=p.stride // math.gcd(p.stride, p.dilation), has_bias=int(p.bias), cog=p.cog)
    mm_spec = tuple(int(v) for v in tuning["matmul"])
    c2i_spec = tuple(int(v) for v in tuning["col2im_1d"])
    for pc in pieces:
        nbp, gcount, ccp = pc.n1 - pc.n0, pc.g1 - pc.g0, pc.co1 - pc.co0
        tw_p = pc.t1 - pc.t0
        lw = max(pc.lw, 1)
        bias_fields = dict(g0=pc.g0, cocount=ccp, co0=pc.co0, **common)
        out = []
        if algorithm == "direct":
            spec = direct_spec(tuning, ccp)
            wg, tc, tt = spec
            jmin = (pc.t0 + p.padding) // p.stride
            jmax = (pc.t1 - 1 + p.padding) // p.stride
            jblocks = cdiv(jmax - jmin + 1, tt)
            cblocks = cdiv(ccp, tc)
            fields = dict(cig=p.cig, gcount=gcount, K=p.k, lw=lw, lb=pc.lb, tw=tw_p, t0=pc.t0,
                          jmin=jmin, jblocks=jblocks, cblocks=cblocks, **bias_fields)
            out.append(Dispatch("conv_transpose_1d", (cdiv(p.stride * jblocks, wg), gcount * cblocks, nbp),
                                fields, spec))
        else:
            # columns for input chunks [lb + q, lb + q + lchunk), then col2im in accumulate mode:
            # outputs before `fresh` already hold earlier chunks' sums and are added to.
            fresh = pc.t0
            chunks = list(range(0, lw, sched.lchunk))
            wx, wy, tm, tn = mm_spec
            for qi, q in enumerate(chunks):
                lc = min(sched.lchunk, lw - q)
                m = ccp * p.k
                mm_fields = dict(M=m, N=lc, K=p.cig, lda=p.cig, ldb=lw, ldc=lc, a_batch_mod=gcount,
                                 a_batch_stride=m * p.cig, b_batch_stride=p.cig * lw, c_batch_stride=m * lc,
                                 b_offset=q)
                out.append(Dispatch("matmul", (cdiv(lc, wx * tn), cdiv(m, wy * tm), nbp * gcount), mm_fields,
                                    mm_spec))
                a_l, b_l = pc.lb + q, pc.lb + q + lc
                touch_lo = a_l * p.stride - p.padding
                touch_hi = (b_l - 1) * p.stride - p.padding + (p.k - 1) * p.dilation
                t_begin = max(pc.t0, min(touch_lo, fresh))
                t_end = pc.t1 if qi == len(chunks) - 1 else min(pc.t1, max(touch_hi + 1, fresh))
                if t_end <= t_begin:
                    continue
                c_fields = dict(C=gcount * ccp, K=p.k, lc=lc, lbase=a_l, tw=tw_p, t0=pc.t0, t_begin=t_begin,
                                t_count=t_end - t_begin, fresh_from=fresh, **bias_fields)
                out.append(Dispatch("col2im_1d", (cdiv(t_end - t_begin, c2i_spec[0]), gcount * ccp, nbp),
                                    c_fields, c2i_spec))
                fresh = max(fresh, t_end)
        sched.dispatches.append(out)
    return sched


class VulkanBackend:
    name = name

    def __init__(self, dev):
        self.dev = dev
        self.tuning = dict(DEFAULT_TUNING["cpu" if dev.info.type == "cpu" else "gpu"])
        # Overridable for tests, so that splitting is exercised on small problems too.
        self.max_buffer_bytes = dev.info.max_storage_buffer_range
        self.max_groups = dev.info.max_workgroup_count
        self.collect_timestamps = False
        self.last_plan = None       # the device plan of the last call (buffers, pieces, device time)

    @property
    def device(self):
        return self.dev.info

    def describe(self):
        return self.dev.info.describe()

    # ------------------------------------------------------------------ helpers
    def _spec(self, op):
        return tuple(int(v) for v in self.tuning[op])

    def _dispatches(self, op, tensors, grid, fields, algos, cache, spec=None):
        """OpAlgoDispatch ops covering `grid`, split to maxComputeWorkGroupCount."""
        kp = self.dev.kp
        spec = self._spec(op) if spec is None else spec
        out = []
        for base, count in split_grid(grid, self.max_groups):
            key = (op, tuple(id(t) for t in tensors), count, spec)
            algo = cache.get(key)
            if algo is None:
                algo = cache[key] = self.dev.algorithm(tensors, op, count, spec,
                                                       pack(op, **fields, base_x=0, base_y=0, base_z=0))
                algos.append(algo)
            out.append(kp.OpAlgoDispatch(algo, pack(op, **fields, base_x=base[0], base_y=base[1],
                                                    base_z=base[2])))
        return out

    def _run(self, seqs):
        for s in seqs:
            s.eval()

    def _device_ns(self, seqs):
        if not self.dev.info.timestamps:
            return 0.0
        total = 0
        for s in seqs:
            ts = s.get_timestamps()
            if len(ts) >= 2:
                total += ts[-1] - ts[0]
        return total * self.dev.info.timestamp_period_ns

    @staticmethod
    def _write(t, arr):
        view = t.data()
        np.copyto(view[:arr.size].reshape(arr.shape), arr, casting="no")

    @staticmethod
    def _read(t, shape):
        size = int(np.prod(shape))
        return t.data()[:size].reshape(shape)

    def _seqs(self, groups_of_ops, ins, outs):
        """One sequence per dispatch. Device-local tensors get their staging copies: inputs before
        the first dispatch, outputs after the last (Kompute barriers transfer<->compute itself)."""
        kp = self.dev.kp
        seqs = []
        flat = [op for ops in groups_of_ops for op in ops]
        for i, op in enumerate(flat):
            ops = [op]
            if not self.dev.host_visible:
                if i == 0 and ins:
                    ops.insert(0, kp.OpTensorSyncDevice(ins))
                if i == len(flat) - 1 and outs:
                    ops.append(kp.OpTensorSyncLocal(outs))
            seqs.append(self.dev.sequence(ops, self.collect_timestamps))
        return seqs

    # ------------------------------------------------------------------ conv_transpose1d
    def conv_transpose1d(self, x, weight, bias, p, algorithm="direct", col_cap=None, weight_token=None,
                         wt=None):
        """x (N, C_in, L) float32 contiguous; algorithm 'direct' or 'gemm' (the planner resolves 'auto')."""
        if algorithm not in ("direct", "gemm"):
            raise ValueError(f"the Vulkan backend runs algorithm 'direct' or 'gemm', got {algorithm!r}")
        dev = self.dev
        cap = self.max_buffer_bytes
        col_cap = cap if col_cap is None else min(cap, col_cap)
        key = ("conv", algorithm, p, cap, col_cap, self.max_groups, tuple(sorted(self.tuning.items())),
               self.collect_timestamps)
        with dev.lock:
            plan = dev.cached_plan(key, lambda: self._build_conv(p, algorithm, cap, col_cap))
            xt, wtens, bt, ot = plan.bound[:4]
            if algorithm == "gemm" and wt is None:
                wt = p.gemm_weight(weight)
            single_w = len({(pc.g0, pc.g1, pc.co0, pc.co1) for pc in plan.pieces}) == 1
            if bias is not None and (weight_token is None or plan.weight_token != weight_token):
                self._write(bt, bias)
            out = np.empty((p.n, p.c_out, p.l_out), dtype=np.float32)
            device_ns = 0.0
            for pc in plan.pieces:
                nb, gcount, cc = pc.n1 - pc.n0, pc.g1 - pc.g0, pc.co1 - pc.co0
                xs = x[pc.n0:pc.n1, pc.g0 * p.cig:pc.g1 * p.cig, pc.lb:pc.lb + pc.lw]
                if pc.lw == 0:
                    xs = np.zeros((nb, gcount * p.cig, 1), dtype=np.float32)
                self._write(xt, xs)
                if not (single_w and weight_token is not None and plan.weight_token == weight_token):
                    if algorithm == "direct":
                        ws = weight[pc.g0 * p.cig:pc.g1 * p.cig, pc.co0:pc.co1, :]
                    else:
                        ws = wt[pc.g0:pc.g1, pc.co0:pc.co1].reshape(gcount, cc * p.k, p.cig)
                    self._write(wtens, ws)
                self._run(pc.seqs)
                if self.collect_timestamps:
                    device_ns += self._device_ns(pc.seqs)
                c_lo = pc.g0 * p.cog + pc.co0
                c_hi = (pc.g1 - 1) * p.cog + pc.co1
                out[pc.n0:pc.n1, c_lo:c_hi, pc.t0:pc.t1] = self._read(ot, (nb, c_hi - c_lo, pc.t1 - pc.t0))
            plan.weight_token = weight_token if single_w else None
            plan.last_device_ns = device_ns
            self.last_plan = plan
        return out

    def _build_conv(self, p, algorithm, cap, col_cap):
        dev = self.dev
        sched = schedule_conv(p, algorithm, cap, col_cap, self.tuning)
        own, algos, cache = [], [], {}

        def alloc(n, workspace=False):
            t = dev.tensor(n, workspace=workspace)
            own.append(t)
            return t

        try:
            xt = alloc(sched.x_floats)
            wt = alloc(sched.w_floats)
            bt = alloc(p.c_out) if p.bias else dev.dummy()
            ot = alloc(sched.out_floats)
            tensors = [xt, wt, bt, ot]
            if algorithm == "gemm":
                tensors.append(alloc(sched.col_floats, workspace=True))
            bindings = {"conv_transpose_1d": [xt, wt, bt, ot], "matmul": [wt, xt, tensors[-1]],
                        "col2im_1d": [tensors[-1], bt, ot]}
            for pc, dispatches in zip(sched.pieces, sched.dispatches):
                groups = [self._dispatches(d.op, bindings[d.op], d.grid, d.fields, algos, cache, d.spec)
                          for d in dispatches]
                pc.seqs = self._seqs(groups, [xt, wt, bt], [ot])
        except BaseException:
            for a in algos:
                a.destroy()
            dev.release(own)
            raise
        nbytes = sum(4 * t.size() for t in own)
        return Plan(own, algos, sched.pieces, nbytes, bound=tuple(tensors), workspace_bytes=4 * sched.col_floats)

    # ------------------------------------------------------------------ matmul
    def matmul(self, a, b):
        """a (Ba, M, K) or (M, K); b (Bb, K, N) or (K, N); float32 contiguous. Batches broadcast."""
        a3 = a if a.ndim == 3 else a[None]
        b3 = b if b.ndim == 3 else b[None]
        batch = max(a3.shape[0], b3.shape[0])
        m, kdim = a3.shape[1:]
        ncols = b3.shape[2]
        cap = self.max_buffer_bytes
        # rows of A/C per piece and columns of B/C per piece, so that every buffer fits
        rows, cols, bb = m, ncols, batch
        while True:
            sa = (bb if a3.shape[0] > 1 else 1) * rows * kdim * 4
            sb = (bb if b3.shape[0] > 1 else 1) * kdim * cols * 4
            sc = bb * rows * cols * 4
            if max(sa, sb, sc) <= cap:
                break
            if bb > 1:
                bb = cdiv(bb, 2)
            elif sa > cap and rows > 1 or sc > cap and rows >= cols and rows > 1:
                rows = cdiv(rows, 2)
            elif cols > 1:
                cols = cdiv(cols, 2)
            elif rows > 1:
                rows = cdiv(rows, 2)
            else:
                raise VkconvtMemoryError(f"matmul: one row of K={kdim} floats exceeds {cap} bytes", 4 * kdim, cap)
        out = np.empty((batch, m, ncols), dtype=np.float32)
        dev = self.dev
        key = ("matmul", a3.shape[0] > 1, b3.shape[0] > 1, bb, rows, kdim, cols, cap, self.max_groups,
               self._spec("matmul"), self.collect_timestamps)
        with dev.lock:
            plan = dev.cached_plan(key, lambda: self._build_matmul(a3.shape[0] > 1, b3.shape[0] > 1,
                                                                   bb, rows, kdim, cols))
            at, bt, ct = plan.bound
            wx, wy, tm, tn = self._spec("matmul")
            for b0 in range(0, batch, bb):
                b1 = min(batch, b0 + bb)
                for r0 in range(0, m, rows):
                    r1 = min(m, r0 + rows)
                    self._write(at, a3[batch_slice(a3, b0, b1), r0:r1])
                    for c0 in range(0, ncols, cols):
                        c1 = min(ncols, c0 + cols)
                        self._write(bt, b3[batch_slice(b3, b0, b1), :, c0:c1])
                        shape = (b1 - b0, r1 - r0, c1 - c0)
                        seqs = plan.seq_cache.get(shape)
                        if seqs is None:
                            mr, nc = r1 - r0, c1 - c0
                            fields = dict(M=mr, N=nc, K=kdim, lda=kdim, ldb=nc, ldc=nc,
                                          a_batch_mod=(b1 - b0) if a3.shape[0] > 1 else 1, a_batch_stride=mr * kdim,
                                          b_batch_stride=kdim * nc if b3.shape[0] > 1 else 0,
                                          c_batch_stride=mr * nc, b_offset=0)
                            grid = (cdiv(nc, wx * tn), cdiv(mr, wy * tm), b1 - b0)
                            ops = self._dispatches("matmul", [at, bt, ct], grid, fields, plan.algorithms,
                                                   plan.algo_cache)
                            seqs = plan.seq_cache[shape] = self._seqs([ops], [at, bt], [ct])
                        self._run(seqs)
                        out[b0:b1, r0:r1, c0:c1] = self._read(ct, shape)
            self.last_plan = plan
        return out if (a.ndim == 3 or b.ndim == 3) else out[0]

    def _build_matmul(self, a_batched, b_batched, bb, rows, kdim, cols):
        dev = self.dev
        at = dev.tensor((bb if a_batched else 1) * rows * kdim)
        bt = dev.tensor((bb if b_batched else 1) * kdim * cols)
        ct = dev.tensor(bb * rows * cols)
        return Plan([at, bt, ct], [], [], 4 * (at.size() + bt.size() + ct.size()), bound=(at, bt, ct))

    # ------------------------------------------------------------------ col2im_1d
    def col2im_1d(self, col, stride, padding, dilation, output_padding, bias):
        """col (N, C, K, L) -> (N, C, L_out): the shader alone, as a public op (batch/channel pieces)."""
        n, c, k, l_in = col.shape
        l_out = output_length(l_in, k, stride, padding, output_padding, dilation)
        cap = self.max_buffer_bytes
        nb, cc = n, c
        while max(nb * cc * k * l_in, nb * cc * l_out) * 4 > cap:
            if nb > 1:
                nb = cdiv(nb, 2)
            elif cc > 1:
                cc = cdiv(cc, 2)
            else:
                raise VkconvtMemoryError(f"col2im_1d: one channel's columns ({k}x{l_in} floats) exceed {cap} bytes",
                                         4 * k * l_in, cap)
        out = np.empty((n, c, l_out), dtype=np.float32)
        dev = self.dev
        key = ("col2im_1d", n, c, k, l_in, stride, padding, dilation, l_out, bias is not None, nb, cc, cap,
               self.max_groups, self._spec("col2im_1d"), self.collect_timestamps)

        def build():
            colt = dev.tensor(nb * cc * k * l_in)
            bt = dev.tensor(c) if bias is not None else dev.dummy()
            ot = dev.tensor(nb * cc * l_out)
            own = [colt, ot] + ([bt] if bias is not None else [])
            plan = Plan(own, [], [], 4 * sum(t.size() for t in own))
            plan.bound = (colt, bt, ot)
            for n0 in range(0, n, nb):
                for c0 in range(0, c, cc):
                    nbp, ccp = min(n, n0 + nb) - n0, min(c, c0 + cc) - c0
                    fields = dict(C=ccp, K=k, lc=l_in, lbase=0, stride=stride, padding=padding, dilation=dilation,
                                  k_period=stride // math.gcd(stride, dilation), tw=l_out, t0=0, t_begin=0,
                                  t_count=l_out, fresh_from=0, has_bias=int(bias is not None), g0=0,
                                  cocount=c, cog=0, co0=c0)
                    (wg,) = self._spec("col2im_1d")
                    ops = self._dispatches("col2im_1d", [colt, bt, ot], (cdiv(l_out, wg), ccp, nbp), fields,
                                           plan.algorithms, plan.algo_cache)
                    plan.pieces.append(Piece(n0, n0 + nbp, 0, 0, c0, c0 + ccp, 0, l_out, 0, l_in,
                                             self._seqs([ops], [colt, bt], [ot])))
            return plan

        with dev.lock:
            plan = dev.cached_plan(key, build)
            colt, bt, ot = plan.bound
            if bias is not None:
                self._write(bt, bias)
            for pc in plan.pieces:
                self._write(colt, col[pc.n0:pc.n1, pc.co0:pc.co1])
                self._run(pc.seqs)
                out[pc.n0:pc.n1, pc.co0:pc.co1] = self._read(ot, (pc.n1 - pc.n0, pc.co1 - pc.co0, l_out))
            self.last_plan = plan
        return out


def create(device=None):
    reason = unavailable_reason()
    if reason is not None:
        from . import BackendUnavailable
        raise BackendUnavailable(name, reason)
    return VulkanBackend(devmod.get_device(device))
