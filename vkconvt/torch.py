"""PyTorch integration: run a model's ConvTranspose1d layers on a Vulkan device with vkconvt.

    import vkconvt.torch
    model = vkconvt.torch.convert(model)          # a copy whose nn.ConvTranspose1d layers use vkconvt
    with torch.inference_mode():
        audio = model(mel)
    model = vkconvt.torch.restore(model)          # back to PyTorch, bit-identical outputs

    layer = vkconvt.torch.ConvTranspose1d(512, 256, 16, stride=8, padding=4)   # a drop-in module
    layer = vkconvt.torch.ConvTranspose1d.from_torch(torch_layer)
    y = vkconvt.torch.conv_transpose1d(x, w, b, stride=8)   # torch.nn.functional.conv_transpose1d

Tensors stay on the CPU; vkconvt copies them to the Vulkan device and computes in float32 (the
result comes back in the input's floating dtype). A float16 model (model.half()) runs with
float16 storage: inputs, weights and the gemm columns stored as halves, float32 arithmetic, the
output rounded once to float16. `device=` is always the *Vulkan* device (an
index or a substring of its name); a PyTorch device there is refused.

Training works too: where autograd needs a gradient through a vkconvt layer (grad mode on and the
input, weight or bias requiring grad), the layer runs as a torch.autograd.Function whose backward
computes on vkconvt (vkconvt/torch_autograd.py; an output activation is then applied by PyTorch).
Inference under torch.inference_mode() or torch.no_grad() keeps the plain, fully fused forward.

Weights are kept on the device between calls. Every call compares the layer's current weight and
bias (weight norm and other parametrizations included: the effective weight) with the copy the
device holds, one pass over the weights, and uploads them again when they differ: load_state_dict,
in-place edits (with torch.no_grad(), through .data or .numpy()) and recomputed weights are all
noticed.
"""
import copy
import functools
import threading
import warnings

try:
    import torch
    from torch import nn
except ImportError as exc:
    raise ImportError("vkconvt.torch needs PyTorch, which is not installed here: pip install torch "
                      "(or pip install 'vkconvt[torch]')") from exc

import numpy as np

import vkconvt

from . import interop, torch_autograd

__all__ = ["convert", "restore", "is_converted", "ConvTranspose1d", "conv_transpose1d"]


def _check_config(device, algorithm, backend, max_workspace_bytes, activation=None, out_channels=1):
    """Validate the vkconvt options early (the layer constructor checks algorithm and friends);
    activation: the fused activation's keyword arguments (vkconvt.conv_transpose1d's)."""
    interop.check_vulkan_device("device", device)
    act = {k: (interop.unwrap(k, v) if k in ("alpha", "beta") and v is not None else v)
           for k, v in (activation or {}).items()}
    vkconvt.ConvTranspose1d(np.zeros((1, out_channels, 1), np.float32), algorithm=algorithm, backend=backend,
                            device=device, max_workspace_bytes=max_workspace_bytes, **act)
    return dict(algorithm=algorithm, backend=backend, device=device, max_workspace_bytes=max_workspace_bytes, **act)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", backend=None, device=None, max_workspace_bytes=None, storage=None):
    """torch.nn.functional.conv_transpose1d computed by vkconvt: CPU tensors in, a tensor out (in
    input's floating dtype; float16 input: float16 storage, see vkconvt.conv_transpose1d).
    Tuple hyper-parameters (stride=(2,)) are accepted like PyTorch."""
    interop.check_vulkan_device("device", device)
    if torch_autograd.needs_grad(input, weight, bias):
        hyper = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
        return torch_autograd.conv_transpose1d(input, weight, bias, hyper, dict(
            algorithm=algorithm, backend=backend, device=device, max_workspace_bytes=max_workspace_bytes))
    io = interop.TensorIO()
    x, w, b = io.unwrap("input", input), io.unwrap("weight", weight), io.unwrap("bias", bias)
    out = vkconvt.conv_transpose1d(x, w, b, stride, padding, output_padding, groups, dilation, algorithm=algorithm,
                                   backend=backend, device=device, max_workspace_bytes=max_workspace_bytes,
                                   storage=storage)
    return io.wrap(out)


