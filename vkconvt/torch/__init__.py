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

Every converted layer, the drop-in module and conv_transpose1d call one registered PyTorch op,
torch.ops.vkconvt.conv_transpose1d (vkconvt/torch/_op.py), which has a fake implementation: a
converted model works under torch.compile (fullgraph too), torch.jit.trace and torch.export.
torch.jit.script is refused with a RuntimeError that says what to use instead. print(model)
shows converted layers ("..., vkconvt: device=default, algorithm=auto"); is_converted(module)
tells them apart.

Training works too: the op's backward runs on vkconvt (grad_input by conv1d, grad_weight by the
weight-gradient kernels; vkconvt/torch_autograd.py). Where grad is needed, a fused output
activation is applied by PyTorch after the op (so that autograd differentiates it); inference
under torch.inference_mode() or torch.no_grad() keeps every activation fused.

Weights are kept on the device between calls. Every call compares the layer's current weight and
bias (weight norm and other parametrizations included: the effective weight) with the copy the
device holds, one pass over the weights, and uploads them again when they differ: load_state_dict,
in-place edits (with torch.no_grad(), through .data or .numpy()) and recomputed weights are all
noticed.
"""
import copy
import functools
import warnings

try:
    import torch
    from torch import nn
except ImportError as exc:
    raise ImportError("vkconvt.torch needs PyTorch, which is not installed here: pip install torch "
                      "(or pip install 'vkconvt[torch]')") from exc

import numpy as np

import vkconvt

from .. import interop, planner, torch_autograd
from ..params import check_algorithm, check_hyper, check_storage
from . import _chain, _op
from ._op import refresh

__all__ = ["convert", "restore", "refresh", "is_converted", "ConvTranspose1d", "conv_transpose1d"]


def _options(device, algorithm, backend, max_workspace_bytes):
    """The options every call checks before it reaches the op (the budget as an int)."""
    interop.check_vulkan_device("device", device)
    if isinstance(device, bool) or (device is not None and not isinstance(device, (int, str))):
        raise TypeError(f"device must be an index or a substring of a device name, got {device!r}")
    check_algorithm(algorithm)
    if max_workspace_bytes is not None:
        max_workspace_bytes = planner.check_budget(max_workspace_bytes)
    return dict(algorithm=algorithm, backend=backend, device=device, max_workspace_bytes=max_workspace_bytes)


def _check_config(device, algorithm, backend, max_workspace_bytes, activation=None, out_channels=1):
    """Validate a module's vkconvt options when it is made (a vkconvt layer checks backend, device
    and activations); activation: the fused activation's keyword arguments."""
    config = _options(device, algorithm, backend, max_workspace_bytes)
    act = {k: (interop.unwrap(k, v) if k in ("alpha", "beta") and v is not None else v)
           for k, v in (activation or {}).items()}
    vkconvt.ConvTranspose1d(np.zeros((1, out_channels, 1), np.float32), **config, **act)
    return dict(config, **act)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", backend=None, device=None, max_workspace_bytes=None, storage=None):
    """torch.nn.functional.conv_transpose1d computed by vkconvt (the op vkconvt::conv_transpose1d):
    CPU tensors in, a tensor out in input's dtype (float16: float16 storage, see
    vkconvt.conv_transpose1d). Tuple hyper-parameters (stride=(2,)) are accepted like PyTorch;
    anything but tensors for input, weight and bias is refused, as PyTorch refuses it (NumPy
    arrays: use vkconvt.conv_transpose1d)."""
    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        if t is not None and not isinstance(t, torch.Tensor) or t is None and name != "bias":
            raise TypeError(f"conv_transpose1d(): argument '{name}' must be Tensor, not {type(t).__name__} (for NumPy "
                            f"arrays use vkconvt.conv_transpose1d)")
        if t is not None:
            interop.check_tensor(name, t, autograd=True)
    stride, padding, output_padding, dilation, groups = check_hyper(stride, padding, output_padding, dilation, groups)
    config = _options(device, algorithm, backend, max_workspace_bytes)
    if storage is not None:
        check_storage(storage)
    return _op.call(input, weight, bias, stride, padding, output_padding, groups, dilation,
                    _op.op_options(dict(config, storage=storage)))


