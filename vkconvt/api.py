"""The public ops: validate, plan, run (vkconvt/calls.py), hand the result back.

    conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                     *, algorithm="auto", backend=None, device=None, max_workspace_bytes=None,
                     activation=None, input_activation=None, storage=None, wait=True, ...)
    matmul(a, b)
    col2im_1d(col, stride=1, padding=0, dilation=1, output_padding=0, bias=None)
    ConvTranspose1d(weight, bias=None, stride=1, ...)   a layer that keeps its weights on the device
    asarray(x, device=None)                            a DeviceArray (data kept on the Vulkan device)

All accept anything np.asarray takes and return NumPy float32 arrays (conv_transpose1d and the layer:
float16 for a float16 x, with float16 storage); given a DeviceArray they return one on its device,
without a host round trip; given CPU torch.Tensors they return a torch.Tensor in the first tensor's
floating dtype (vkconvt/interop.py; torch is never imported by vkconvt itself). wait=False returns at
once: a DeviceArray is read when its data is asked for, a host result comes as a calls.Pending.
The function and the layer share one call path (`_conv`), with one call cache.
"""
import dataclasses
import weakref

import numpy as np

from . import activations, backends, calls, ops, planner
from .interop import tensor_io
from .ops.col2im_1d import Col2imParams
from .ops.matmul import MatmulParams
from .empty import empty_batch, empty_result
from .params import (FLOAT_BYTES, Weights, as_float32, as_int, as_stored, check_algorithm, check_bias,
                     check_conv_args, check_host_memory, check_hyper, check_layer_args, check_storage, input_dtype,
                     output_length, to_storage)
from .vulkan.arrays import DeviceArray

F16 = np.dtype(np.float16)
CONV = ops.get("conv_transpose1d")


def _check_wait(wait):
    if not isinstance(wait, bool):
        raise TypeError(f"wait must be True or False, got {wait!r}")
    return wait


def _device_of(arrays, backend, device):
    """The device a call with DeviceArray arguments runs on (theirs), checked against the request."""
    devs = {id(a.dev): a for a in arrays if isinstance(a, DeviceArray)}
    if not devs:
        return device, False
    if len(devs) > 1:
        raise ValueError("the DeviceArray arguments live on different Vulkan devices; move them to one with "
                         "vkconvt.asarray(a.numpy(), device=...)")
    arr = next(iter(devs.values()))
    if backends.resolve_name(backend) != "vulkan":
        raise ValueError(f"backend={backend!r} cannot take a DeviceArray (it lives on a Vulkan device); "
                         "call .numpy() first, or use backend='vulkan'")
    if device is not None and backends.device_info(device).index != arr.dev.info.index:
        raise ValueError(f"device={device!r} differs from the device its DeviceArray lives on "
                         f"({arr.dev.info.describe()})")
    return arr.dev.info.index, True


def _prepare(x, weights, hyper, storage, epi, request, wait):
    """Validate a conv_transpose1d call and plan it: the entry its repeated calls reuse
    (plan, backend, batched, storage, half, on_device, dev_out)."""
    algorithm, backend, device, budget = request
    check_algorithm(algorithm)
    _check_wait(wait)
    device, on_device = _device_of((x,), backend, device)
    dtype = x.dtype if isinstance(x, DeviceArray) else input_dtype(x)
    storage = check_storage(storage, dtype)
    backend = numpy_for_float64(storage, backend)
    if on_device:
        if np.dtype(dtype) != (F16 if storage == "float16" else np.dtype(np.float32)):
            raise TypeError(f"x is a {x.dtype} DeviceArray but the call stores {storage}: give a "
                            f"{storage} DeviceArray or storage={str(x.dtype)!r}")
        _, _, _, p, batched = check_conv_args(np.empty(x.shape, dtype=x.dtype), weights.weight, weights.bias,
                                              *hyper, storage)
    else:
        x, _, _, p, batched = check_conv_args(x, weights.weight, weights.bias, *hyper, storage)
        x = x if batched else x[0]
    p = dataclasses.replace(p, epi=epi, storage=storage, out_float16=dtype == F16)
    check_host_memory(f"the output of conv_transpose1d {p.tag()}", p.out_bytes())
    plan = planner.make_plan(CONV, p, algorithm, backend, device, budget, kept=weights.token is not None)
    dev_out = on_device and calls.device_resident(plan, plan.schedule)
    return (plan, calls.backend_for(plan), batched, storage, dtype == F16, on_device, dev_out), x


