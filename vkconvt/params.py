"""ConvParams: argument checks with clear messages, output length, FLOPs and workspace bytes.

Everything here runs before any device work: a bad argument raises TypeError/ValueError naming
the parameter and its value.
"""
import numbers
import os
from dataclasses import dataclass

import numpy as np

from .activations import NONE, Epilogue
from .errors import VkconvtMemoryError

ALGORITHMS = ("auto", "direct", "gemm")
FLOAT_BYTES = 4


def as_int(name, value, minimum=None):
    """An integer hyper-parameter; like PyTorch, a 1-element tuple/list is accepted."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{name} must be an int or a 1-element tuple for a 1-D convolution, got {value!r}")
        value = value[0]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _checked(name, value, floating=False):
    """np.asarray(value), refused (TypeError) unless real numeric; integer and bool values refused
    too when floating (conv_transpose1d's arrays: PyTorch refuses them too)."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be array-like of numbers, got {type(value).__name__}: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must have a real numeric dtype, got dtype {arr.dtype}")
    if floating and arr.dtype.kind != "f":
        what = f"dtype {arr.dtype}" if hasattr(value, "dtype") else f"a {type(value).__name__} of {arr.dtype} values"
        raise TypeError(f"{name} must be floating point (float16, float32 or float64), got {what}; like PyTorch's "
                        f"conv_transpose1d, vkconvt does not convert it: pass np.asarray({name}, dtype=np.float32)")
    return arr


def as_float32(name, value, floating=False):
    """np.asarray(value) as contiguous float32 (checked as _checked says)."""
    out = np.asarray(_checked(name, value, floating), dtype=np.float32)   # keeps a 0-d value 0-d
    return out if out.flags.c_contiguous else np.ascontiguousarray(out)


STORAGES = ("float32", "float16", "float64")


def check_storage(storage, x_dtype=None):
    """storage=None: float16 for a float16 input, else float32. "float64" is the NumPy backend's
    exact mode (e.g. for torch.autograd.gradcheck): the callers refuse it on Vulkan."""
    if storage is None:
        return "float16" if x_dtype == np.float16 else "float32"
    if not isinstance(storage, str) or storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(STORAGES)} (or None: the input's dtype); got {storage!r}")
    return storage


def input_dtype(value):
    """The floating dtype of an input (float16 stays float16; everything else computes float32)."""
    dt = getattr(value, "dtype", None)
    return np.dtype(np.float16) if dt is not None and np.dtype(dt) == np.float16 else np.dtype(np.float32)


def as_stored(name, value, storage, floating=False):
    """value as a contiguous array of what `storage` holds: float64 for float64 storage; float16
    for float16 storage (float16 values kept, others rounded once); float32 otherwise (checked as
    _checked says)."""
    if storage == "float64":
        arr = np.asarray(_checked(name, value, floating), dtype=np.float64)
    elif storage == "float16" and input_dtype(value) == np.float16:
        arr = np.asarray(value)
    else:
        arr = to_storage(as_float32(name, value, floating), storage)
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)     # a 0-d value stays 0-d


def to_storage(arr, storage):
    """arr as the host holds it for `storage`: float16 storage keeps float16 arrays (rounded once
    here from anything else; beyond float16's range: inf), so that the device upload is a copy."""
    if storage != "float16" or arr is None or arr.dtype == np.float16:
        return arr
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(arr, dtype=np.float16)


def all_finite(arr):
    """Whether arr has no inf/NaN: float16 by its exponent bits (no conversion, no overflowing
    sum); float32 by its sum (a sum that overflows only costs the caller's exact recomputation)."""
    if arr.dtype == np.float16:
        return not bool(np.any((arr.view(np.uint16) & 0x7C00) == 0x7C00))
    return bool(np.isfinite(np.sum(arr, dtype=np.float32)))


def check_algorithm(algorithm):
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}")
    return algorithm


STORAGE_BYTES = {"float16": 2, "float64": 8}       # bytes of a stored element (else float32's)


class Grouped:
    """What the ops' problem records share (ConvParams; ops/conv1d.py's and ops/conv_grad_weight.py's):
    channels per group and the bytes of a stored element."""

    @property
    def elem_bytes(self):
        """Bytes per stored element of x, weights and the column buffer (the output is float32)."""
        return STORAGE_BYTES.get(self.storage, FLOAT_BYTES)

    @property
    def cig(self):
        return self.c_in // self.groups

    @property
    def cog(self):
        return self.c_out // self.groups


