"""Autograd through vkconvt's transposed convolution: a torch.autograd.Function whose forward and
backward both run on vkconvt (vkconvt.conv_transpose1d and vkconvt.conv_transpose1d_backward).

    y = conv_transpose1d(input, weight, bias, hyper, config)     # differentiable in input, weight, bias

vkconvt.torch calls this when grad mode is on and a tensor requires grad (needs_grad); otherwise
it keeps its plain forward. The chain rule of the fused activations:
  * input_activation (leaky ReLU on x as the kernels load it) stays fused: the backward multiplies
    grad_input by its derivative (1 for x > 0, else the slope, as PyTorch's leaky_relu_backward)
    and computes grad_weight from the activated x;
  * an output activation is applied by PyTorch to the Function's result (torch ops, so PyTorch's
    autograd differentiates it); only a module that trains pays for that unfused pass.
Weight norm and other parametrizations need nothing here: the module's weight is the
parametrization's output, and PyTorch's autograd carries its gradient on to the parameters.

Dtypes: float32 and float16 (float16 storage) as the forward; float64 computes exactly on the
NumPy backend (storage='float64': what torch.autograd.gradcheck needs), else in float32 with the
gradients cast back; bfloat16 computes in float32. Double backward (create_graph=True) is refused
with a clear error. Tensors must be on the CPU (vkconvt copies them to the Vulkan device itself);
a model moved to CUDA or the meta device gets an error saying so.

backward_arrays() is the backward alone (NumPy in, NumPy out), for an op registered with
torch.library (register_autograd) as well as for the Function here.
"""
import numpy as np
import torch

import vkconvt

from . import activations, backends

__all__ = ["needs_grad", "conv_transpose1d", "backward_arrays"]
OUT_ACT = ("activation", "negative_slope", "alpha", "beta", "alpha_logscale")
ACT_DEFAULTS = dict(activation=None, negative_slope=0.01, alpha=None, beta=None, alpha_logscale=False)


def needs_grad(*tensors):
    """Whether autograd needs a gradient through a call on these tensors."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _check_device(name, t):
    if t is not None and t.device.type != "cpu":
        what = "meta tensors hold no data to compute with" if t.device.type == "meta" else \
            "vkconvt takes CPU tensors and copies them to the Vulkan device itself"
        raise ValueError(f"{name} is on device {t.device}: {what}. A module converted by vkconvt.torch computes on "
                         f"the Vulkan device from CPU tensors: keep the model on the CPU (model.cpu()), or "
                         f"vkconvt.torch.restore(model) to compute with PyTorch on {t.device}")


def _storage(dtype, backend):
    """(storage, NumPy dtype computed with): float16 and float32 as the forward; float64 exactly on
    the NumPy backend, else float32 (as vkconvt.torch's forward)."""
    if dtype == torch.float16:
        return "float16", torch.float16
    if dtype == torch.float64 and backends.resolve_name(backend) == "numpy":
        return "float64", torch.float64
    return "float32", torch.float32


def _array(t, dtype):
    return None if t is None else t.detach().to(dtype).contiguous().numpy()


class _ConvTranspose1d(torch.autograd.Function):
    """conv_transpose1d(input_activation(x), weight, bias) on vkconvt, forward and backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, hyper, config, kept):
        storage, dt = _storage(x.dtype, config.get("backend"))
        xn, wn, bn = _array(x, dt), _array(weight, dt), _array(bias, torch.float64 if dt == torch.float64 else
                                                                torch.float32)
        if kept is not None and storage != "float64":
            y = kept(weight, bias)(xn)          # the module's layer: its weights kept on the device
        else:
            y = vkconvt.conv_transpose1d(xn, wn, bn, **hyper, **config, storage=storage)
        ctx.save_for_backward(x, weight)
        ctx.hyper, ctx.config, ctx.has_bias = hyper, config, bias is not None
        ctx.bias_dtype = None if bias is None else bias.dtype
        return torch.from_numpy(np.asarray(y)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        if torch.is_grad_enabled():
            raise RuntimeError("vkconvt: double backward (create_graph=True) through a layer computed by vkconvt is "
                               "not supported; compute higher-order gradients with PyTorch's own layer "
                               "(vkconvt.torch.restore(model))")
        x, weight = ctx.saved_tensors
        mask = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2] and ctx.has_bias)
        gx, gw, gb = backward_arrays(grad_out, x, weight, ctx.hyper, ctx.config, mask)
        return (None if gx is None else gx.to(x.dtype), None if gw is None else gw.to(weight.dtype),
                None if gb is None else gb.to(ctx.bias_dtype), None, None, None)


def backward_arrays(grad_out, x, weight, hyper, config, mask):
    """(grad_input, grad_weight, grad_bias) as tensors (None where mask says no), computed by
    vkconvt.conv_transpose1d_backward from grad_out, the saved input and weight, the
    hyper-parameters (stride, padding, output_padding, groups, dilation) and the vkconvt options
    (algorithm, backend, device, max_workspace_bytes, input_activation, input_negative_slope)."""
    storage, dt = _storage(x.dtype, config.get("backend"))
    opts = {k: config[k] for k in ("algorithm", "backend", "device", "max_workspace_bytes", "input_activation",
                                   "input_negative_slope") if k in config}
    out = vkconvt.conv_transpose1d_backward(_array(grad_out, dt), _array(x, dt), _array(weight, dt), **hyper,
                                            output_mask=tuple(bool(m) for m in mask), storage=storage, **opts)
    return tuple(None if g is None else torch.from_numpy(np.asarray(g)) for g in out)


def _output_activation(z, act):
    """The output activation in PyTorch ops (PyTorch's autograd differentiates it); the same
    definitions as vkconvt/activations.py."""
    name = act["activation"]
    if name is None:
        return z
    if name == "relu":
        return torch.relu(z)
    if name == "leaky_relu":
        return torch.nn.functional.leaky_relu(z, float(np.float32(act["negative_slope"])))
    if name == "tanh":
        return torch.tanh(z)
    alpha = None if act["alpha"] is None else np.asarray(act["alpha"])
    beta = None if act["beta"] is None else np.asarray(act["beta"])
    _, params = activations.check(z.shape[-2], name, act["negative_slope"], alpha, beta, act["alpha_logscale"])
    a, inv = (torch.from_numpy(v).to(z.dtype).reshape(-1, 1) for v in params)
    return z + torch.sin(a * z) ** 2 * inv


def conv_transpose1d(input, weight, bias, hyper, config, kept=None):
    """torch.nn.functional.conv_transpose1d(input, weight, bias, **hyper) with vkconvt's options
    `config` (vkconvt.conv_transpose1d's keywords; fused activations included), differentiable.
    kept: (weight, bias) -> the module's vkconvt layer, used for the forward when no output
    activation has to stay unfused."""
    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        _check_device(name, t)
    if not input.is_floating_point():
        raise TypeError(f"input has dtype {input.dtype}; vkconvt computes floating tensors (pass input.float())")
    act = {k: config.get(k, ACT_DEFAULTS[k]) for k in OUT_ACT}
    conv_config = {k: v for k, v in config.items() if k not in OUT_ACT}
    z = _ConvTranspose1d.apply(input, weight, bias, dict(hyper), conv_config, None if act["activation"] else kept)
    return _output_activation(z, act)