def _run(entry, x, weights, wait):
    """Run a prepared conv_transpose1d call (the one call path of the function and the layer)."""
    plan, be, batched, storage, half, on_device, dev_out = entry
    if on_device:
        x4 = x if batched else x.reshape((1,) + x.shape)
    else:
        x4 = stored(x if batched else x[None], storage)
    args = {"x": x4, "weights": weights, "owner": weights.owner}
    out = calls.execute(plan, args, wait=wait, device_out=dev_out, be=be)
    if isinstance(out, calls.Pending):
        return out.then(lambda o: result(o, batched, half))
    if on_device and not dev_out:
        return _to_device(plan, result(out, batched, half))
    return result(out, batched, half)


def _replay_of(entry, x, weights, wait):
    """The replay of a call just run on the full path (calls.CallReplay), or None."""
    plan, be, batched, _, _, on_device, _ = entry
    return calls.CallReplay.make(plan, be, x, weights, batched) if wait is True and not on_device else None


def _to_device(plan, host):
    """A result the device could not keep (several pieces, host work after them) moved back there."""
    from .vulkan import arrays
    return arrays.asarray(calls.backend_for(plan).dev, host)


@tensor_io("x", "weight", "bias")
def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", backend=None, device=None, max_workspace_bytes=None, activation=None,
                     negative_slope=0.01, alpha=None, beta=None, alpha_logscale=False, input_activation=None,
                     input_negative_slope=0.01, storage=None, wait=True):
    """PyTorch's torch.nn.functional.conv_transpose1d.

    x: (N, C_in, L) or unbatched (C_in, L) (a NumPy array, a CPU tensor or a DeviceArray);
    weight: (C_in, C_out/groups, K); bias: (C_out,) or None. Returns (N, C_out, L_out) (or (C_out,
    L_out) for unbatched x) with L_out = (L-1)*stride - 2*padding + dilation*(K-1) + output_padding + 1.
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
    to float16 once at the end (as PyTorch's float16 conv_transpose1d returns float16). "float64"
    (backend='numpy' only): computed and returned in float64 (torch.autograd.gradcheck's precision).
    wait: False returns without waiting for the device (see the module doc).
    """
    hyper = (stride, padding, output_padding, groups, dilation)
    request = (algorithm, backend, device, max_workspace_bytes)
    sig = None if alpha is not None or beta is not None else calls.signature(
        "conv_transpose1d", (x, weight, bias), hyper + request + (activation, negative_slope, alpha_logscale,
                                                                   input_activation, input_negative_slope, storage,
                                                                   wait))
    hit = calls.lookup(sig)
    if hit is not None:              # a call exactly like an earlier valid one: validated and planned then
        entry, act_params = hit
        b = None if bias is None else stored(bias, "float64" if entry[3] == "float64" else "float32")
        weights = Weights(stored(weight, entry[3]), b, act_params=act_params)
        replay = calls.replay_for(sig)
        if replay is not None:
            out = replay(x, weights, signed=True)
            if out is not None:
                return out
        out = _run(entry, x, weights, wait)
        calls.remember_replay(sig, _replay_of(entry, x, weights, wait))
        return out
    storage_ = check_storage(storage, x.dtype if isinstance(x, DeviceArray) else input_dtype(x))
    c_out = check_layer_args(weight, bias, *hyper)[0].shape[1] * as_int("groups", groups, 1)
    epi, act_params = activations.check(c_out, activation, negative_slope, alpha, beta, alpha_logscale,
                                        input_activation, input_negative_slope)
    b = None if bias is None else as_stored("bias", bias, "float64" if storage_ == "float64" else "float32")
    weights = Weights(as_stored("weight", weight, storage_), b, act_params=act_params)
    empty = empty_batch(x, weights, hyper, request, wait, storage_)
    if empty is not None:
        return empty
    entry, x = _prepare(x, weights, hyper, storage_, epi, request, wait)
    calls.remember(sig, (entry, act_params), entry[0].params.out_bytes())
    return _run(entry, x, weights, wait)


