"""Recording and running schedules on a device: one command buffer, one submission, per step.

A schedule is recorded once per device, memory mode and owner (a `Recording`: pooled buffers bound
to pipelines, kept in the device's LRU). A step of it (a piece: most calls have exactly one) becomes
ONE kp sequence, recorded once per variant (which inputs need copying) and replayed:

    [global barrier: earlier transfers and dispatches -> this step's]
    [staged mode: copy each written input from its staging buffer]       (byte ranges in use only)
    [device arrays given as inputs: fill margins, copy their rows in]
    barrier (transfer -> compute), then each dispatch, a compute -> compute barrier between two
    barrier (compute -> transfer/host)
    [staged mode: copy each result to its staging buffer]; [device-array results: copy rows out]

and is submitted once, with one fence wait (none when the call does not wait: the submission stays
`in_flight` until someone needs its result or the device's buffers). Host-visible buffers (host mode:
CPU and integrated devices) are written and read in place before and after the submission.
Kompute 0.9.0 records no compute->compute barrier itself; the patched kp's OpGlobalBarrier is what
makes dependent dispatches in one command buffer correct (tests/test_vulkan_validation.py runs every
kernel variant in both memory modes under synchronization validation).
"""
import itertools
from dataclasses import dataclass, field

import numpy as np

from .. import settings
from ..errors import DeviceOutOfMemory

CPU_GROUPS = 64        # workgroups dispatched on a CPU device (llvmpipe spreads them over its threads)
# Vulkan access and stage flags (VkAccessFlagBits, VkPipelineStageFlagBits)
SHADER_READ, SHADER_WRITE, TRANSFER_READ, TRANSFER_WRITE, HOST_READ, HOST_WRITE = 0x20, 0x40, 0x800, 0x1000, 0x2000, 0x4000
COMPUTE, TRANSFER, HOST = 0x800, 0x1000, 0x4000
ALL_RW = SHADER_READ | SHADER_WRITE | TRANSFER_READ | TRANSFER_WRITE


@dataclass
class Recording:
    """A schedule recorded on a device: its buffers by role, each step's algorithms, and each step's
    sequences by variant."""
    sched: object
    mode: str
    tensors: dict
    views: dict = field(default_factory=dict)           # role -> host view of the mapped memory
    io: dict = field(default_factory=dict)              # step index -> bound transfers (execute.step_io)
    algos: dict = field(default_factory=dict)           # step index -> [(kp.Algorithm, push)]
    seqs: dict = field(default_factory=dict)            # (step index, variant) -> kp.Sequence
    tensor_ids: set = field(default_factory=set)
    algorithm_keys: set = field(default_factory=set)
    array_seqs: dict = field(default_factory=dict)      # sequence key -> ids of the device arrays' tensors it copies
    alive: bool = True

    def forget_tensor(self, tid):
        """Destroy the sequences that copy to or from a device array's buffer that is going away."""
        for key in [k for k, ids in self.array_seqs.items() if tid in ids]:
            self.array_seqs.pop(key)
            self.seqs.pop(key).destroy()

    def destroy(self):
        self.alive = False
        for s in self.seqs.values():
            s.destroy()
        self.seqs.clear()
        self.views.clear()
        self.io.clear()


def placement(buf, mode):
    """(placement, direction) of a schedule buffer in a memory mode (see device.py)."""
    if buf.kind == "work":
        return "device", None
    direction = "upload" if buf.kind == "in" else "download"
    return ("host" if mode == "host" else "staged"), direction


def groups_for(dev, grid):
    """Workgroups to dispatch for a logical grid: a power of two (few pipelines per kernel)."""
    info = dev.info
    cap = CPU_GROUPS if info.type == "cpu" else info.max_workgroup_count[0]
    total = max(1, grid[0] * grid[1] * grid[2])
    return min(1 << (min(total, cap) - 1).bit_length(), info.max_workgroup_count[0])


def owned_roles(sched):
    """The buffers a call's kept parameters go into (tagged uploads): a layer's own."""
    return {t.role for st in sched.steps for t in st.uploads if t.tag is not None}