def _vk_forward(module, input, output_size=None):
    """nn.ConvTranspose1d.forward, computed by vkconvt with the module's current (effective) weight."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__} (for NumPy arrays use "
                        f"vkconvt.conv_transpose1d)")
    if module.padding_mode != "zeros":
        raise ValueError("Only `zeros` padding mode is supported for ConvTranspose1d")
    weight, bias = module.weight, module.bias   # weight norm: the hook's or the parametrization's result
    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        if t is not None:
            interop.check_tensor(name, t, autograd=True)
    output_padding = module._output_padding(input, output_size, module.stride, module.padding,
                                            module.kernel_size, 1, module.dilation)
    kept = module._vkconvt
    options = kept.options
    if "_vkconvt_alpha" in module._buffers:     # the drop-in's snake parameters
        options = _op.with_snake(options, module._vkconvt_alpha, module._vkconvt_beta)
    act = {}
    if torch_autograd.needs_grad(input, weight, bias):   # the output activation in PyTorch, differentiable
        options, act = _op.without_output_activation(options)
    out = _op.call(input, weight, bias, module.stride[0], module.padding[0], output_padding[0], module.groups,
                   module.dilation[0], options, kept.handle)
    return torch_autograd.output_activation(out, **act) if act else out


def _describe(module):
    """What a converted or drop-in module's repr adds: 'vkconvt: device=default, algorithm=auto'."""
    cfg = module._vkconvt.config
    parts = [f"device={'default' if cfg['device'] is None else cfg['device']}", f"algorithm={cfg['algorithm']}"]
    parts += [f"{k}={cfg[k]}" for k in ("backend", "max_workspace_bytes", "activation", "input_activation")
              if cfg.get(k) is not None]
    return "vkconvt: " + ", ".join(parts)


def _refuse_script(module):
    raise RuntimeError(
        f"torch.jit.script cannot compile a {type(module).__name__} computed by vkconvt (its forward is Python that "
        f"TorchScript does not take). Use torch.jit.trace(model, example_inputs), torch.export.export or "
        f"torch.compile instead: they record the op vkconvt::conv_transpose1d. Or script the model before "
        f"vkconvt.torch.convert(), or after vkconvt.torch.restore().")


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
        self._vkconvt = _op.KeptLayers(**config).attach(self)
        if activation in ("snake", "snakebeta"):    # buffers, so that export and .to() see them
            for name in ("alpha", "beta"):
                value = config[name]
                self.register_buffer(f"_vkconvt_{name}", None if value is None else torch.as_tensor(value),
                                     persistent=False)

    def warmup(self, lengths, batch=1):
        """Compile and record the first call at each input length now (one call on zeros each, under
        torch.no_grad()); see vkconvt.ConvTranspose1d.warmup. Returns self."""
        lengths = [lengths] if isinstance(lengths, int) else list(lengths)
        with torch.no_grad():
            for n in lengths:
                self(torch.zeros(batch, self.in_channels, n, dtype=self.weight.dtype))
        return self

    def forward(self, input, output_size=None):
        return _vk_forward(self, input, output_size)

    def extra_repr(self):
        return f"{super().extra_repr()}, {_describe(self)}"

    def __prepare_scriptable__(self):
        _refuse_script(self)

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
class _ConvertedForward(functools.partial):
    """The forward of a converted module whose class keeps nn.ConvTranspose1d.forward:
    _vk_forward bound to the module, an instance attribute, so the class, hooks, parametrizations
    and state_dict are untouched (restore deletes it, and the two below). A functools.partial:
    torch.export reads a partial's function like a method's."""


class _ConvertedRepr(functools.partial):
    """extra_repr of a converted module."""


class _ConvertedScript(functools.partial):
    """__prepare_scriptable__ of a converted module (torch.jit.script calls it first)."""


