"""The public ops: validate, plan, hand the plan to a backend.

    conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                     *, algorithm="auto", backend=None, device=None, max_workspace_bytes=None,
                     activation=None, input_activation=None, storage=None, ...)
    matmul(a, b)
    col2im_1d(col, stride=1, padding=0, dilation=1, output_padding=0, bias=None)
    ConvTranspose1d(weight, bias=None, stride=1, ...)   a layer that keeps its weights on the device

All accept anything np.asarray takes and return NumPy float32 arrays (conv_transpose1d and the layer:
float16 for a float16 x, with float16 storage); given CPU torch.Tensors they return a torch.Tensor
in the first tensor's floating dtype (vkconvt/interop.py; torch is never imported by vkconvt itself).
"""
import dataclasses

import numpy as np

from . import activations, backends, calls, planner
from .interop import tensor_io
from .params import (FLOAT_BYTES, Weights, as_float32, as_int, check_algorithm, check_conv_args,
                     check_host_memory, check_hyper, check_layer_args, check_storage, input_dtype, output_length,
                     to_storage)

F16 = np.dtype(np.float16)


@tensor_io("x", "weight", "bias")
def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", backend=None, device=None, max_workspace_bytes=None, activation=None,
                     negative_slope=0.01, alpha=None, beta=None, alpha_logscale=False, input_activation=None,
                     input_negative_slope=0.01, storage=None):
    """PyTorch's torch.nn.functional.conv_transpose1d.

    x: (N, C_in, L) or unbatched (C_in, L); weight: (C_in, C_out/groups, K); bias: (C_out,) or None.
    Returns (N, C_out, L_out) (or (C_out, L_out) for unbatched x) with
    L_out = (L-1)*stride - 2*padding + dilation*(K-1) + output_padding + 1.
    algorithm: "auto" (the planner's cost model picks), "direct" (no workspace) or "gemm" (matmul +
    col2im_1d; its column buffer is chunked over batch and input length to fit max_workspace_bytes).
    backend: "vulkan", "numpy", "auto" (the planner picks the faster backend) or None (default).
    device: a Vulkan device index or a substring of its name.
    activation: None, "relu", "leaky_relu" (negative_slope), "tanh", "snake" (alpha: (C_out,)) or
    "snakebeta" (alpha, beta; alpha_logscale as BigVGAN), applied to the output by the kernel that
    writes it; input_activation: None or "leaky_relu" (input_negative_slope), applied to x as it
    is loaded (see vkconvt/activations.py).
    storage: "float32", "float16" or None (the dtype of x). float16: x and the weights are rounded
    to float16 once and stored as halves on the device, with the gemm column buffer (half the
    workspace); arithmetic and the output stay float32, and a float16 x gets its result rounded
    to float16 once at the end (as PyTorch's float16 conv_transpose1d returns float16).
    """
    act = (activation, negative_slope, alpha_logscale, input_activation, input_negative_slope, storage)
    sig = None if alpha is not None or beta is not None else calls.signature(
        x, weight, bias, (stride, padding, output_padding, groups, dilation), algorithm, backend, device,
        max_workspace_bytes, act)
    hit = calls.get(sig)
    if hit is not None:                  # a call exactly like an earlier valid one: validated then
        run, batched, storage, half = hit
        bias = bias if bias is None or bias.dtype == np.float32 else bias.astype(np.float32)
        return result(run(stored(x if batched else x[None], storage), Weights(stored(weight, storage), bias)),
                      batched, half)
    check_algorithm(algorithm)
    dtype = input_dtype(x)
    storage = check_storage(storage, dtype)
    x, weight, bias, p, batched = check_conv_args(x, weight, bias, stride, padding, output_padding, groups,
                                                  dilation, storage)
    epi, act_params = activations.check(p.c_out, activation, negative_slope, alpha, beta, alpha_logscale,
                                        input_activation, input_negative_slope)
    p = dataclasses.replace(p, epi=epi, storage=storage, out_float16=dtype == F16)
    out, run = run_conv(p, x, Weights(weight, bias, act_params=act_params), algorithm, backend, device,
                        max_workspace_bytes)
    calls.put(sig, (run, batched, storage, dtype == F16), p)
    return result(out, batched, dtype == F16)


