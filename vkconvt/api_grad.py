"""conv1d and the backward pass of conv_transpose1d: validate, plan, run (calls.execute), hand back.

    conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, algorithm="auto",
           backend=None, device=None, max_workspace_bytes=None, activation=None, input_activation=None,
           storage=None, wait=True, ...)                 PyTorch's torch.nn.functional.conv1d
    conv_transpose1d_backward(grad_out, x, weight, stride=1, padding=0, output_padding=0, groups=1,
           dilation=1, *, output_mask=(True, True, True), input_activation=None, ...)
                                                        -> (grad_input, grad_weight, grad_bias)
    plan_conv1d(x_shape, weight_shape, ...)             -> the Plan of a conv1d call (explain())

conv1d shares conv_transpose1d's call path (api._run, the call cache, DeviceArray inputs, wait=False).
The backward: grad_input is conv1d(grad_out, weight) (a transposed conv's weight (C_in, C_out/g, K)
read as a conv1d weight), computed by the conv1d op; grad_weight by the conv_grad_weight op (its
kernels sum the batch and the length on the device); grad_bias is a sum over batch and length on the
host. Each gradient asked for is one call: one queue submission when its problem fits in one piece.
"""
import dataclasses

import numpy as np

from . import activations, calls, planner
from .api import F16, _check_wait, _device_of, _run, numpy_for_float64, result, stored
from .empty import empty_result
from .interop import tensor_io
from .ops.conv1d import Conv1dParams
from .ops.conv_grad_weight import GradWeightParams
from .params import (Weights, as_int, as_stored, check_algorithm, check_conv_args, check_host_memory, check_storage,
                     empty_batch_shape, input_dtype)
from .vulkan.arrays import DeviceArray

__all__ = ["conv1d", "conv_transpose1d_backward", "plan_conv1d", "conv1d_params"]


def conv1d_params(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1, bias=False):
    """(Conv1dParams, batched) of a conv1d call from shapes, PyTorch's rules; padding: an int (or
    a 1-tuple), 'valid' (0) or 'same' (stride 1; an odd total padding puts the extra zero on the
    right, as PyTorch)."""
    stride, dilation, groups = as_int("stride", stride, 1), as_int("dilation", dilation, 1), as_int("groups", groups, 1)
    same = isinstance(padding, str) and padding == "same"
    if isinstance(padding, str) and padding not in ("same", "valid"):
        raise ValueError(f"padding must be an int, 'valid' or 'same'; got {padding!r}")
    if same and stride != 1:
        raise ValueError("padding='same' is not supported for strided convolutions (stride must be 1, as in PyTorch)")
    pad = 0 if isinstance(padding, str) else as_int("padding", padding, 0)
    x_shape, w_shape = tuple(int(s) for s in x_shape), tuple(int(s) for s in w_shape)
    if len(x_shape) not in (2, 3):
        raise ValueError(f"x must have shape (N, C_in, L) or unbatched (C_in, L); got shape {x_shape}")
    batched = len(x_shape) == 3
    n, c_in, l_in = x_shape if batched else (1,) + x_shape
    if len(w_shape) != 3:
        raise ValueError(f"weight must have shape (C_out, C_in/groups, K); got shape {w_shape}")
    for name, shape, dims in (("x", x_shape, x_shape[batched:]), ("weight", w_shape, w_shape)):
        if 0 in dims:          # an empty batch (N == 0) is PyTorch's empty result, not an error
            raise ValueError(f"{name} has an empty dimension: shape {shape}")
    c_out, cig, k = w_shape
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide the input channels C_in={c_in} and the output channels "
                         f"C_out={c_out}")
    if cig * groups != c_in:
        raise ValueError(f"weight.shape[1] * groups must equal the input channels C_in={c_in} of x (shape "
                         f"{x_shape}); got weight shape {w_shape} with groups={groups}")
    span = dilation * (k - 1)
    if same:
        pad, l_out = span // 2, l_in
    else:
        l_out = (l_in + 2 * pad - span - 1) // stride + 1
    if l_out < 1:
        raise ValueError(f"conv1d: the padded input length {l_in} + 2*{pad} is shorter than the dilated kernel "
                         f"{span + 1} (K={k}, dilation={dilation}): no output")
    return Conv1dParams(n, c_in, l_in, c_out, k, l_out, stride, pad, dilation, groups, bool(bias)), batched


