"""The call cache: a repeated call, exactly like an earlier valid one, skips validation and planning.

A call's signature holds everything its validation and plan depend on: the arrays' types, dtypes,
shapes and contiguity (float32 or float16 C-contiguous NumPy arrays only), the hyper-parameters with their
types (so 2.0 never passes for 2), the algorithm, backend, device and budget arguments, the
environment variables the planner reads and the settings generation (env.generation(): bumped
by a new budget, cost model, or backend limit or kernel choice). Anything else (lists, tensors,
other dtypes, unhashable values) has no signature and takes the full path every time. A hit
hands the arrays to the runner the backend made for that plan, which still checks that its
device state is current.
"""
import numpy as np

from . import env

F32 = np.dtype(np.float32)
F16 = np.dtype(np.float16)
MAX_ENTRIES = 256
MAX_OUT_BYTES = 1 << 28          # larger outputs take the full path (its host-memory check)
_entries = {}


def _array(a):
    return type(a) is np.ndarray and (a.dtype == F32 or a.dtype == F16) and a.flags.c_contiguous


def signature(x, weight, bias, hyper, algorithm, backend, device, budget, extra=()):
    """extra: further hashable arguments the call depends on (activations); floats and bools are
    kept with their types."""
    if not (_array(x) and _array(weight) and (bias is None or _array(bias))):
        return None
    for v in hyper:
        if type(v) is not int:
            return None
    for v in (algorithm, backend, device, budget):
        if v is not None and type(v) not in (int, str):
            return None
    try:
        extra = tuple((type(v), v) for v in extra) if isinstance(extra, tuple) else (type(extra), extra)
        hash(extra)
    except TypeError:
        return None
    return (x.shape, weight.shape, None if bias is None else bias.shape, x.dtype.char, weight.dtype.char,
            None if bias is None else bias.dtype.char, hyper, algorithm, backend,
            type(device), device, type(budget), budget, extra, env.plan_snapshot(), env.generation())


def cacheable(p):
    return p.out_bytes() <= MAX_OUT_BYTES


def get(sig):
    return None if sig is None else _entries.get(sig)


def put(sig, entry, p):
    if sig is None or not cacheable(p):
        return
    if len(_entries) >= MAX_ENTRIES:
        _entries.clear()
    _entries[sig] = entry


def clear():
    _entries.clear()