class _State:
    """A converted layer's vkconvt options and its device-side layers (one per hyper-parameter set:
    output_size can change output_padding from call to call), with the float32 weight and bias the
    device holds, to notice when the module's weights change."""

    def __init__(self, algorithm="auto", backend=None, device=None, max_workspace_bytes=None, **activation):
        self.config = dict(algorithm=algorithm, backend=backend, device=device,
                           max_workspace_bytes=max_workspace_bytes, **activation)
        self._reset()

    def _reset(self):
        self.layers, self.weight, self.bias = {}, None, None
        self.lock = threading.Lock()

    # copies and pickles carry the options only; device-side state is rebuilt on the next call
    def __getstate__(self):
        return {"config": dict(self.config)}

    def __setstate__(self, state):
        self.config = state["config"]
        self._reset()

    def layer(self, module, weight, bias, output_padding):
        w = interop.unwrap("weight", weight)
        b = None if bias is None else interop.unwrap("bias", bias)
        hyper = dict(stride=_one(module.stride), padding=_one(module.padding), output_padding=output_padding,
                     groups=module.groups, dilation=_one(module.dilation))
        # a float16 module (model.half()) stores its weights, inputs and columns as halves
        storage = "float16" if w.dtype == np.float16 else "float32"
        key = tuple(hyper.values()) + (storage,)
        with self.lock:
            if not (_same(self.weight, w) and _same(self.bias, b)):
                self.layers.clear()
                self.weight = np.array(w, dtype=np.float32)
                self.bias = None if b is None else np.array(b, dtype=np.float32)
            layer = self.layers.get(key)
            if layer is None:
                k, h = self.weight.shape[-1], hyper
                if vkconvt.output_length(1, k, h["stride"], h["padding"], h["output_padding"], h["dilation"]) > 0:
                    layer = vkconvt.ConvTranspose1d(self.weight, self.bias, **hyper, storage=storage, **self.config)
                else:   # vkconvt.ConvTranspose1d checks its hyper-parameters with a 1-long input and would refuse
                    layer = functools.partial(_conv, weight=self.weight, bias=self.bias, **hyper, storage=storage,
                                              **self.config)
                self.layers[key] = layer
            return layer


def _one(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _conv(x, weight, bias, **kwargs):
    return vkconvt.conv_transpose1d(x, weight, bias, **kwargs)


def _same(held, current):
    if held is None or current is None:
        return held is None and current is None
    current = np.asarray(current)
    return held.shape == current.shape and np.array_equal(held, current.astype(np.float32, copy=False))


def _vk_forward(module, input, output_size=None):
    """nn.ConvTranspose1d.forward, computed by vkconvt with the module's current (effective) weight."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__} (for NumPy arrays use "
                        f"vkconvt.conv_transpose1d)")
    if module.padding_mode != "zeros":
        raise ValueError("Only `zeros` padding mode is supported for ConvTranspose1d")
    weight, bias = module.weight, module.bias   # weight norm: the hook's or the parametrization's result
    output_padding = module._output_padding(input, output_size, module.stride, module.padding,
                                            module.kernel_size, 1, module.dilation)
    if torch_autograd.needs_grad(input, weight, bias):
        hyper = dict(stride=_one(module.stride), padding=_one(module.padding), output_padding=output_padding[0],
                     groups=module.groups, dilation=_one(module.dilation))
        return torch_autograd.conv_transpose1d(input, weight, bias, hyper, module._vkconvt.config, kept=lambda w, b: (
            module._vkconvt.layer(module, w, b, output_padding[0])))
    x = interop.unwrap("input", input)
    layer = module._vkconvt.layer(module, weight, bias, output_padding[0])
    return interop.wrap(layer(x), input)


class ConvTranspose1d(nn.ConvTranspose1d):
    """torch.nn.ConvTranspose1d computed by vkconvt: same constructor, attributes, parameters and
    state_dict (it loads into and from nn.ConvTranspose1d), forward(input, output_size=None).

    device: the Vulkan device that computes (an index or a substring of its name; None: the
        default). Parameters always live on the CPU; a PyTorch device here (torch.device('cuda'),
        'cpu', ...) is refused with a ValueError.
    dtype: the parameters' dtype (default float32); vkconvt computes in float32.
    algorithm, backend, max_workspace_bytes (keyword-only): as for vkconvt.conv_transpose1d.
    activation, negative_slope, alpha, beta, alpha_logscale, input_activation, input_negative_slope
        (keyword-only): fused activations, as for vkconvt.conv_transpose1d (the module then computes
        activation(conv_transpose1d(input_activation(x))), no longer nn.ConvTranspose1d alone).

    The weights are kept on the Vulkan device and uploaded again whenever they change.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None, *, algorithm="auto",
                 backend=None, max_workspace_bytes=None, activation=None, negative_slope=0.01, alpha=None,
                 beta=None, alpha_logscale=False, input_activation=None, input_negative_slope=0.01):
        act = dict(activation=activation, negative_slope=negative_slope, alpha=alpha, beta=beta,
                   alpha_logscale=alpha_logscale, input_activation=input_activation,
                   input_negative_slope=input_negative_slope)
        config = _check_config(device, algorithm, backend, max_workspace_bytes, act, out_channels)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                         dilation, padding_mode, device="cpu", dtype=dtype)
        self._vkconvt = _State(**config)

    def forward(self, input, output_size=None):
        return _vk_forward(self, input, output_size)

    def extra_repr(self):
        cfg = ", ".join(f"{k}={v!r}" for k, v in self._vkconvt.config.items() if v is not None)
        return f"{super().extra_repr()}, vkconvt({cfg})"

    @classmethod
    def from_torch(cls, module, *, device=None, algorithm="auto", backend=None, max_workspace_bytes=None):
        """A vkconvt ConvTranspose1d with module's hyper-parameters and its effective weight (weight
        norm folded in; hooks and parametrizations are not carried over: to keep them, use
        convert())."""
        if not isinstance(module, nn.ConvTranspose1d):
            raise TypeError(f"module must be a torch.nn.ConvTranspose1d, got {type(module).__name__}")
        with torch.no_grad():
            weight = _effective_weight(module)
            new = cls(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                      module.output_padding, module.groups, module.bias is not None, module.dilation,
                      module.padding_mode, device=device, dtype=weight.dtype, algorithm=algorithm, backend=backend,
                      max_workspace_bytes=max_workspace_bytes)
            new.weight.copy_(weight)
            if module.bias is not None:
                new.bias.copy_(module.bias)
        return new