def stored(arr, storage):
    """A cached call's array as its first, validated call handed it on: float16 for float16
    storage, else float32."""
    if storage == "float16":
        return to_storage(arr, storage)
    return arr if arr.dtype == np.float32 else arr.astype(np.float32)


def result(out, batched, half):
    """A computed call's result as the caller gets it: rounded to float16 for a float16 x, without
    the batch axis for an unbatched x."""
    out = to_float16(out) if half else out
    return out if batched else out[0]


def to_float16(out):
    """The float32 result rounded once to float16 (beyond float16's range: inf, as PyTorch); a
    result the device already rounded (to_float16 kernel) is returned as it is."""
    if out.dtype == np.float16:
        return out
    with np.errstate(over="ignore"):
        return out.astype(np.float16)


def run_conv(p, x, weights, algorithm, backend, device, max_workspace_bytes):
    """Plan (cached) and run one validated call; returns (out, a runner for the same call again)."""
    check_host_memory(f"the output of conv_transpose1d {p.tag()}", p.out_bytes())
    plan = planner.make_plan(p, algorithm, backend, device, max_workspace_bytes)
    be = backends.get(plan.backend, device=device if plan.backend == "vulkan" else None)
    run = be.runner(plan) if hasattr(be, "runner") else (lambda x, w: be.conv_transpose1d(plan, x, w))
    return run(x, weights), run


class ConvTranspose1d:
    """A layer: weights checked once and kept on the device between calls.

        layer = vkconvt.ConvTranspose1d(weight, bias, stride=8, padding=4, device=0)
        y = layer(x)
    Every argument is checked when the layer is made (the backend and device too).
    """

    @tensor_io("weight", "bias", wrap_result=False)
    def __init__(self, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                 algorithm="auto", backend=None, device=None, max_workspace_bytes=None, activation=None,
                 negative_slope=0.01, alpha=None, beta=None, alpha_logscale=False, input_activation=None,
                 input_negative_slope=0.01, storage=None):
        check_algorithm(algorithm)
        # storage=None: float16 for float16 weights (a .half() model), else float32
        self.storage = check_storage(storage, input_dtype(weight))
        self.hyper = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                          dilation=dilation)
        weight, bias = check_layer_args(weight, bias, **self.hyper)
        self.epi, act_params = activations.check(weight.shape[1] * as_int("groups", groups, 1), activation,
                                                 negative_slope, alpha, beta, alpha_logscale, input_activation,
                                                 input_negative_slope)
        # Own copies: the device keeps these weights, so later edits of the caller's arrays must
        # not make them stale.
        weight, bias = np.array(to_storage(weight, self.storage)), None if bias is None else bias.copy()
        if max_workspace_bytes is not None:
            max_workspace_bytes = planner.check_budget(max_workspace_bytes)
        name = backends.requested(backend)
        if backends.resolve_name(name) == "vulkan":
            backends.get("vulkan", device=device)       # a bad device fails here, not at the first call
        elif device is not None:
            raise ValueError(f"device={device!r} needs the Vulkan backend; the layer's backend is {name or 'numpy'!r}")
        self.weights = Weights(weight, bias, keep=True, act_params=act_params)
        self._calls = {}
        self.algorithm, self.backend, self.device = algorithm, backend, device
        self.max_workspace_bytes = max_workspace_bytes

    @property
    def weight(self):
        return self.weights.weight

    @property
    def bias(self):
        return self.weights.bias

    @tensor_io("x")
    def __call__(self, x):
        sig = calls.signature(x, self.weights.weight, self.weights.bias, tuple(self.hyper.values()), self.algorithm,
                              self.backend, self.device, self.max_workspace_bytes, self.epi)
        hit = self._calls.get(sig) if sig is not None else None
        if hit is not None:
            run, batched, half = hit
            return result(run(stored(x if batched else x[None], self.storage), self.weights), batched, half)
        dtype = input_dtype(x)
        x, _, _, p, batched = check_conv_args(x, self.weights.weight, self.weights.bias, **self.hyper,
                                              storage=self.storage)
        p = dataclasses.replace(p, epi=self.epi, storage=self.storage, out_float16=dtype == F16)
        out, run = run_conv(p, x, self.weights, self.algorithm, self.backend, self.device,
                            self.max_workspace_bytes)
        if sig is not None and calls.cacheable(p):
            if len(self._calls) >= 8:
                self._calls.clear()
            self._calls[sig] = (run, batched, dtype == F16)
        return result(out, batched, dtype == F16)


