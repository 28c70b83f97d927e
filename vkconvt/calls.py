"""The one call path of every op, functions and layers alike: plan (cached), run with the policies
that belong to a call (not to a backend), hand the result back.

    execute(plan, args, wait)    run a plan: its exact schedule when the op asks for it (non-finite
                                 weights), out of device memory the plan's next schedule (auto:
                                 smaller workspace, then no workspace), a recheck the op may ask for
    lookup(sig) / remember(...)  the call cache: a repeated call, exactly like an earlier valid one,
                                 skips validation and planning (one LRU, keyed by value)
    trace()                      a context that records every schedule executed inside it
    CallReplay                   a repeated call on host arrays (a layer's, or a function's exactly
                                 repeated), replayed with the least host work (vulkan/replay.py), or
                                 declined: then the full path
    replay_for(sig) / ...        a function call's replay, by its signature

A call's signature holds everything its validation and plan depend on: the arrays' types, dtypes,
shapes and contiguity, the hyper-parameters with their types (so 2.0 never passes for 2), the
request (algorithm, backend, device, budget), and the settings snapshot (settings.py: budget,
overrides, the environment variables plans read) and the profiles loaded (a new tuning file makes a
new profile). Anything else (lists, tensors, other dtypes, unhashable values) has no signature and
takes the full path every time.
"""
import contextlib
import contextvars

import numpy as np

from . import backends, cache, profile, settings
from .errors import DeviceOutOfMemory

F32 = np.dtype(np.float32)
F16 = np.dtype(np.float16)
MAX_OUT_BYTES = 1 << 28          # larger outputs take the full path (its host-memory check)
_calls = cache.LRU("calls", 256)
_trace = contextvars.ContextVar("vkconvt_trace", default=None)


# ------------------------------------------------------------------ the call cache
def array_sig(a):
    """A hashable description of an array argument, or None (not cacheable)."""
    if type(a) is np.ndarray:
        if (a.dtype == F32 or a.dtype == F16) and a.flags.c_contiguous:
            return (a.shape, a.dtype.char)
        return None
    if a is None:
        return ()
    from .vulkan.arrays import DeviceArray
    if type(a) is DeviceArray:
        return ("device", id(a.dev), a.shape, a.dtype.char)
    return None


def signature(op, arrays, scalars):
    """arrays: the array arguments; scalars: the other arguments (ints, strings, floats, bools,
    None, tuples of them), kept with their types."""
    sigs = []
    for a in arrays:
        s = array_sig(a)
        if s is None:
            return None
        sigs.append(s)
    try:
        typed = tuple((type(v), v) for v in scalars)
        hash(typed)
    except TypeError:
        return None
    return (op, tuple(sigs), typed, settings.snapshot(), profile.epoch())


def lookup(sig):
    return None if sig is None else _calls.get(sig)


def remember(sig, entry, out_bytes):
    if sig is not None and out_bytes <= MAX_OUT_BYTES:
        _calls.put(sig, entry)


# ------------------------------------------------------------------ running a plan
@contextlib.contextmanager
def trace():
    """Within the block, every executed schedule is appended to the list this yields as
    (op name, backend name, schedule or None for NumPy)."""
    runs = []
    token = _trace.set(runs)
    try:
        yield runs
    finally:
        _trace.reset(token)


def backend_for(plan, device=None):
    return backends.get(plan.backend, device=plan.profile.index if plan.profile is not None else None)


def execute(plan, args, wait=True, device_out=False, be=None):
    """Run a plan on the call's prepared args (a dict, as the op's schedules name them). Returns the
    result: a host array, a DeviceArray when device_out, or a Pending when wait=False."""
    be = be or backend_for(plan)
    op = plan.op
    if plan.backend == "numpy":
        out = be.run(plan, None, args)
        _note(plan, None)
        return out
    safe = op.exact_needed(plan, args)
    out = _attempts(plan, be, args, safe, wait, device_out)
    if isinstance(out, Pending):
        return out
    if not device_out and op.recheck(plan, args, out):
        out = _attempts(plan, be, args, True, True, False)
    return out


def _attempts(plan, be, args, safe, wait, device_out):
    op, p = plan.op, plan.params
    last = None
    for sched in plan.attempts(safe):
        out = device_output(plan, sched, args) if device_out else op.out_array(p, sched)
        bound = op.bind(p, args, out)
        try:
            sub = be.run(plan, sched, bound, wait)
        except DeviceOutOfMemory as exc:
            be.release()
            last = exc
            continue
        _note(plan, sched)
        if sub is not None and not device_out:
            return Pending(sub, lambda sched=sched, bound=bound, out=out: op.finish(sched, bound, out))
        return out if device_out else op.finish(sched, bound, out)
    raise plan.out_of_memory(last)