def stored(arr, storage):
    """A call's x or weight as the device stores it: float16 for float16 storage, float64 for the
    NumPy backend's float64, else float32."""
    if storage == "float16":
        return to_storage(arr, storage)
    dtype = np.float64 if storage == "float64" else np.float32
    return arr if arr.dtype == dtype else arr.astype(dtype)


def numpy_for_float64(storage, backend):
    """The backend of a call: float64 storage computes on the NumPy backend only."""
    if storage != "float64":
        return backend
    if backends.requested(backend) in ("numpy", "auto") or backends.resolve_name(backend) == "numpy":
        return "numpy"
    raise ValueError("storage='float64' computes on the NumPy backend only (its exact float64 mode, e.g. for "
                     "torch.autograd.gradcheck): pass backend='numpy'; the Vulkan kernels compute float32")


def result(out, batched, half):
    """A computed call's result as the caller gets it: rounded to float16 for a float16 x, without
    the batch axis for an unbatched x."""
    if isinstance(out, DeviceArray):
        return out if batched else out.reshape(out.shape[1:])
    out = to_float16(out) if half else out
    return out if batched else out[0]


def to_float16(out):
    """The float32 result rounded once to float16 (beyond float16's range: inf, as PyTorch); a
    result the device already rounded (to_float16 kernel) is returned as it is."""
    if out.dtype == np.float16:
        return out
    with np.errstate(over="ignore"):
        return out.astype(np.float16)


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
        if self.storage == "float64":
            raise ValueError("a ConvTranspose1d layer stores float32 or float16; storage='float64' is for "
                             "vkconvt.conv_transpose1d(..., backend='numpy')")
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
        self.algorithm, self.backend, self.device = algorithm, backend, device
        self.max_workspace_bytes = max_workspace_bytes
        self._watched = set()
        self._replay = None
        # what the layer's calls depend on besides x: its weights' shapes, dtypes and configuration
        self.key = (weight.shape, weight.dtype.char, None if bias is None else bias.shape, tuple(self.hyper.items()),
                    self.storage, self.epi, algorithm, backend, device, max_workspace_bytes)

    @property
    def weight(self):
        return self.weights.weight

    @property
    def bias(self):
        return self.weights.bias

    def watch(self, plan):
        """The device buffers that keep this layer's weights are freed when the layer is."""
        if plan.backend == "vulkan" and plan.profile.index not in self._watched:
            self._watched.add(plan.profile.index)
            be = backends.get("vulkan", device=plan.profile.index)
            weakref.finalize(self.weights, be.forget_owner, self.weights.owner)

    def warmup(self, lengths, batch=1, dtype=np.float32):
        """Make the first call at each input length fast: plan it, compile its pipelines and record it
        now, with one call on zeros per length (the driver's disk cache then keeps the compiled code
        for later processes: Mesa's shader cache, NVIDIA's). Returns self."""
        lengths = [lengths] if isinstance(lengths, (int, np.integer)) else list(lengths)
        c_in = self.weights.weight.shape[0]
        for n in lengths:
            self(np.zeros((as_int("batch", batch, 1), c_in, as_int("lengths", n, 1)), dtype=dtype))
        return self

    @tensor_io("x")
    def __call__(self, x, *, wait=True):
        if wait is True and self._replay is not None:      # the last shape again: replayed (calls.CallReplay)
            out = self._replay(x, self.weights)
            if out is not None:
                return out
        request = (self.algorithm, self.backend, self.device, self.max_workspace_bytes)
        sig = calls.signature("ConvTranspose1d", (x,), (self.key, wait))
        entry = calls.lookup(sig)
        if entry is None:
            empty = empty_batch(x, self.weights, tuple(self.hyper.values()), request, wait, self.storage)
            if empty is not None:
                return empty
            entry, x = _prepare(x, self.weights, tuple(self.hyper.values()), self.storage, self.epi, request, wait)
            calls.remember(sig, entry, entry[0].params.out_bytes())
        self.watch(entry[0])        # also on a hit: the entry may be another layer's of the same configuration
        out = _run(entry, x, self.weights, wait)
        self._replay = _replay_of(entry, x, self.weights, wait)
        return out


