"""Calls with nothing to compute, answered as PyTorch answers them, before any planning: an empty
batch (N == 0) gives the empty result (0, C_out, L_out) of conv_transpose1d, the layer and
col2im_1d; matmul with an empty batch, M or N gives an empty result, and over K == 0 (an empty
sum) zeros. Every other argument is checked as in any call."""
import numpy as np

from . import backends
from .params import as_float32, check_algorithm, check_half_pair, empty_batch_shape, input_dtype
from .vulkan.arrays import DeviceArray

F16 = np.dtype(np.float16)


def empty_result(shape, like, dtype=np.float32, backend=None, wait=True, algorithm="auto"):
    """zeros(shape): on `like`'s device when that argument is a DeviceArray, else a NumPy array."""
    check_algorithm(algorithm)
    if not isinstance(wait, bool):
        raise TypeError(f"wait must be True or False, got {wait!r}")
    backends.requested(backend)
    out = np.zeros(shape, dtype)
    if isinstance(like, DeviceArray):
        from .vulkan import arrays
        return arrays.asarray(like.dev, out)
    return out


def empty_batch(x, weights, hyper, request, wait, storage):
    """conv_transpose1d of a batched x with N == 0: its empty result (float16 for a float16 x);
    None for any other x. hyper: (stride, padding, output_padding, groups, dilation); request:
    (algorithm, backend, ...); storage: the call's."""
    if getattr(x, "ndim", None) != 3 or x.shape[0] != 0:
        return None
    if not isinstance(x, DeviceArray):      # x's dtype is checked as in any call
        check_half_pair(x, weights.weight, storage)
        as_float32("x", x, floating=True)
    shape = empty_batch_shape(x.shape, weights.weight.shape, *hyper, bias=weights.bias is not None)
    half = np.dtype(x.dtype if isinstance(x, DeviceArray) else input_dtype(x)) == F16
    return empty_result(shape, x, F16 if half else np.float32, request[1], wait, request[0])
