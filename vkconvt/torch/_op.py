"""The registered PyTorch op vkconvt::conv_transpose1d, and the device-side layers it keeps.

Converted modules, the drop-in module and vkconvt.torch.conv_transpose1d all call this op, so
torch.compile, torch.export and torch.jit.trace see one opaque op with a fake implementation (the
output shape, by PyTorch's formula) instead of tracing into NumPy and Vulkan. Its arguments are
the tensors, the hyper-parameters and every vkconvt option as plain values (algorithm, backend,
Vulkan device, workspace budget, storage, fused activations), so a graph that holds it computes
the same thing anywhere vkconvt runs. One more argument, `handle`, names a module's KeptLayers:
its weights stay on the device between calls (uploaded again when they change). A handle no live
module owns (an exported program loaded in another process; -1 for the functional form) computes
through vkconvt.conv_transpose1d instead, with the same result.

Autograd: the op's backward runs on vkconvt (vkconvt/torch_autograd.py: grad_input, grad_weight
and grad_bias by vkconvt.conv_transpose1d_backward), registered below. A fused output activation
has no gradient inside the op: vkconvt.torch applies it with PyTorch where grad is needed
(without_output_activation), and the op refuses it under autograd.
"""
import functools
import itertools
import threading
import weakref
from typing import Optional

import numpy as np
import torch
from torch import Tensor

import vkconvt

from .. import interop, torch_autograd
from ..params import output_length, params_from_shapes

OPTIONS = ("algorithm", "backend", "device", "max_workspace_bytes", "storage", "activation", "negative_slope",
           "alpha", "beta", "alpha_logscale", "input_activation", "input_negative_slope")
DEFAULTS = dict(algorithm="auto", backend=None, device=None, max_workspace_bytes=None, storage=None, activation=None,
                negative_slope=0.01, alpha=None, beta=None, alpha_logscale=False, input_activation=None,
                input_negative_slope=0.01)
NO_HANDLE = -1
_kept = weakref.WeakValueDictionary()       # handle -> KeptLayers of a live module
_handles = itertools.count(1)


def op_options(config):
    """A module's or a call's vkconvt options as the op's arguments, in OPTIONS order (the Vulkan
    device as a string: an index "0" or a name substring; alpha/beta as float32 tensors)."""
    cfg = {**DEFAULTS, **config}
    if cfg["device"] is not None:
        cfg["device"] = str(cfg["device"])
    for k in ("alpha", "beta"):
        if cfg[k] is not None:
            cfg[k] = torch.as_tensor(np.asarray(cfg[k], np.float32))
    for k in ("negative_slope", "input_negative_slope"):
        cfg[k] = float(cfg[k])
    return tuple(cfg[k] for k in OPTIONS)


def with_snake(options, alpha, beta):
    """op_options() with the snake activation's alpha and beta tensors (a module's buffers)."""
    i = OPTIONS.index("alpha")
    return options[:i] + (alpha, beta) + options[i + 2:]


def _vkconvt_options(values):
    """The op's option arguments back as vkconvt.conv_transpose1d's keyword arguments."""
    cfg = dict(zip(OPTIONS, values))
    if cfg["device"] is not None and cfg["device"].strip().isdigit():
        cfg["device"] = int(cfg["device"])
    for k in ("alpha", "beta"):
        if cfg[k] is not None:
            cfg[k] = cfg[k].detach().float().numpy()
    return cfg


def compute(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int, padding: int,
                     output_padding: int, groups: int, dilation: int, handle: int, algorithm: str,
                     backend: Optional[str], device: Optional[str], max_workspace_bytes: Optional[int],
                     storage: Optional[str], activation: Optional[str], negative_slope: float, alpha: Optional[Tensor],
                     beta: Optional[Tensor], alpha_logscale: bool, input_activation: Optional[str],
                     input_negative_slope: float) -> Tensor:
    """torch.nn.functional.conv_transpose1d computed by vkconvt (see the module doc)."""
    check(input, weight, bias)
    cfg = _vkconvt_options((algorithm, backend, device, max_workspace_bytes, storage, activation, negative_slope,
                            alpha, beta, alpha_logscale, input_activation, input_negative_slope))
    hyper = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    kept = _kept.get(handle)
    if input.dtype == torch.float64 and torch_autograd.storage_of(input.dtype, cfg["backend"], cfg["storage"])[0] \
            == "float64":   # the NumPy backend's exact float64 (torch.autograd.gradcheck)
        out = torch.from_numpy(vkconvt.conv_transpose1d(
            *(torch_autograd.array(t, torch.float64) for t in (input, weight, bias)), **hyper,
            **dict(cfg, storage="float64")))
    elif kept is not None:
        out = kept.run(input, weight, bias, hyper, cfg)
    else:
        out = vkconvt.conv_transpose1d(input, weight, bias, **hyper, **cfg)
    return out if out.dtype == input.dtype else out.to(input.dtype)