@dataclass(frozen=True)
class ConvParams(Grouped):
    """Shape and hyper-parameters of one conv_transpose1d call (PyTorch semantics)."""
    n: int
    c_in: int
    l_in: int
    c_out: int
    k: int
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    dilation: int = 1
    groups: int = 1
    bias: bool = False
    epi: Epilogue = NONE            # fused activations (activations.py)
    storage: str = "float32"        # how x, the weights and the gemm column buffer are stored on the device
    out_float16: bool = False       # the result is rounded to float16 (a float16 call)

    @property
    def l_out(self):
        return output_length(self.l_in, self.k, self.stride, self.padding, self.output_padding, self.dilation)

    @property
    def flops(self):
        """2·N·C_in·(C_out/groups)·K·L_in: the multiply-adds of the taps that land on inputs."""
        return 2 * self.n * self.c_in * self.cog * self.k * self.l_in

    def gemm_column_bytes(self, elem_bytes=None):
        """The gemm path's column buffer: (C_out/groups)·K·N·L_in elements per group, all groups, in
        the storage type (elem_bytes: another element size, e.g. the NumPy backend's float32)."""
        return self.c_out * self.k * self.n * self.l_in * (elem_bytes or self.elem_bytes)

    def out_bytes(self):
        return FLOAT_BYTES * self.n * self.c_out * self.l_out

    def gemm_weight(self, weight):
        """The gemm path's A operand: weight (C_in, C_out/groups, K) as (groups, C_out/groups, K,
        C_in/groups), contiguous; row (co, k) of group g is the column entry's weights."""
        return np.ascontiguousarray(weight.reshape(self.groups, self.cig, self.cog, self.k).transpose(0, 2, 3, 1))

    def io_bytes(self):
        return FLOAT_BYTES * (self.n * self.c_in * self.l_in + self.c_in * self.cog * self.k
                              + self.n * self.c_out * self.l_out + (self.c_out if self.bias else 0))

    def tag(self):
        """A short id like N2_Ci4_Co6_L13_K3_s2_p1_op1_d1_g2_b."""
        return (f"N{self.n}_Ci{self.c_in}_Co{self.c_out}_L{self.l_in}_K{self.k}_s{self.stride}_p{self.padding}"
                f"_op{self.output_padding}_d{self.dilation}_g{self.groups}" + ("_b" if self.bias else "")
                + self.epi.tag() + ("_f16" if self.storage == "float16" else ""))