def record(dev, sched, mode, owner, max_buffer_bytes):
    """Buffers and pipelines of a schedule (the sequences are recorded on first use, per variant)."""
    owned = owned_roles(sched) if owner is not None else set()
    # several workspace buffers share the budget: each exactly its size (no pool rounding)
    shared = sum(buf.workspace for buf in sched.buffers.values()) > 1
    tensors = {}
    for role, buf in sched.buffers.items():
        where, direction = placement(buf, mode)
        budget = sched.budget if buf.workspace else None
        cap = max_buffer_bytes if budget is None else min(max_buffer_bytes, budget)
        cap_words = buf.words if buf.workspace and shared else cap // 4
        tensors[role] = dev.buffer(role, buf.words, where, direction, workspace=buf.workspace, cap_words=cap_words,
                                   budget_bytes=budget, owner=owner if role in owned else None,
                                   keep=list(tensors.values()))
    rec = Recording(sched, mode, tensors)
    rec.tensor_ids = {id(t) for t in tensors.values()}
    memo = {}
    for i, st in enumerate(sched.steps):
        ds = id(st.dispatches)
        if ds not in memo:
            algos = []
            for d in st.dispatches:
                bound = [tensors[r] if r in tensors else dev.dummy() for r in d.binds]
                push = d.push()
                groups = groups_for(dev, d.grid)
                algos.append((dev.algorithm(d.kernel, bound, d.spec, push, groups), push))
                rec.algorithm_keys.add((d.kernel, tuple(d.spec), tuple(id(t) for t in bound), groups))
            memo[ds] = algos
        rec.algos[i] = memo[ds]
    return rec


def view(rec, role, dtype):
    """The host view of a buffer's mapped memory (host mode: the buffer; staged: its staging copy)."""
    v = rec.views.get(role)
    if v is None:
        v = rec.views[role] = rec.tensors[role].data()
    return v if dtype == "float32" else v.view(np.float16)


# ------------------------------------------------------------------ host side of transfers
class Bound:
    """A row transfer bound to a recording's buffer: the host-side slice and the buffer-side view
    (mapped memory), computed once; a call only copies."""
    __slots__ = ("t", "index", "dst", "zero", "margins", "tid")

    def __init__(self, rec, t):
        buf = view(rec, t.role, t.dtype)
        w = t.cols[1] - t.cols[0]
        rows = buf[:t.rows * t.ld].reshape(tuple(b - a for a, b in t.index) + (t.ld,))
        self.t = t
        self.index = tuple(slice(a, b) for a, b in t.index) + (slice(t.cols[0], t.cols[1]),)
        self.dst = rows[..., t.off:t.off + w]
        pad = t.zero and (t.off or w != t.ld)
        self.zero = (rows[..., :t.off], rows[..., t.off + w:]) if pad else ()
        self.margins = ("zero margins", t.ld, t.off, w, rows.shape, t.dtype) if pad else None
        self.tid = id(rec.tensors[t.role])


def write_rows(dev, bound, arr):
    """Write a row transfer's host rows into the buffer's mapped memory (margins zeroed unless the
    buffer already holds zeros there for this layout)."""
    np.copyto(bound.dst, arr[bound.index], casting="unsafe")
    if bound.margins is not None:
        if dev.tags.get(bound.tid) != bound.margins:
            for z in bound.zero:
                z[...] = 0
            dev.tags[bound.tid] = bound.margins
    elif bound.t.pack is None:
        dev.tags.pop(bound.tid, None)


def read_rows(bound, arr):
    dst = arr[bound.index]
    if bound.t.add:
        dst += bound.dst
    else:
        np.copyto(dst, bound.dst, casting="unsafe")


def step_io(rec, i, st):
    """The bound transfers of step i (cached in the recording)."""
    io = rec.io.get(i)
    if io is None:
        io = rec.io[i] = ([(t, None if t.pack is not None else Bound(rec, t)) for t in st.uploads],
                          [(t, Bound(rec, t)) for t in st.downloads])
    return io


def row_regions(t, arr):
    """[(array byte offset, buffer byte offset, bytes)] of a row transfer against a C-contiguous
    device array `arr` (one region when the rows are contiguous on both sides)."""
    eb = t.elem_bytes
    w = t.cols[1] - t.cols[0]
    strides = np.cumprod((arr.shape[1:] + (1,))[::-1])[::-1][:-1] if len(arr.shape) > 1 else ()
    strides = tuple(int(s) for s in strides) + (1,)
    lead = [range(a, b) for a, b in t.index]
    if t.off == 0 and w == t.ld and t.cols[0] == 0 and w == arr.shape[-1] and _contiguous(t, arr):
        start = sum(a * s for (a, _), s in zip(t.index, strides))
        return [(eb * start, 0, eb * t.rows * w)]
    out = []
    for r, idx in enumerate(itertools.product(*lead)):
        start = sum(i * s for i, s in zip(idx, strides)) + t.cols[0]
        out.append((eb * start, eb * (r * t.ld + t.off), eb * w))
    return out