def asarray(x, device=None, dtype=None):
    """A DeviceArray holding x (a NumPy array or anything np.asarray takes; float32, or float16 when x
    is float16 or dtype="float16") on the Vulkan device `device` (default: the default device). A
    DeviceArray already there is returned as it is."""
    from .vulkan import arrays
    if isinstance(x, DeviceArray):
        if device is None or backends.device_info(device).index == x.dev.info.index:
            return x
        x = x.numpy()
    want = np.dtype(dtype) if dtype is not None else (F16 if input_dtype(x) == F16 else np.dtype(np.float32))
    if want not in arrays.DTYPES:
        raise TypeError(f"dtype must be float32 or float16, got {dtype!r}")
    host = as_float32("x", x) if want == np.float32 else np.ascontiguousarray(np.asarray(x), dtype=np.float16)
    be = backends.get("vulkan", device=device)
    return arrays.asarray(be.dev, host)


def stats(device=None, reset=False):
    """Per Vulkan device used in this process: queue submissions, fence waits, bytes uploaded and
    downloaded, dispatches, device-side copies, recorded sequences, buffers held, memory mode (and
    device time when timestamps are on); reset=True zeroes the counters after reading them."""
    from .vulkan import device as devmod
    devs = devmod.open_devices()
    if device is not None:
        idx = backends.device_info(device).index
        devs = [d for d in devs if d.info.index == idx]
    return {d.info.index: d.stats(reset) for d in devs}


# ------------------------------------------------------------------ matmul and col2im_1d
def _run_op(op_name, p, args, arrays, backend, device, wait, out_bytes, what):
    device, on_device = _device_of(arrays, backend, device)
    _check_wait(wait)
    check_host_memory(what, out_bytes)
    plan = planner.make_plan(op_name, p, "auto", backend, device)
    dev_out = on_device and calls.device_resident(plan, plan.schedule)
    out = calls.execute(plan, args, wait=wait, device_out=dev_out)
    if on_device and not dev_out and not isinstance(out, calls.Pending):
        out = _to_device(plan, out)
    return out


def _operand(name, a):
    if isinstance(a, DeviceArray):
        if a.dtype != np.float32:
            raise TypeError(f"{name} is a {a.dtype} DeviceArray; this op computes float32")
        return a
    return as_float32(name, a)


