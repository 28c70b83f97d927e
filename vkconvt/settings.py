"""Settings that plans depend on, other than a call's own arguments: the process-wide workspace budget
and overrides scoped to a `with` block (tests, tune and the benchmark steer vkconvt with these; no
code assigns into a live backend or device object).

    vkconvt.set_max_workspace_bytes(64 << 20)      # process-wide budget (None: the default)
    with vkconvt.settings.override(kernels={"conv_transpose_1d": "conv_transpose_1d_sg"},
                                   max_buffer_bytes=1024, memory="device", timestamps=True):
        ...

Overrides (each optional):
  kernels           {kernel op: kernel name, or ((name, spec), ...)}: the kernels to try for that op
                    (a name: that kernel wherever it can, then the op's portable kernel)
  max_buffer_bytes  a smaller storage-buffer limit than the device's (forces pieces)
  limits            {kernels.Device field: value}: what the device is taken to offer
                    (max_shared_bytes, max_invocations, subgroup_size, subgroup_ops, and device_class:
                    "gpu" or "cpu", which picks that class's kernels); kernels it rules out are dropped
  memory            "host" or "device": how the Vulkan device's buffers are placed (see vulkan/device.py)
  timestamps        True: calls record device timestamps (the benchmark's and tune's kernel times)

Everything here is a value: `snapshot()` is hashable and every cache that depends on a setting keys
on it, so nothing needs invalidating when a setting changes.
"""
import contextlib
import contextvars

from . import env

KEYS = ("kernels", "max_buffer_bytes", "limits", "memory", "timestamps")
MEMORY = ("host", "device")
_budget = [None]
_overrides = contextvars.ContextVar("vkconvt_overrides", default=())


def set_max_workspace_bytes(nbytes):
    """Set the process-wide workspace budget (bytes, or a string like "64M"; None restores the default)."""
    _budget[0] = None if nbytes is None else check_budget(nbytes)


def check_budget(nbytes, name="max_workspace_bytes"):
    if isinstance(nbytes, str):
        return env.parse_bytes(nbytes, name)
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) and not hasattr(nbytes, "__index__"):
        raise TypeError(f"{name} must be an int number of bytes, got {nbytes!r}")
    nbytes = int(nbytes)
    if nbytes <= 0:
        raise ValueError(f"{name} must be positive, got {nbytes}")
    return nbytes


def global_budget():
    return _budget[0]


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _check(key, value):
    if key not in KEYS:
        raise ValueError(f"unknown setting {key!r}; settings: {', '.join(KEYS)}")
    if key == "memory" and value not in MEMORY:
        raise ValueError(f"memory must be one of {', '.join(MEMORY)}, got {value!r}")
    if key == "max_buffer_bytes":
        return check_budget(value, "max_buffer_bytes")
    if key == "kernels":
        from . import kernels
        if not isinstance(value, dict):
            raise TypeError(f"kernels must be a dict {{kernel op: kernel name or ((name, spec), ...)}}, got {value!r}")
        for op, entry in value.items():
            names = [entry] if isinstance(entry, str) else [e[0] for e in entry]
            for n in names:
                if n not in kernels.KERNELS or kernels.KERNELS[n].op != op:
                    raise ValueError(f"kernels[{op!r}]: {n!r} is not a kernel of {op!r}")
    if key == "limits":
        from . import kernels
        fields = set(kernels.Device.__dataclass_fields__)
        if not isinstance(value, dict) or set(value) - fields:
            raise ValueError(f"limits must be a dict with keys among {sorted(fields)}, got {value!r}")
    if key == "timestamps":
        return bool(value)
    return _freeze(value)


@contextlib.contextmanager
def override(**settings):
    """Within the block (this thread or task), plan and run with these settings (see the module doc)."""
    merged = dict(_overrides.get())
    for key, value in settings.items():
        merged[key] = _check(key, value)
    token = _overrides.set(tuple(sorted(merged.items())))
    try:
        yield
    finally:
        _overrides.reset(token)


def current():
    """The overrides in force: a hashable tuple of (key, value) pairs."""
    return _overrides.get()


def get(key, default=None):
    for k, v in _overrides.get():
        if k == key:
            return v
    return default


def snapshot():
    """Everything here a plan depends on, as one hashable value (the call cache keys on it)."""
    return _budget[0], _overrides.get(), env.plan_snapshot()