def _effective_weight(module):
    """The weight forward would use: an old-style weight_norm hook recomputes it (module.weight may
    be stale until the next forward); a parametrized weight computes itself."""
    for hook in module._forward_pre_hooks.values():
        if getattr(hook, "name", None) == "weight" and hasattr(hook, "compute_weight"):
            return hook.compute_weight(module)
    return module.weight


# ---------------------------------------------------------------- convert / restore
class _ConvertedForward:
    """The forward of a converted module whose class keeps nn.ConvTranspose1d.forward: an instance
    attribute, so the class, hooks, parametrizations and state_dict are untouched (restore deletes it)."""

    def __init__(self, module):
        self.module = module

    def __call__(self, input, output_size=None):
        return _vk_forward(self.module, input, output_size)


class _VkconvtConvTranspose1d(nn.ConvTranspose1d):
    """Mixed in behind a subclass that overrides forward: its super().forward(...) lands here."""

    def forward(self, input, output_size=None):
        return _vk_forward(self, input, output_size)


_swapped = {}


def _swapped_class(cls):
    """cls with _VkconvtConvTranspose1d right behind it in the MRO (same name and module)."""
    if cls not in _swapped:
        _swapped[cls] = type(cls.__name__, (cls, _VkconvtConvTranspose1d),
                             {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                              "_vkconvt_original_class": cls})
    return _swapped[cls]


def is_converted(module):
    """True for a module that convert() changed (not for the drop-in vkconvt.torch.ConvTranspose1d)."""
    return isinstance(module.__dict__.get("forward"), _ConvertedForward) or "_vkconvt_original_class" in vars(type(module))


def _copy(model):
    # Old-style weight_norm leaves a computed (non-leaf) weight tensor on the module, which
    # deepcopy refuses; copy it detached (the hook recomputes it at the next forward).
    memo = {}
    for m in model.modules():
        for value in vars(m).values():
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)


def convert(model, *, device=None, algorithm="auto", backend=None, max_workspace_bytes=None, inplace=False):
    """The model with every nn.ConvTranspose1d (subclasses too) computed by vkconvt.

    inplace=False (default) converts a deep copy and leaves model alone. Weight normalisation
    (torch.nn.utils.weight_norm hooks or torch.nn.utils.parametrizations.weight_norm) and other
    parametrizations keep working: vkconvt computes with the effective weight. Modules keep their
    class, hooks and state_dict: a converted module gets an instance attribute `forward`; a subclass
    that overrides forward gets a class of the same name with vkconvt behind it, so its
    super().forward(...) runs on vkconvt (one that calls F.conv_transpose1d itself stays PyTorch).
    A whole converted model cannot be pickled where a subclass was converted; restore() first, or
    save its state_dict (unchanged).
    device, algorithm, backend, max_workspace_bytes: as for vkconvt.conv_transpose1d.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    config = _check_config(device, algorithm, backend, max_workspace_bytes)
    if not inplace:
        model = _copy(model)
    found = 0
    for m in model.modules():
        if not isinstance(m, nn.ConvTranspose1d):
            continue
        found += 1
        if isinstance(m, ConvTranspose1d) or is_converted(m):
            continue
        if m.padding_mode != "zeros":
            raise ValueError(f"Only `zeros` padding mode is supported for ConvTranspose1d; {m} has "
                             f"padding_mode={m.padding_mode!r}")
        m._vkconvt = _State(**config)
        if type(m).forward is nn.ConvTranspose1d.forward:
            m.forward = _ConvertedForward(m)
        else:
            m.__class__ = _swapped_class(type(m))
    if not found:
        warnings.warn(f"vkconvt.torch.convert: {type(model).__name__} has no nn.ConvTranspose1d to convert",
                      stacklevel=2)
    return model


def restore(model):
    """Undo convert() in place: every converted module computes with PyTorch again. Returns model."""
    for m in model.modules():
        if not is_converted(m):
            continue
        if isinstance(m.__dict__.get("forward"), _ConvertedForward):
            del m.forward
        original = vars(type(m)).get("_vkconvt_original_class")
        if original is not None:
            m.__class__ = original
        del m._vkconvt
    return model