def _converted_repr(module):
    return f"{nn.ConvTranspose1d.extra_repr(module)}, {_describe(module)}"


_INSTANCE = {"forward": _ConvertedForward, "extra_repr": _ConvertedRepr, "__prepare_scriptable__": _ConvertedScript}


def _instance_attributes(module):
    return {"forward": _ConvertedForward(_vk_forward, module), "extra_repr": _ConvertedRepr(_converted_repr, module),
            "__prepare_scriptable__": _ConvertedScript(_refuse_script, module)}


class _VkconvtConvTranspose1d(nn.ConvTranspose1d):
    """Mixed in behind a subclass that overrides forward: its super().forward(...) lands here."""

    def forward(self, input, output_size=None):
        return _vk_forward(self, input, output_size)

    def __prepare_scriptable__(self):
        _refuse_script(self)


_swapped = {}


def _swapped_class(cls):
    """cls with _VkconvtConvTranspose1d right behind it in the MRO (same name and module)."""
    if cls not in _swapped:
        _swapped[cls] = type(cls.__name__, (cls, _VkconvtConvTranspose1d),
                             {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                              "_vkconvt_original_class": cls,
                              "extra_repr": lambda m: f"{cls.extra_repr(m)}, {_describe(m)}"})
    return _swapped[cls]


def is_converted(module):
    """True for a module that convert() changed; False for others, the drop-in
    vkconvt.torch.ConvTranspose1d included (which is always computed by vkconvt), and after
    restore()."""
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


def convert(model, *, device=None, algorithm="auto", backend=None, max_workspace_bytes=None, inplace=False,
            warmup=None):
    """The model with every nn.ConvTranspose1d (subclasses too) computed by vkconvt.

    inplace=False (default) converts a deep copy and leaves model alone. Weight normalisation
    (torch.nn.utils.weight_norm hooks or torch.nn.utils.parametrizations.weight_norm) and other
    parametrizations keep working: vkconvt computes with the effective weight. Modules keep their
    class, hooks and state_dict: a converted module gets instance attributes `forward`, `extra_repr`
    (print(model) shows "vkconvt: device=..., algorithm=...") and `__prepare_scriptable__`
    (torch.jit.script's refusal); a subclass that overrides forward gets a class of the same name
    with vkconvt behind it, so its
    super().forward(...) runs on vkconvt (one that calls F.conv_transpose1d itself stays PyTorch).
    A whole converted model cannot be pickled where a subclass was converted; restore() first, or
    save its state_dict (unchanged).
    device, algorithm, backend, max_workspace_bytes: as for vkconvt.conv_transpose1d.
    Converted layers that follow each other in an nn.Sequential keep their activations on the Vulkan
    device in eager inference (vkconvt/torch/_chain.py: only where nothing else reads them in between).
    warmup: example inputs (a tensor, or a tuple of the model's positional arguments): the converted
    model runs them once under torch.no_grad(), so every converted layer compiles its pipelines and
    records its call for those lengths now rather than at its first real call (see the README:
    first-call time).
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
        m._vkconvt = _op.KeptLayers(**config).attach(m)
        if type(m).forward is nn.ConvTranspose1d.forward:
            for name, value in _instance_attributes(m).items():
                setattr(m, name, value)
        else:
            m.__class__ = _swapped_class(type(m))
    if not found:
        warnings.warn(f"vkconvt.torch.convert: {type(model).__name__} has no nn.ConvTranspose1d to convert",
                      stacklevel=2)
    _chain.attach(model)
    if warmup is not None:
        with torch.no_grad():
            model(*(warmup if isinstance(warmup, tuple) else (warmup,)))
    return model


def restore(model):
    """Undo convert() in place: every converted module computes with PyTorch again. Returns model."""
    _chain.detach(model)
    for m in model.modules():
        if not is_converted(m):
            continue
        for name, kind in _INSTANCE.items():
            if isinstance(m.__dict__.get(name), kind):
                delattr(m, name)
        original = vars(type(m)).get("_vkconvt_original_class")
        if original is not None:
            m.__class__ = original
        del m._vkconvt
    return model