@tensor_io("x", "weight", "bias")
def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, algorithm="auto", backend=None,
           device=None, max_workspace_bytes=None, activation=None, negative_slope=0.01, alpha=None, beta=None,
           alpha_logscale=False, input_activation=None, input_negative_slope=0.01, storage=None, wait=True):
    """PyTorch's torch.nn.functional.conv1d.

    x: (N, C_in, L) or unbatched (C_in, L) (a NumPy array, a CPU tensor or a DeviceArray); weight:
    (C_out, C_in/groups, K); bias: (C_out,) or None; padding: an int, 'valid' or 'same'. Returns
    (N, C_out, L_out) with L_out = (L + 2*padding - dilation*(K-1) - 1) // stride + 1 (L for 'same').
    algorithm: "auto" (the planner's cost model picks), "direct" (no workspace) or "gemm"
    (im2col_1d + matmul + bias_act_1d, the column buffer chunked over the output length to fit
    max_workspace_bytes). backend, device, activation (on the output), input_activation (on x as it
    is loaded), storage ("float32", "float16", or "float64" with backend='numpy') and wait: as for
    vkconvt.conv_transpose1d.
    """
    hyper = (stride, padding, dilation, groups)
    request = (algorithm, backend, device, max_workspace_bytes)
    sig = None if alpha is not None or beta is not None else calls.signature(
        "conv1d", (x, weight, bias), hyper + request + (activation, negative_slope, alpha_logscale, input_activation,
                                                         input_negative_slope, storage, wait))
    hit = calls.lookup(sig)
    if hit is not None:              # validated and planned by an earlier call exactly like this one
        entry, act_params = hit
        b = None if bias is None else stored(bias, "float64" if entry[3] == "float64" else "float32")
        return _run(entry, x, Weights(stored(weight, entry[3]), b, act_params=act_params), wait)
    check_algorithm(algorithm)
    _check_wait(wait)
    device, on_device = _device_of((x,), backend, device)
    dtype = x.dtype if on_device else input_dtype(x)
    storage = check_storage(storage, dtype)
    backend = numpy_for_float64(storage, backend)
    if on_device and np.dtype(dtype) != (F16 if storage == "float16" else np.dtype(np.float32)):
        raise TypeError(f"x is a {x.dtype} DeviceArray but the call stores {storage}: give a {storage} DeviceArray "
                        f"or storage={str(x.dtype)!r}")
    x = x if on_device else as_stored("x", x, storage)
    w = as_stored("weight", weight, storage)
    b = None if bias is None else as_stored("bias", bias, "float64" if storage == "float64" else "float32")
    p, batched = conv1d_params(x.shape, w.shape, stride, padding, dilation, groups, b is not None)
    if b is not None and b.shape != (p.c_out,):
        raise ValueError(f"bias must have shape (C_out,) = ({p.c_out},); got shape {b.shape}")
    epi, act_params = activations.check(p.c_out, activation, negative_slope, alpha, beta, alpha_logscale,
                                        input_activation, input_negative_slope)
    p = dataclasses.replace(p, epi=epi, storage=storage, out_float16=dtype == F16)
    if p.n == 0:                 # an empty batch: PyTorch's empty result
        return empty_result((0, p.c_out, p.l_out), x, _dtype(storage, dtype == F16), backend, wait, algorithm)
    check_host_memory(f"the output of conv1d {p.tag()}", p.out_bytes())
    plan = planner.make_plan("conv1d", p, algorithm, backend, device, max_workspace_bytes)
    entry = (plan, calls.backend_for(plan), batched, storage, dtype == F16, on_device,
             on_device and calls.device_resident(plan, plan.schedule))
    calls.remember(sig, (entry, act_params), p.out_bytes())
    return _run(entry, x, Weights(w, b, act_params=act_params), wait)


def plan_conv1d(x_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1, *, bias=False, algorithm="auto",
                backend=None, device=None, max_workspace_bytes=None, storage="float32"):
    """Plan a conv1d call from shapes alone: see Plan.explain()."""
    check_algorithm(algorithm)
    p, _ = conv1d_params(x_shape, weight_shape, stride, padding, dilation, groups, bias)
    if p.n == 0:
        raise ValueError(f"x has an empty dimension: shape {tuple(x_shape)} (an empty batch has nothing to plan)")
    storage = check_storage(storage)
    p = dataclasses.replace(p, storage=storage)
    return planner.make_plan("conv1d", p, algorithm, numpy_for_float64(storage, backend), device, max_workspace_bytes)


def _output_mask(mask):
    if not isinstance(mask, (tuple, list)) or len(mask) != 3 or not all(isinstance(m, (bool, np.bool_)) for m in mask):
        raise TypeError(f"output_mask must be 3 bools (grad_input, grad_weight, grad_bias), got {mask!r}")
    return tuple(bool(m) for m in mask)


