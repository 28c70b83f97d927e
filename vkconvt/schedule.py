"""Device-free scheduling, generic over ops: what one call will do, computed without a device.

A `Schedule` is an op's problem cut into pieces whose buffers fit the device, in `steps`; each step
holds its dispatches in order (kernel, logical grid, push fields, spec, and which buffers bind to
the kernel's bindings), the transfers that move its inputs in and its results out, and, for a piece
no input reaches, a host action instead of dispatches. `buffers` lists the device buffers by role
with their sizes and kinds. Op declarations (vkconvt/ops/) build schedules with the pieces here; the
cost model counts their work, `explain()` prints them, and a backend executes them as they are.

One splitter (`split`) serves every op: it halves the dimensions a problem-specific rule names until
every buffer fits. Halving is logarithmic in the sizes, and a piece list is never larger than the
buffers it fills, so no size (stride 2**63 included) makes scheduling slow; a problem that no split
makes fit raises at once.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from . import kernels
from .kernels import cdiv, round_up
from .params import FLOAT_BYTES

__all__ = ["Limits", "Buffer", "Transfer", "Dispatch", "Step", "Schedule", "split", "runs", "make_dispatch",
           "split_room", "cdiv", "round_up", "COUNTERS"]
COUNTERS = {"schedules": 0}   # complete schedules computed in this process (tests read it)


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


def split_room(limits, budget, one, used=0):
    """Split-K: how many copies of a matmul's output buffer (`one` bytes each) the workspace budget,
    less the `used` bytes other workspace takes, and one device buffer hold; at least 1."""
    return max(1, min(limits.max_buffer_bytes, budget - used) // one)


def runs(total, size):
    """[(start, stop)] covering range(total) in steps of size."""
    return [(a, min(total, a + size)) for a in range(0, total, size)]


@dataclass(frozen=True)
class Buffer:
    """A device buffer of a schedule: `words` 32-bit words; kind "in" (the host writes it), "out"
    (the host reads it), "work" (the device alone: a workspace, counted against the budget when
    `workspace`)."""
    words: int
    kind: str = "in"
    workspace: bool = False

    @property
    def nbytes(self):
        return FLOAT_BYTES * self.words


@dataclass(frozen=True)
class Transfer:
    """Rows of a host array to or from a buffer. The host array `name` (a call argument, or "out"
    for the result) is sliced by `index` (one (start, stop) per leading axis, each row then has
    its last-axis range `cols`); in the buffer, row r starts at r * ld + off, with `dtype` elements.
    Upload (`step.uploads`): with `zero`, the rest of each row of ld is zeros (a kernel's margins).
    Download (`step.downloads`): with `add`, the rows are added to the host array, else written.
    A `pack` upload instead fills the buffer with pack(view, args) (a kernel's weight layout); its
    `tag(args)` names what it holds, so that kept weights are not written again."""
    role: str
    name: str
    index: Tuple[Tuple[int, int], ...] = ()
    cols: Tuple[int, int] = (0, 0)
    ld: int = 0
    off: int = 0
    dtype: str = "float32"
    zero: bool = False
    add: bool = False
    pack: Optional[Callable] = field(default=None, compare=False)
    tag: Optional[Callable] = field(default=None, compare=False)
    words: int = 0                                       # pack uploads: the words written

    @property
    def rows(self):
        n = 1
        for a, b in self.index:
            n *= b - a
        return n

    @property
    def elem_bytes(self):
        return 2 if self.dtype == "float16" else FLOAT_BYTES

    @property
    def nbytes(self):
        """Bytes this transfer moves between host and device: its rows, margins included (a staged
        copy moves the buffer's first rows * ld elements)."""
        if self.pack is not None:
            return FLOAT_BYTES * self.words
        return self.elem_bytes * self.rows * self.ld


@dataclass(frozen=True)
class Dispatch:
    """One dispatch of a kernel: its logical grid of workgroups (the shaders walk it grid-stride,
    so the dispatched grid may be smaller), push fields, spec, the piece-local problem it solves,
    and the schedule's buffer roles bound to the kernel's bindings, in binding order."""
    kernel: str
    grid: Tuple[int, int, int]
    fields: dict = field(compare=False)
    spec: tuple
    local: object
    binds: Tuple[str, ...] = ()          # the schedule's buffer role bound to each kernel binding, in order

    def push(self):
        return kernels.pack(self.kernel, **self.fields, grid_x=self.grid[0], grid_y=self.grid[1], grid_z=self.grid[2])


def make_dispatch(name, local, spec, binds=None):
    """A dispatch of kernel `name` on a piece-local problem. binds: {kernel binding name: schedule
    buffer role} where they differ (the kernel table's `bindings` give the order), e.g. the gemm
    path's matmul reads the weights as its A: {"a": "w", "b": "x", "c": "col"}."""
    kern = kernels.KERNELS[name]
    grid, fields = kern.setup(local, spec)
    roles = tuple((binds or {}).get(b, b) for b, _ in kern.bindings)
    return Dispatch(name, tuple(int(g) for g in grid), fields, spec, local, roles)


@dataclass
class Step:
    """A piece and its dispatches in order, with the transfers around them; `count` pieces like it
    when the schedule lists classes of pieces. `host(args)` replaces dispatches for a piece the
    host computes alone (e.g. bias-only outputs no input reaches)."""
    piece: object
    dispatches: List[Dispatch]
    count: int = 1
    uploads: Tuple[Transfer, ...] = ()
    downloads: Tuple[Transfer, ...] = ()
    host: Optional[Callable] = None

    @property
    def empty(self):
        return not self.dispatches


@dataclass
class Schedule:
    """Everything one call of an op on the Vulkan backend will do, computed without a device."""
    op: str
    params: object
    algorithm: str
    limits: Limits
    choice: Dict[str, tuple]              # kernel op -> ((kernel name, spec), ...)
    steps: List[Step] = field(default_factory=list)
    buffers: Dict[str, Buffer] = field(default_factory=dict)
    complete: bool = True                 # every piece (False: classes of pieces with counts)
    budget: int = 0                       # the workspace budget it was cut for
    safe: bool = False                    # specs exact for non-finite weights
    key: tuple = ()                       # what identifies it (the device's recording cache key)
    notes: Dict[str, object] = field(default_factory=dict)   # op-specific facts explain() shows
    info: Dict[str, object] = field(default_factory=dict)    # op-specific facts for the op itself

    @property
    def workspace_bytes(self):
        return sum(b.nbytes for b in self.buffers.values() if b.workspace)

    def buffer_bytes(self):
        return {role: b.nbytes for role, b in self.buffers.items()}

    @property
    def dispatch_count(self):
        return sum(len(st.dispatches) * st.count for st in self.steps)

    @property
    def pieces(self):
        return sum(st.count for st in self.steps)

    def kernels_used(self):
        return sorted({d.kernel for st in self.steps for d in st.dispatches})

    def note_split_k(self):
        """The most split-K slices a matmul of this schedule writes (its consumer sums them), noted
        for explain() when more than one."""
        slices = max((kernels.KERNELS[d.kernel].slices(d.spec) for st in self.steps for d in st.dispatches), default=1)
        if slices > 1:
            self.notes["split-K"] = slices
        return slices

    def submissions(self):
        """Queue submissions a call makes: one per step that dispatches (pieces share buffers, so a
        step's inputs are written only after the previous step's results were read)."""
        return sum(st.count for st in self.steps if st.dispatches)

    def summary(self):
        out = {"pieces": self.pieces, "dispatches": self.dispatch_count,
               "submissions": self.submissions(), "kernels": "+".join(self.kernels_used()) or "-"}
        out.update(self.notes)
        return out


def aligned(n, al):
    return round_up(max(n, 1), al)