def host_memory_bytes():
    """What this machine can still give a new array (Linux: MemAvailable), else its RAM."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_host_memory(what, nbytes):
    """Refuse, before any work, a result larger than the memory this machine has free."""
    if nbytes < 1 << 28:            # a quarter GiB always fits; spare the hot path the look-up
        return
    free = host_memory_bytes()
    if nbytes > free:
        raise VkconvtMemoryError(f"{what} needs {nbytes} bytes ({nbytes / 2**30:.1f} GiB) of host memory, more than "
                                 f"the {free} bytes ({free / 2**30:.1f} GiB) this machine has available",
                                 needed_bytes=nbytes, budget_bytes=free)


class Weights:
    """A conv's weight and bias, prepared once: float32 arrays (the weight float16 for float16
    storage), derived layouts computed on first use and kept (`layout`), and a `token` naming this
    version of the weights, so that a device keeps them between calls (None: a one-off call,
    nothing is kept)."""

    def __init__(self, weight, bias=None, keep=False, act_params=None):
        self.weight = weight
        self.bias = bias
        self.act_params = act_params          # (2, C_out) [alpha, 1/(beta + eps)] of snake activations
        self.token = object() if keep else None
        self._layouts = {}

    @property
    def owner(self):
        """What a device keys the buffers that keep these weights by (None: a one-off call's)."""
        return None if self.token is None else id(self.token)

    @property
    def finite(self):
        """Whether every weight is finite (kernels may then multiply a weight by a zero margin);
        kept weights are checked once. A sum overflowing to inf only costs the exact kernels."""
        if self.token is not None and "finite" in self._layouts:
            return self._layouts["finite"]
        ok = all_finite(self.weight)
        if self.token is not None:
            self._layouts["finite"] = ok
        return ok

    def layout(self, key, make):
        """make(weight) computed once per key (e.g. the gemm layout) when the weights are kept."""
        if self.token is None:
            return make(self.weight)
        if key not in self._layouts:
            self._layouts[key] = make(self.weight)
        return self._layouts[key]


def output_length(l_in, k, stride=1, padding=0, output_padding=0, dilation=1):
    return (l_in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1


def check_hyper(stride, padding, output_padding, dilation, groups):
    stride = as_int("stride", stride, 1)
    padding = as_int("padding", padding, 0)
    output_padding = as_int("output_padding", output_padding, 0)
    dilation = as_int("dilation", dilation, 1)
    groups = as_int("groups", groups, 1)
    if output_padding >= max(stride, dilation):
        raise ValueError(f"output_padding must be smaller than either stride or dilation, got "
                         f"output_padding={output_padding}, stride={stride}, dilation={dilation}")
    return stride, padding, output_padding, dilation, groups


def params_from_shapes(x_shape, w_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                       bias=False):
    """Check shapes and hyper-parameters; returns (ConvParams, batched)."""
    x_shape, w_shape = tuple(int(s) for s in x_shape), tuple(int(s) for s in w_shape)
    stride, padding, output_padding, dilation, groups = check_hyper(stride, padding, output_padding,
                                                                    dilation, groups)
    if len(x_shape) not in (2, 3):
        raise ValueError(f"x must have shape (N, C_in, L) or unbatched (C_in, L); got shape {x_shape}")
    batched = len(x_shape) == 3
    n, c_in, l_in = x_shape if batched else (1,) + x_shape
    if len(w_shape) != 3:
        raise ValueError(f"weight must have shape (C_in, C_out/groups, K); got shape {w_shape}")
    for name, value in (("x", x_shape), ("weight", w_shape)):
        if 0 in value:
            raise ValueError(f"{name} has an empty dimension: shape {value}")
    if w_shape[0] != c_in:
        hint = ("; x looks channels-last (..., L, C_in): transpose its last two axes to (N, C_in, L) "
                "(NumPy: x.swapaxes(-1, -2); PyTorch: x.transpose(-1, -2))"
                if x_shape[-1] == w_shape[0] != x_shape[-2] else "")
        raise ValueError(f"weight.shape[0] must equal the input channels C_in={c_in} of x (shape {x_shape}); "
                         f"got weight shape {w_shape}{hint}")
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide the input channels C_in={c_in}")
    c_out, k = w_shape[1] * groups, w_shape[2]
    p = ConvParams(n, c_in, l_in, c_out, k, stride, padding, output_padding, dilation, groups, bool(bias))
    if p.l_out <= 0:
        raise ValueError(f"output length (L-1)*stride - 2*padding + dilation*(K-1) + output_padding + 1 = "
                         f"{p.l_out} must be positive (L={l_in}, K={k}, stride={stride}, padding={padding}, "
                         f"dilation={dilation}, output_padding={output_padding})")
    return p, batched


def check_bias(bias, channels, what="C_out", floating=False, storage=None):
    """bias as a float32 (channels,) array (float64 for float64 storage), or None; ValueError naming
    its shape otherwise (floating: integer and bool values refused, as for conv_transpose1d)."""
    if bias is None:
        return None
    bias = as_stored("bias", bias, "float64" if storage == "float64" else "float32", floating)
    if bias.ndim != 1 or bias.shape != (channels,):
        raise ValueError(f"bias must have shape ({what},) = ({channels},); got shape {bias.shape}")
    return bias


def empty_batch_shape(x_shape, w_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1, bias=False):
    """(0, C_out, L_out) for a batched x with no samples (N == 0: PyTorch returns that empty result),
    after every check a call with one sample gets; None when x is not an empty batch."""
    x_shape = tuple(int(v) for v in x_shape)
    if len(x_shape) != 3 or x_shape[0] != 0:
        return None
    p, _ = params_from_shapes((1,) + x_shape[1:], w_shape, stride, padding, output_padding, groups, dilation, bias)
    return 0, p.c_out, p.l_out


def check_layer_args(weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Validate a layer's weight, bias and hyper-parameters without an input (any input long enough
    for a positive output length will do). Returns (weight, bias) as float32 contiguous arrays."""
    weight = as_float32("weight", weight, floating=True)
    if weight.ndim != 3:
        raise ValueError(f"weight must have shape (C_in, C_out/groups, K); got shape {weight.shape}")
    stride_ = as_int("stride", stride, 1)
    long_enough = max(1, 2 * as_int("padding", padding, 0) // stride_ + 2)
    p, _ = params_from_shapes((weight.shape[0], long_enough), weight.shape, stride, padding, output_padding,
                              groups, dilation, bias is not None)
    return weight, check_bias(bias, p.c_out, floating=True)


def check_half_pair(x, weight, storage=None):
    """float16 with another dtype is refused, as PyTorch refuses it (x and weight as the caller
    gave them, when the call does not say how to store them): a float16 x needs float16 weights
    and the other way round. Weights stored as halves (storage='float16') take a float32 x."""
    x_half, w_half = input_dtype(x) == np.float16, input_dtype(weight) == np.float16
    if x_half != w_half and (x_half or storage != "float16"):
        xd, wd = (np.dtype(getattr(v, "dtype", np.float64)) for v in (x, weight))
        raise TypeError(f"x has dtype {xd} and weight has dtype {wd}: their dtypes must match (PyTorch's "
                        f"conv_transpose1d refuses this pair too); convert one of them, or keep float32 arrays and "
                        f"pass storage='float16' to store halves")


def check_conv_args(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                    storage="float32"):
    """Validate a conv_transpose1d call. Returns (x, weight, bias, params, batched) with contiguous
    arrays (x and weight float16 for float16 storage, float64 for float64, else float32) and x always 3-D."""
    check_half_pair(x, weight, storage)
    x, weight = as_stored("x", x, storage, True), as_stored("weight", weight, storage, True)
    p, batched = params_from_shapes(x.shape, weight.shape, stride, padding, output_padding, groups,
                                    dilation, bias is not None)
    bias = check_bias(bias, p.c_out, floating=True, storage=storage)
    if not batched:
        x = x[None]
    return x, weight, bias, p, batched
