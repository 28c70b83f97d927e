"""Autograd through vkconvt's transposed convolution: the backward formula of the PyTorch op
vkconvt::conv_transpose1d (vkconvt/torch/_op.py registers it with torch.library's
register_autograd), computed on vkconvt by vkconvt.conv_transpose1d_backward inside a second
registered op, vkconvt::conv_transpose1d_backward, with a fake implementation of its own, so that
torch.compile (AOT autograd) traces training graphs as it traces inference ones.

    setup_context(ctx, hyper, config, input, weight, bias)   saves what the backward needs
    backward(ctx, grad_out)              -> (grad_input, grad_weight, grad_bias) tensors
    output_activation(z, ...)            an output activation in PyTorch ops (differentiable)

The chain rule of the fused activations:
  * input_activation (leaky ReLU on x as the kernels load it) stays fused in the op: the backward
    multiplies grad_input by its derivative (1 for x > 0, else the slope, as PyTorch's
    leaky_relu_backward) and computes grad_weight from the activated x;
  * an output activation has no gradient inside the op (its derivative needs the values before
    it): vkconvt.torch calls the op without it where grad is needed and applies it with
    output_activation, so PyTorch's autograd differentiates it; the op called directly with an
    output activation under autograd refuses clearly.
Weight norm and other parametrizations need nothing here: the module's weight is the
parametrization's output, and PyTorch's autograd carries its gradient on to the parameters.

Dtypes: float32 and float16 (float16 storage) as the forward; float64 computes exactly on the
NumPy backend (storage='float64': what torch.autograd.gradcheck needs), else in float32 with the
gradients cast back; bfloat16 computes in float32. Double backward (create_graph=True) is refused
with a clear error.
"""
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

import vkconvt

from . import activations, backends

__all__ = ["needs_grad", "storage_of", "setup_context", "backward", "output_activation",
           "conv_transpose1d_backward"]
BACKWARD_OPTIONS = ("algorithm", "backend", "device", "max_workspace_bytes", "input_activation",
                    "input_negative_slope")


def needs_grad(*tensors):
    """Whether autograd needs a gradient through a call on these tensors."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def storage_of(dtype, backend, storage=None):
    """(storage, torch dtype computed with) for tensors of `dtype`: float16 and float32 as the forward;
    float64 exactly on the NumPy backend (float64 storage), else float32."""
    if storage is not None:
        return storage, {"float16": torch.float16, "float64": torch.float64}.get(storage, torch.float32)
    if dtype == torch.float16:
        return "float16", torch.float16
    if dtype == torch.float64 and backends.resolve_name(backend) == "numpy":
        return "float64", torch.float64
    return "float32", torch.float32


def array(t, dtype):
    """A tensor as a contiguous NumPy array of `dtype` (None stays None)."""
    return None if t is None else t.detach().to(dtype).contiguous().numpy()


def setup_context(ctx, hyper, config, input, weight, bias):
    """What the backward needs: the input and weight, the hyper-parameters (stride, padding,
    output_padding, groups, dilation) and the op's vkconvt options (a dict)."""
    if config.get("activation") is not None:
        raise RuntimeError(f"vkconvt::conv_transpose1d with the fused output activation {config['activation']!r} has no "
                           "gradient (its derivative needs the values before it): call it without the activation and "
                           "apply that in PyTorch (vkconvt.torch's modules do so when grad is needed)")
    ctx.save_for_backward(input, weight)
    ctx.hyper = hyper
    ctx.config = {k: config[k] for k in BACKWARD_OPTIONS if k in config}
    ctx.storage = config.get("storage")
    ctx.has_bias, ctx.bias_dtype = bias is not None, None if bias is None else bias.dtype


def backward(ctx, grad_out):
    """(grad_input, grad_weight, grad_bias) of the op, each None where autograd does not ask."""
    if torch.is_grad_enabled() and not _tracing():
        raise RuntimeError("vkconvt: double backward (create_graph=True) through a layer computed by vkconvt is "
                           "not supported; compute higher-order gradients with PyTorch's own layer "
                           "(vkconvt.torch.restore(model))")
    x, weight = ctx.saved_tensors
    mask = [bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]), bool(ctx.needs_input_grad[2] and ctx.has_bias)]
    cfg = ctx.config
    device = cfg.get("device")
    grads = torch.ops.vkconvt.conv_transpose1d_backward(
        grad_out, x, weight, *ctx.hyper.values(), mask, cfg.get("algorithm", "auto"), cfg.get("backend"),
        None if device is None else str(device), cfg.get("max_workspace_bytes"), ctx.storage,
        cfg.get("input_activation"), float(cfg.get("input_negative_slope", 0.01)))
    return tuple(g.to(dtype) if m else None for g, m, dtype in zip(grads, mask, (x.dtype, weight.dtype, ctx.bias_dtype)))


def _tracing():
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(compiling and compiling())


@torch.library.custom_op("vkconvt::conv_transpose1d_backward", mutates_args=())
def conv_transpose1d_backward(grad_out: Tensor, input: Tensor, weight: Tensor, stride: int, padding: int,
                              output_padding: int, groups: int, dilation: int, output_mask: List[bool],
                              algorithm: str, backend: Optional[str], device: Optional[str],
                              max_workspace_bytes: Optional[int], storage: Optional[str],
                              input_activation: Optional[str], input_negative_slope: float
                              ) -> Tuple[Tensor, Tensor, Tensor]:
    """vkconvt.conv_transpose1d_backward as a PyTorch op: (grad_input, grad_weight, grad_bias), each
    empty where output_mask says no (an op returns tensors only)."""
    storage, dt = storage_of(input.dtype, backend, storage)
    if device is not None and device.strip().isdigit():
        device = int(device)
    grads = vkconvt.conv_transpose1d_backward(
        array(grad_out, dt), array(input, dt), array(weight, dt), stride, padding, output_padding, groups, dilation,
        output_mask=tuple(output_mask), storage=storage, algorithm=algorithm, backend=backend, device=device,
        max_workspace_bytes=max_workspace_bytes, input_activation=input_activation,
        input_negative_slope=input_negative_slope)
    return tuple(torch.empty(0, dtype=dtype) if g is None else torch.from_numpy(np.asarray(g)).to(dtype)
                 for g, dtype in zip(grads, (input.dtype, weight.dtype, input.dtype)))


@conv_transpose1d_backward.register_fake
def _fake(grad_out, input, weight, stride, padding, output_padding, groups, dilation, output_mask, *options):
    shapes = (input.shape, weight.shape, (grad_out.shape[-2],))
    return tuple(input.new_empty(shape if m else (0,), dtype=t.dtype)
                 for shape, m, t in zip(shapes, output_mask, (input, weight, input)))


def output_activation(z, activation, negative_slope=0.01, alpha=None, beta=None, alpha_logscale=False):
    """The output activation in PyTorch ops, with vkconvt/activations.py's definitions (snakes:
    alpha and beta per channel, as float32 arrays or tensors)."""
    if activation is None:
        return z
    if activation == "relu":
        return torch.relu(z)
    if activation == "leaky_relu":
        return torch.nn.functional.leaky_relu(z, float(np.float32(negative_slope)))
    if activation == "tanh":
        return torch.tanh(z)
    arr = [None if v is None else np.asarray(v.detach() if isinstance(v, torch.Tensor) else v) for v in (alpha, beta)]
    _, params = activations.check(z.shape[-2], activation, negative_slope, arr[0], arr[1], alpha_logscale)
    a, inv = (torch.from_numpy(v).to(z.dtype).reshape(-1, 1) for v in params)
    return z + torch.sin(a * z) ** 2 * inv