conv_transpose1d = torch.library.custom_op("vkconvt::conv_transpose1d", compute, mutates_args=())


@conv_transpose1d.register_fake
def _fake(input, weight, bias, stride, padding, output_padding, groups, dilation, *options):
    """The output's shape and dtype (PyTorch's formula), with vkconvt's checks where the shapes
    are concrete (symbolic shapes are checked when the op runs)."""
    check(input, weight, bias, fake=True)
    if all(isinstance(s, int) for s in (*input.shape, *weight.shape)):
        params_from_shapes(input.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    c_out = weight.shape[1] * groups
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(f"bias must have shape (C_out,) = ({c_out},); got shape {tuple(bias.shape)}")
    l_out = output_length(input.shape[-1], weight.shape[-1], stride, padding, output_padding, dilation)
    return input.new_empty((*input.shape[:-2], c_out, l_out))


def check(input, weight, bias, fake=False):
    """vkconvt's tensor checks (interop), as PyTorch's conv_transpose1d makes them: floating
    tensors, input and weight of one dtype; real ones on the CPU (a fake or meta tensor only
    carries shapes)."""
    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if fake:
            if not t.is_floating_point():
                raise TypeError(f"{name} has dtype {t.dtype}; vkconvt computes floating tensors and, like PyTorch, "
                                f"does not convert others: pass {name}.float()")
        else:
            interop.check_tensor(name, t)
    interop.check_same_dtype("input", input, "weight", weight)


def _setup_context(ctx, inputs, output):
    input, weight, bias, stride, padding, output_padding, groups, dilation, _, *options = inputs
    hyper = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    torch_autograd.setup_context(ctx, hyper, _vkconvt_options(options), input, weight, bias)


def _backward(ctx, grad):
    """The gradients of input, weight and bias; None for the other arguments."""
    return torch_autograd.backward(ctx, grad) + (None,) * (6 + len(OPTIONS))


conv_transpose1d.register_autograd(_backward, setup_context=_setup_context)


def without_output_activation(options):
    """(options with no output activation, that activation's keyword arguments for
    torch_autograd.output_activation): what vkconvt.torch calls where grad is needed."""
    cfg = dict(zip(OPTIONS, options))
    act = {k: cfg[k] for k in ("activation", "negative_slope", "alpha", "beta", "alpha_logscale")}
    cfg.update(activation=None, alpha=None, beta=None)
    return tuple(cfg[k] for k in OPTIONS), act


def call(input, weight, bias, stride, padding, output_padding, groups, dilation, options, handle=NO_HANDLE):
    """The op, with options from op_options()."""
    return torch.ops.vkconvt.conv_transpose1d(input, weight, bias, stride, padding, output_padding, groups, dilation,
                                              handle, *options)


SAMPLE = 4096          # weights compared at every call (the rest only when a parameter's version moved)


class KeptLayers:
    """A module's vkconvt options (config: as given; options: as op arguments) and its device-side
    layers, one per hyper-parameter set and storage (output_size can change output_padding from
    call to call), with a copy of the weight and bias the device holds, to notice when the
    module's weights change. Registered under `handle` while the module lives."""

    def __init__(self, algorithm="auto", backend=None, device=None, max_workspace_bytes=None, **activation):
        self.config = dict(algorithm=algorithm, backend=backend, device=device,
                           max_workspace_bytes=max_workspace_bytes, **activation)
        self._reset()

    def _reset(self):
        self.layers, self.weight, self.bias = {}, None, None
        self.module = None          # a weakref to the module, set by attach(): its parameters' versions
        self.stamp_seen = None      # stamp() when the device's copy of the weights was last checked
        self.lock = threading.Lock()
        # alpha/beta travel as the module's buffers (the drop-in), not as constants here
        self.options = op_options({k: v for k, v in self.config.items() if k not in ("alpha", "beta")})
        self.handle = next(_handles)
        _kept[self.handle] = self

    # copies and pickles carry the options only; device-side state is rebuilt on the next call
    def __getstate__(self):
        return {"config": dict(self.config)}

    def __setstate__(self, state):
        self.config = state["config"]
        self._reset()

    def attach(self, module):
        """Follow `module`'s parameters: while none was replaced or changed in place (PyTorch's version
        counter), the device keeps its weights without comparing them (see stamp())."""
        self.module = weakref.ref(module)
        return self

    def stamp(self):
        """(id, version, data pointer) of every parameter of the module (weight norm's g and v and a
        parametrization's originals included), or None when no module is attached. PyTorch bumps a
        tensor's version at every in-place change (optimizer steps, load_state_dict, no_grad edits),
        but not at an edit through `.data`: vkconvt.torch.refresh(model) covers that."""
        mod = None if self.module is None else self.module()
        if mod is None:
            return None
        try:
            return tuple((id(p), p._version, p.data_ptr()) for p in mod.parameters())
        except RuntimeError:        # inference tensors have no version counter: compare every call
            return None

    def unchanged(self, w, b):
        """Whether the device's copy of the weights still holds: the parameters' versions as when it was
        taken, the bias equal, and a fixed sample of SAMPLE weights equal (an edit through `.data` or a
        NumPy view bumps no version; one that changes the bias or any sampled weight, as bulk updates
        and EMA do, is still seen; vkconvt.torch.refresh covers a partial one)."""
        stamp = self.stamp()
        if stamp is None or stamp != self.stamp_seen or self.weight is None or not _same(self.bias, b):
            return False
        flat = w.reshape(-1)
        if flat.shape != self._flat_held.shape:
            return False
        return np.array_equal(flat[self._sample], self._flat_held[self._sample], equal_nan=True)

    def run(self, input, weight, bias, hyper, cfg):
        """The kept layer's result for checked tensors, as a tensor in input's dtype."""
        layer = self.layer_for(weight, bias, hyper, cfg)
        return interop.wrap(layer(interop.as_numpy(input)), input)

    def layer_for(self, weight, bias, hyper, cfg):
        """The vkconvt layer holding the module's current weights for these hyper-parameters."""
        w = interop.as_numpy(weight)
        b = None if bias is None else interop.as_numpy(bias)
        # a float16 module (model.half()) stores its weights, inputs and columns as halves
        storage = cfg.pop("storage") or ("float16" if w.dtype == np.float16 else "float32")
        key = tuple(hyper.values()) + (storage, cfg.get("activation"))     # grad mode: no output activation
        with self.lock:
            if not self.unchanged(w, b):
                if not (_same(self.weight, w) and _same(self.bias, b)):
                    self.layers.clear()
                    self.weight, self.bias = np.array(w), None if b is None else np.array(b)
                    self._flat_held = self.weight.reshape(-1)
                    n = self._flat_held.size
                    self._sample = np.unique(np.linspace(0, n - 1, min(n, SAMPLE)).astype(np.int64))
                self.stamp_seen = self.stamp()
            layer = self.layers.get(key)
            if layer is None:
                h = hyper
                if output_length(1, self.weight.shape[-1], h["stride"], h["padding"], h["output_padding"],
                                 h["dilation"]) > 0:
                    layer = vkconvt.ConvTranspose1d(self.weight, self.bias, **hyper, storage=storage, **cfg)
                else:   # vkconvt.ConvTranspose1d checks its hyper-parameters with a 1-long input and would refuse
                    layer = functools.partial(_conv, weight=self.weight, bias=self.bias, **hyper, storage=storage,
                                              **cfg)
                self.layers[key] = layer
        return layer


def _conv(x, weight, bias, **kwargs):
    return vkconvt.conv_transpose1d(x, weight, bias, **kwargs)


def _same(held, current):
    if held is None or current is None:
        return held is None and current is None
    return held.dtype == current.dtype and held.shape == current.shape and np.array_equal(held, current, equal_nan=True)


def refresh(model):
    """Make every converted layer of `model` compare its weights with the device's copy at its next call
    (needed only after edits through `.data`, which PyTorch's version counter does not see)."""
    for m in model.modules():
        kept = getattr(m, "_vkconvt", None)
        if isinstance(kept, KeptLayers):
            kept.stamp_seen = None
    return model
