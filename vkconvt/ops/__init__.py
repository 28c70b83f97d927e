"""Op declarations: what the generic layers (planner, cost model, explain, backends) need of an op.

An op is a small declaration (an `Op`): its name, its algorithms, the kernel ops its schedules run,
how a call's arguments become a hashable problem (`params`), and per algorithm how that problem is
cut into pieces (`schedule`: a schedule.Schedule whose steps carry their dispatches and transfers).
The NumPy reference (`reference`) and an op's host-side finishing touches (`finish`) complete it.
Nothing in the planner, the cost model or the backends names an op: adding one means adding its
declaration, its kernels and its tests (tests/test_architecture.py declares a toy op to prove it).

    OPS[name]        the registered ops: conv_transpose1d, conv1d, conv_grad_weight, matmul, col2im_1d
    register(op)     add one (a test's toy op does)
"""
from dataclasses import dataclass
from typing import Tuple

__all__ = ["Op", "OPS", "register", "get"]


@dataclass(frozen=True)
class Op:
    """The declaration every op fills in (subclass and override the methods)."""
    name: str
    algorithms: Tuple[str, ...]               # the first is what "auto" means when there is one
    kernel_ops: Tuple[str, ...]               # the kernel ops (kernels.OPS) its schedules pick kernels for
    result: str = "out"                       # the host argument a schedule's downloads fill

    # ------------------------------------------------------------------ planning (device-free)
    def schedule(self, p, algorithm, limits, budget, choice, complete=True, safe=False):
        """The schedule.Schedule of problem p with `algorithm` on a device with `limits` and the kernel
        `choice`; complete=False: classes of pieces with counts (what the cost model prices)."""
        raise NotImplementedError

    def workspace(self, p):
        """{algorithm: bytes} of device workspace without a budget (no device needed)."""
        return {a: 0 for a in self.algorithms}

    def numpy_features(self, p):
        """Work counts of the NumPy backend (the cost model prices backend='auto' with them)."""
        return {"np_calls": 1.0}

    def describe(self, p):
        """One line: the op, its problem and its result, for explain()."""
        return f"{self.name} {p.tag()}"

    # ------------------------------------------------------------------ running
    def out_array(self, p):
        """The host array a call's result is written into (zeros where nothing lands)."""
        raise NotImplementedError

    def bind(self, p, args, out):
        """The host views a schedule's transfers index: the call's args and its result as "out"."""
        return dict(args, out=out)

    def reference(self, p, algorithm, args):
        """The NumPy backend's result for args (a dict of the call's prepared arguments)."""
        raise NotImplementedError

    def finish(self, sched, args, out):
        """Host work after the device's: e.g. an activation the kernels could not fuse."""
        return out

    def exact_needed(self, plan, args):
        """Whether the call must take the plan's exact (safe) schedule before running."""
        return False

    def recheck(self, plan, args, out):
        """Whether a finished result must be computed again with the exact schedule."""
        return False


OPS = {}


def register(op):
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} is already registered")
    OPS[op.name] = op
    return op


def get(name):
    try:
        return OPS[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; ops: {', '.join(OPS)}") from None


from . import col2im_1d, conv1d, conv_grad_weight, conv_transpose1d, matmul  # noqa: E402,F401  (register the built-in ops)