def device_output(plan, sched, args):
    """The DeviceArray a device-resident call writes (its op's result shape and dtype)."""
    from .vulkan.arrays import DeviceArray
    host = plan.op.out_array(plan.params, sched)
    return DeviceArray(backend_for(plan).dev, host.shape, host.dtype)


def device_resident(plan, sched):
    """Whether a schedule can leave its result on the device as it is: one piece on the device, no
    host work after it (an activation the kernels could not fuse, a float16 rounding on the host)."""
    if sched is None or len(sched.steps) != 1 or not sched.steps[0].dispatches:
        return False
    p = plan.params
    if getattr(p, "epi", None) is not None and p.epi.act and not sched.info.get("fused", True):
        return False
    if getattr(p, "out_float16", False) and not sched.info.get("out_half"):
        return False
    return not any(t.add for t in sched.steps[0].downloads)


def _note(plan, sched):
    runs = _trace.get()
    if runs is not None:
        runs.append((plan.op.name, plan.backend, sched))


class Pending:
    """A call submitted without waiting (wait=False): result() waits for the device, reads the result
    and returns it (once; later calls return the same array); done() says whether it finished."""

    def __init__(self, submission, finish, transform=None):
        self._sub = submission
        self._finish = finish
        self._transform = transform
        self._result = None
        self._taken = False

    def done(self):
        return self._taken or self._sub.ready()

    def result(self):
        if not self._taken:
            dev = self._sub.dev
            with dev.lock:
                self._sub.wait()
            out = self._finish()
            self._result = self._transform(out) if self._transform else out
            self._taken = True
            self._sub = _Done()
        return self._result

    def then(self, transform):
        """A Pending whose result is transform(this result)."""
        inner = self._transform
        self._transform = transform if inner is None else (lambda out: transform(inner(out)))
        return self


class CallReplay:
    """A call at one shape, replayed: x a C-contiguous float32 host array of the shape it was made
    with, the same settings and profiles, no trace active, the plan's schedule as recorded, and (a
    layer's) the same kept weights; call() returns the result, or None where the full path must run
    (vulkan/replay.py says when)."""
    __slots__ = ("shape", "state", "plan", "sched", "replay", "weights", "owner", "batched")

    def __init__(self, plan, sched, replay, x, weights, batched):
        self.shape, self.state = x.shape, (settings.snapshot(), profile.epoch())
        self.plan, self.sched, self.replay, self.batched = plan, sched, replay, batched
        # a layer's kept weights must stay the same object; a function's are packed in every call
        self.weights = None if weights.token is None else weights
        self.owner = weights.owner

    @classmethod
    def make(cls, plan, be, x, weights, batched):
        """The replay of a call just run (full path) with host x, or None where it is not eligible."""
        p = plan.params
        if (plan.backend != "vulkan" or type(x) is not np.ndarray or x.dtype != F32 or p.storage != "float32"
                or not x.flags.c_contiguous or (p.epi.act and not plan.schedule.info.get("fused", True))):
            return None
        from .vulkan.replay import replayer
        # the recording's transfers are bound already: the replayer needs only what names the weights
        replay = replayer(be.dev, plan.schedule, {"weights": weights, "owner": weights.owner}, plan.profile.memory)
        return None if replay is None else cls(plan, plan.schedule, replay, x, weights, batched)

    def __call__(self, x, weights, signed=False):
        """signed: the caller matched the call's signature (shapes, dtypes, settings, profiles) already."""
        if not signed and (type(x) is not np.ndarray or x.shape != self.shape or x.dtype != F32 or not x.flags.c_contiguous
                or (self.weights is not None and weights is not self.weights)
                or (settings.snapshot(), profile.epoch()) != self.state) or _trace.get() is not None:
            return None
        plan = self.plan
        op, p = plan.op, plan.params
        out = op.out_array(p, self.sched)
        args = op.bind(p, {"x": x if self.batched else x[None], "weights": weights, "owner": self.owner}, out)
        if op.exact_needed(plan, args) or not self.replay(args) or op.recheck(plan, args, out):
            return None
        return out if self.batched else out[0]


_replays = cache.LRU("replays", 64)


def replay_for(sig):
    return None if sig is None else _replays.get(sig)


def remember_replay(sig, replay):
    if sig is not None:
        _replays.put(sig, replay)


class _Done:
    def ready(self):
        return True