@tensor_io("a", "b")
def matmul(a, b, *, backend=None, device=None, wait=True):
    """a (M, K) or (B, M, K) times b (K, N) or (B, K, N) -> float32; a 2-D operand is broadcast
    over the other's batch."""
    a, b = _operand("a", a), _operand("b", b)
    if a.ndim not in (2, 3):
        raise ValueError(f"a must be 2-D (M, K) or 3-D (B, M, K); got shape {a.shape}")
    if b.ndim not in (2, 3):
        raise ValueError(f"b must be 2-D (K, N) or 3-D (B, K, N); got shape {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"inner dimensions differ: a has shape {a.shape}, b has shape {b.shape}")
    if a.ndim == 3 and b.ndim == 3 and a.shape[0] != b.shape[0]:
        raise ValueError(f"batch sizes differ: a has shape {a.shape}, b has shape {b.shape}")
    keep3 = a.ndim == 3 or b.ndim == 3
    batch = a.shape[0] if a.ndim == 3 else b.shape[0] if b.ndim == 3 else 1
    if 0 in (batch,) + a.shape[-2:] + b.shape[-1:]:      # as PyTorch: empty, or zeros (an empty sum over K)
        shape = (batch, a.shape[-2], b.shape[-1]) if keep3 else (a.shape[-2], b.shape[-1])
        return empty_result(shape, a if isinstance(a, DeviceArray) else b, backend=backend, wait=wait)
    a3 = a if a.ndim == 3 else a.reshape((1,) + a.shape)
    b3 = b if b.ndim == 3 else b.reshape((1,) + b.shape)
    p = MatmulParams(a3.shape[0], b3.shape[0], a3.shape[1], a3.shape[2], b3.shape[2])
    out = _run_op("matmul", p, {"a": a3, "b": b3}, (a, b), backend, device, wait,
                  FLOAT_BYTES * p.batch * p.m * p.n, "the result of matmul")
    if isinstance(out, calls.Pending):
        return out.then(lambda o: o if keep3 else o[0])
    return out if keep3 else (out.reshape(out.shape[1:]) if isinstance(out, DeviceArray) else out[0])


@tensor_io("col", "bias")
def col2im_1d(col, stride=1, padding=0, dilation=1, output_padding=0, bias=None, *, backend=None, device=None,
              wait=True):
    """The second half of the gemm algorithm, as a public op.

    col: (N, C, K, L_in) (or (C, K, L_in)): col[n, c, k, l] is what input position l contributes
    through kernel tap k to output channel c; it lands on output position
    t = l*stride - padding + k*dilation, and out[n, c, t] is the sum of everything landing on t
    (plus bias[c]). Returns (N, C, L_out) with L_out = (L_in-1)*stride - 2*padding +
    dilation*(K-1) + output_padding + 1.
    """
    col = _operand("col", col)
    stride, padding, output_padding, dilation, _ = check_hyper(stride, padding, output_padding, dilation, 1)
    if col.ndim not in (3, 4):
        raise ValueError(f"col must have shape (N, C, K, L) or (C, K, L); got shape {col.shape}")
    batched = col.ndim == 4
    col4 = col if batched else col.reshape((1,) + col.shape)
    if 0 in col4.shape[1:]:             # N == 0 alone is an empty batch (as PyTorch's fold)
        raise ValueError(f"col has an empty dimension: shape {col.shape}")
    n, c, k, l_in = col4.shape
    l_out = output_length(l_in, k, stride, padding, output_padding, dilation)
    if l_out <= 0:
        raise ValueError(f"output length {l_out} must be positive (L={l_in}, K={k}, stride={stride}, "
                         f"padding={padding}, dilation={dilation}, output_padding={output_padding})")
    bias = check_bias(bias, c, "C")
    if n == 0:
        return empty_result((0, c, l_out), col, backend=backend, wait=wait)
    p = Col2imParams(n, c, k, l_in, stride, padding, dilation, output_padding, bias is not None)
    out = _run_op("col2im_1d", p, {"col": col4, "bias": bias}, (col,), backend, device, wait,
                  FLOAT_BYTES * n * c * l_out, f"the output of col2im_1d (N={n}, C={c}, L_out={l_out})")
    if isinstance(out, calls.Pending):
        return out.then(lambda o: o if batched else o[0])
    return out if batched else (out.reshape(out.shape[1:]) if isinstance(out, DeviceArray) else out[0])