def _contiguous(t, arr):
    """Whether the transfer's rows are one contiguous block of the array (all but the outermost
    sliced axis span their whole extent)."""
    for k, (a, b) in enumerate(t.index):
        if k > 0 and (a, b) != (0, arr.shape[k]):
            return False
    return True


# ------------------------------------------------------------------ sequences
def step_sequence(dev, rec, i, variant, arrays):
    """The recorded sequence of step i for `variant`: (staged uploads ((role, bytes), ...), device-array
    inputs ((role, array tensor id, bytes to zero, regions), ...), staged downloads, device-array
    outputs ((role, array tensor id, regions), ...)); `arrays`: the device arrays' tensors by id."""
    key = (i, variant)
    seq = rec.seqs.get(key)
    if seq is not None:
        return seq
    kp = dev.kp
    staged_up, arr_in, staged_down, arr_out = variant
    tensors = rec.tensors
    ops = [kp.OpGlobalBarrier(ALL_RW, ALL_RW, COMPUTE | TRANSFER, COMPUTE | TRANSFER)]
    for role, nbytes in staged_up:
        ops.append(kp.OpTensorSyncDevice([tensors[role]], 0, nbytes))
    fills = [(role, nbytes) for role, _, nbytes, _ in arr_in if nbytes]
    for role, nbytes in fills:
        ops.append(kp.OpFill(tensors[role], 0, nbytes, 0))
    if fills:
        ops.append(kp.OpGlobalBarrier(TRANSFER_WRITE, TRANSFER_WRITE, TRANSFER, TRANSFER))
    for role, aid, _, regions in arr_in:
        ops.append(kp.OpCopyRegions(arrays[aid], tensors[role], list(regions)))
    ops.append(kp.OpGlobalBarrier(TRANSFER_WRITE | HOST_WRITE, SHADER_READ | SHADER_WRITE, TRANSFER | HOST, COMPUTE))
    for j, (algo, push) in enumerate(rec.algos[i]):
        if j:
            ops.append(kp.OpGlobalBarrier(SHADER_WRITE, SHADER_READ | SHADER_WRITE, COMPUTE, COMPUTE))
        ops.append(kp.OpAlgoDispatch(algo, push))
    ops.append(kp.OpGlobalBarrier(SHADER_WRITE, TRANSFER_READ | HOST_READ, COMPUTE, TRANSFER | HOST))
    for role, nbytes in staged_down:
        ops.append(kp.OpTensorSyncLocal([tensors[role]], 0, nbytes))
    for role, aid, regions in arr_out:
        ops.append(kp.OpCopyRegions(tensors[role], arrays[aid], list(regions)))
    if arr_out:
        ops.append(kp.OpGlobalBarrier(TRANSFER_WRITE, ALL_RW | HOST_READ, TRANSFER, COMPUTE | TRANSFER | HOST))
    seq = rec.seqs[key] = dev.sequence(ops, timestamps=bool(settings.get("timestamps")))
    if arrays:
        rec.array_seqs[key] = set(arrays)
    return seq


# ------------------------------------------------------------------ submissions
class Submission:
    """One submitted step: wait() once (the fence), then its results are read (`then`)."""

    def __init__(self, dev, seq, then=None, hold=()):
        self.dev, self.seq, self.then, self.hold = dev, seq, then, hold
        self.done = False
        self.error = None

    def wait(self):
        if self.done:
            if self.error is not None:
                raise self.error
            return
        dev = self.dev
        try:
            self.seq.eval_await()
            dev.counters["fence_waits"] += 1
            if settings.get("timestamps"):
                _timestamps(dev, self.seq)
            if self.then is not None:
                self.then()
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.done = True
            self.hold = ()
            if dev.in_flight is self:
                dev.in_flight = None

    def ready(self):
        return self.done or bool(self.seq.is_done())


def finish_in_flight(dev):
    """Wait for the device's pending submission (and land its results) before its buffers are reused."""
    sub = dev.in_flight
    if sub is not None:
        sub.wait()


def submit(dev, seq, then=None, hold=()):
    """Submit a recorded sequence without waiting; the device's next use waits for it first."""
    sub = Submission(dev, seq, then, hold)
    seq.eval_async()
    dev.counters["submissions"] += 1
    dev.in_flight = sub
    return sub