def _grad_out(grad_out, p, batched, storage):
    """grad_out as stored, 3-D; a clear error for a wrong type, dtype or shape."""
    if isinstance(grad_out, DeviceArray):
        raise TypeError("grad_out is a DeviceArray; conv_transpose1d_backward takes host arrays (call .numpy())")
    go = as_stored("grad_out", grad_out, storage)
    want = (p.n, p.c_out, p.l_out) if batched else (p.c_out, p.l_out)
    if go.shape != want:
        raise ValueError(f"grad_out must have the shape of conv_transpose1d's output, {want}; got shape {go.shape}")
    return go if batched else go[None]


@tensor_io("grad_out", "x", "weight")
def conv_transpose1d_backward(grad_out, x, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                              output_mask=(True, True, True), input_activation=None, input_negative_slope=0.01,
                              algorithm="auto", backend=None, device=None, max_workspace_bytes=None, storage=None):
    """The gradients of y = conv_transpose1d(input_activation(x), weight, bias, ...) given grad_out = dL/dy:
    (grad_input, grad_weight, grad_bias), each None unless output_mask asks for it (PyTorch's
    convolution_backward). grad_out: (N, C_out, L_out) (unbatched x: (C_out, L_out)); x: (N, C_in, L) or
    (C_in, L); weight: (C_in, C_out/groups, K). input_activation="leaky_relu": x is the value before
    the fused activation (grad_input is multiplied by its derivative, 1 for x > 0 else the slope, and
    grad_weight uses the activated x). Output activations are not here: their derivative is the
    caller's (vkconvt.torch applies them with PyTorch's autograd). grad_bias has C_out entries (a
    model without bias does not ask for it). algorithm applies to both device computations
    ("direct": no workspace; "gemm": im2col + matmul under max_workspace_bytes). storage as for
    conv_transpose1d: float16 storage returns grad_input and grad_weight in float16, "float64"
    (backend='numpy') computes and returns float64.
    """
    mask = _output_mask(output_mask)
    storage = check_storage(storage, input_dtype(x))
    backend = numpy_for_float64(storage, backend)
    request = (algorithm, backend, device, max_workspace_bytes)
    hyper = (stride, padding, output_padding, groups, dilation)
    if getattr(x, "ndim", None) == 3 and x.shape[0] == 0:      # an empty batch: zero gradients, as PyTorch
        return _empty_backward(grad_out, x, weight, hyper, mask, storage)
    x3, w, _, p, batched = check_conv_args(x, weight, None, *hyper, storage)
    epi, _ = activations.check(p.c_out, None, input_activation=input_activation,
                               input_negative_slope=input_negative_slope)
    go = _grad_out(grad_out, p, batched, storage)
    half = storage == "float16"
    gx = gw = gb = None
    if mask[0]:
        cp = Conv1dParams(p.n, p.c_out, p.l_out, p.c_in, p.k, p.l_in, p.stride, p.padding, p.dilation, p.groups,
                          storage=storage, out_float16=half)
        gx = _execute("conv1d", cp, {"x": go, "weights": Weights(w), "owner": None}, request, "grad_input")
        if epi.in_act:
            gx = gx * np.where(x3 > 0, 1, np.float32(epi.in_slope)).astype(gx.dtype)
        gx = result(gx, batched, half)
    if mask[1]:
        gp = GradWeightParams(p.n, p.c_in, p.l_in, p.c_out, p.l_out, p.k, p.stride, p.padding, p.dilation, p.groups,
                              storage)
        gw = _execute("conv_grad_weight", gp, {"x": activations.apply_input(x3, epi), "grad_out": go}, request,
                      "grad_weight")
        gw = gw.astype(np.float16) if half else gw
    if mask[2]:
        gb = go.sum(axis=(0, 2), dtype=np.float64 if storage == "float64" else np.float32)
    return gx, gw, gb


def _dtype(storage, half):
    return np.float16 if half else np.float64 if storage == "float64" else np.float32


def _empty_backward(grad_out, x, weight, hyper, mask, storage):
    """The gradients of an empty batch (checked as any call): grad_input empty, the others zeros."""
    shape = empty_batch_shape(x.shape, getattr(weight, "shape", np.shape(weight)), *hyper)
    w = as_stored("weight", weight, storage, True)
    go = as_stored("grad_out", grad_out, storage)
    if go.shape != shape:
        raise ValueError(f"grad_out must have the shape of conv_transpose1d's output, {shape}; got shape {go.shape}")
    dt = _dtype(storage, storage == "float16")
    return (np.zeros(x.shape, dt) if mask[0] else None, np.zeros(w.shape, dt) if mask[1] else None,
            np.zeros(shape[1], np.float64 if storage == "float64" else np.float32) if mask[2] else None)


def _execute(op, p, args, request, what):
    algorithm, backend, device, budget = request
    check_host_memory(f"the {what} of conv_transpose1d_backward", p.out_bytes())
    return calls.execute(planner.make_plan(op, p, algorithm, backend, device, budget), args)