@tensor_io("a", "b")
def matmul(a, b, *, backend=None, device=None):
    """a (M, K) or (B, M, K) times b (K, N) or (B, K, N) -> float32; a 2-D operand is broadcast
    over the other's batch."""
    a = as_float32("a", a)
    b = as_float32("b", b)
    if a.ndim not in (2, 3):
        raise ValueError(f"a must be 2-D (M, K) or 3-D (B, M, K); got shape {a.shape}")
    if b.ndim not in (2, 3):
        raise ValueError(f"b must be 2-D (K, N) or 3-D (B, K, N); got shape {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"inner dimensions differ: a has shape {a.shape}, b has shape {b.shape}")
    if a.ndim == 3 and b.ndim == 3 and a.shape[0] != b.shape[0]:
        raise ValueError(f"batch sizes differ: a has shape {a.shape}, b has shape {b.shape}")
    for nm, arr in (("a", a), ("b", b)):
        if 0 in arr.shape:
            raise ValueError(f"{nm} has an empty dimension: shape {arr.shape}")
    batch = max(a.shape[0] if a.ndim == 3 else 1, b.shape[0] if b.ndim == 3 else 1)
    check_host_memory("the result of matmul", FLOAT_BYTES * batch * a.shape[-2] * b.shape[-1])
    return backends.get(backend, device=device).matmul(a, b)


@tensor_io("col", "bias")
def col2im_1d(col, stride=1, padding=0, dilation=1, output_padding=0, bias=None, *, backend=None, device=None):
    """The second half of the gemm algorithm, as a public op.

    col: (N, C, K, L_in) (or (C, K, L_in)): col[n, c, k, l] is what input position l contributes
    through kernel tap k to output channel c; it lands on output position
    t = l*stride - padding + k*dilation, and out[n, c, t] is the sum of everything landing on t
    (plus bias[c]). Returns (N, C, L_out) with L_out = (L_in-1)*stride - 2*padding +
    dilation*(K-1) + output_padding + 1.
    """
    col = as_float32("col", col)
    stride, padding, output_padding, dilation, _ = check_hyper(stride, padding, output_padding, dilation, 1)
    if col.ndim not in (3, 4):
        raise ValueError(f"col must have shape (N, C, K, L) or (C, K, L); got shape {col.shape}")
    batched = col.ndim == 4
    col4 = col if batched else col[None]
    if 0 in col4.shape:
        raise ValueError(f"col has an empty dimension: shape {col.shape}")
    n, c, k, l_in = col4.shape
    l_out = output_length(l_in, k, stride, padding, output_padding, dilation)
    if l_out <= 0:
        raise ValueError(f"output length {l_out} must be positive (L={l_in}, K={k}, stride={stride}, "
                         f"padding={padding}, dilation={dilation}, output_padding={output_padding})")
    if bias is not None:
        bias = as_float32("bias", bias)
        if bias.ndim != 1 or bias.shape != (c,):
            raise ValueError(f"bias must have shape (C,) = ({c},); got shape {bias.shape}")
    check_host_memory(f"the output of col2im_1d (N={n}, C={c}, L_out={l_out})", FLOAT_BYTES * n * c * l_out)
    out = backends.get(backend, device=device).col2im_1d(col4, stride, padding, dilation, output_padding, bias)
    return out if batched else out[0]