def run(dev, sched, args, wait=True, max_buffer_bytes=None, mode=None):
    """Execute schedule `sched` with the call's `args` (host arrays and device arrays by name, "out"
    the result: a host array or a DeviceArray), one submission per step. Returns the last step's
    Submission when wait=False (its results land when it is waited for), else None."""
    from .arrays import DeviceArray
    mode = mode or dev.mode()
    owner = args.get("owner")
    ts = bool(settings.get("timestamps"))
    key = (id(sched), mode, owner, ts)
    with dev.lock:
        dev.check_open()
        if dev.in_flight is not None:
            finish_in_flight(dev)
        rec = dev.recordings.get(key)
        if rec is None or not rec.alive or rec.sched is not sched:
            before = set(dev.pool)
            try:
                rec = record(dev, sched, mode, owner, max_buffer_bytes or dev.info.max_storage_buffer_range)
            except BaseException:
                for k in [k for k in dev.pool if k not in before]:
                    dev.drop(k)
                raise
            dev.recordings.put(key, rec)
        counters = dev.counters
        steps = sched.steps
        last = len(steps) - 1
        while last >= 0 and not steps[last].dispatches:
            last -= 1
        for i, st in enumerate(steps):
            if not st.dispatches:
                st.host(args)
                continue
            ups, downs = step_io(rec, i, st)
            staged_up, arr_in, arrays = [], [], None
            for t, bound in ups:
                src = args[t.name]
                if bound is not None and type(src) is DeviceArray:
                    src.check(dev)
                    arrays = arrays or {}
                    arrays[id(src.tensor)] = src.tensor
                    pad = t.off or t.ld != t.cols[1] - t.cols[0]
                    arr_in.append((t.role, id(src.tensor), t.nbytes if pad else 0, tuple(row_regions(t, src))))
                    counters["copies"] += 1
                    continue
                if bound is None:                       # a kernel's own layout (weights), tagged when kept
                    tag = t.tag(args) if t.tag is not None else None
                    tid = id(rec.tensors[t.role])
                    if tag is not None and dev.tags.get(tid) == tag:
                        continue
                    t.pack(view(rec, t.role, t.dtype), args)
                    dev.tags[tid] = tag
                else:
                    write_rows(dev, bound, src)
                counters["bytes_up"] += t.nbytes
                if mode == "device":
                    staged_up.append((t.role, t.nbytes))
            staged_down, arr_out, reads = [], [], []
            for t, bound in downs:
                dst = args[t.name]
                if type(dst) is DeviceArray:
                    arrays = arrays or {}
                    arrays[id(dst.tensor)] = dst.tensor
                    arr_out.append((t.role, id(dst.tensor), tuple((b, a, n) for a, b, n in row_regions(t, dst))))
                    continue
                reads.append(bound)
                counters["bytes_down"] += t.nbytes
                if mode == "device":
                    staged_down.append((t.role, t.nbytes))
            variant = (tuple(staged_up), tuple(arr_in), tuple(staged_down), tuple(arr_out))
            seq = step_sequence(dev, rec, i, variant, arrays or {})
            counters["dispatches"] += len(st.dispatches)
            if i == last and not wait or arrays:
                then = (lambda rs=tuple(reads): [read_rows(b, args[b.t.name]) for b in rs]) if reads else None
                sub = submit(dev, seq, then, hold=(rec, tuple((arrays or {}).values())))
                for t, _ in downs:
                    if type(args[t.name]) is DeviceArray:
                        args[t.name].pending = sub
                if i == last and not wait:
                    return sub
                sub.wait()
                continue
            counters["submissions"] += 1
            seq.eval()                                  # submit, and wait for the fence (GIL released)
            counters["fence_waits"] += 1
            if ts:
                _timestamps(dev, seq)
            for b in reads:
                read_rows(b, args[b.t.name])
    return None


def _timestamps(dev, seq):
    if dev.info.timestamps:
        stamps = seq.get_timestamps()
        if len(stamps) >= 2:
            dev.device_ns += (stamps[-1] - stamps[0]) * dev.info.timestamp_period_ns


def release_cached(dev):
    """Out of device memory: free every cached buffer and recording (the caller retries smaller)."""
    dev.clear()


__all__ = ["run", "Recording", "Submission", "finish_in_flight", "release_cached", "DeviceOutOfMemory"]
