"""Converted layers that follow each other in an nn.Sequential keep their activations on the Vulkan
device: the first one's input goes up once, the last one's output comes down once, and in between
the results stay vkconvt.DeviceArrays. Only where nothing else can read them in between: the layers
have no hooks, the call needs no gradient, it runs eagerly (not traced, compiled or exported), on
the Vulkan backend of one device. Anything else runs the Sequential as PyTorch does."""
import torch
from torch import nn

import vkconvt

from .. import interop
from . import _op


def _plain(m):
    """A converted nn.ConvTranspose1d (its class's own forward) with no hooks, on the Vulkan backend."""
    kept = getattr(m, "_vkconvt", None)
    return (isinstance(kept, _op.KeptLayers) and type(m).forward is nn.ConvTranspose1d.forward
            and "_vkconvt_alpha" not in m._buffers and not m._forward_hooks and not m._forward_pre_hooks
            and kept.config.get("backend") in (None, "vulkan", "auto")
            and vkconvt.backends.vulkan_reason() is None)


def runs(seq):
    """[(start, stop)] of the index ranges of two or more consecutive converted layers in `seq`."""
    mods, out, i = list(seq._modules.values()), [], 0
    while i < len(mods):
        j = i
        while j < len(mods) and isinstance(getattr(mods[j], "_vkconvt", None), _op.KeptLayers):
            j += 1
        if j - i >= 2:
            out.append((i, j))
        i = max(j, i + 1)
    return out


def _eager(seq, input):
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)()
    grad = torch.is_grad_enabled() and (input.requires_grad or any(p.requires_grad for p in seq.parameters()))
    return (isinstance(input, torch.Tensor) and input.device.type == "cpu" and not grad and not compiling
            and not torch.jit.is_tracing())


def _chain(mods, x):
    """x through the converted layers `mods` on device arrays; a tensor in x's dtype back."""
    devices = {m._vkconvt.config.get("device") for m in mods}
    if len(devices) != 1:
        return None
    y = vkconvt.asarray(interop.as_numpy(x), device=devices.pop())
    for m in mods:
        cfg = _op._vkconvt_options(m._vkconvt.options)
        hyper = dict(stride=m.stride[0], padding=m.padding[0], output_padding=m.output_padding[0], groups=m.groups,
                     dilation=m.dilation[0])
        y = m._vkconvt.layer_for(m.weight, m.bias, hyper, cfg)(y)
    return interop.wrap(y.numpy(), x)


class ChainedForward:
    """The forward of an nn.Sequential with runs of converted layers (an instance attribute)."""

    def __init__(self, seq, spans):
        self.seq, self.spans = seq, dict(spans)

    def __call__(self, input):
        seq = self.seq
        if not _eager(seq, input):
            return nn.Sequential.forward(seq, input)
        mods, x, i = list(seq._modules.values()), input, 0
        while i < len(mods):
            stop = self.spans.get(i)
            out = None
            if stop is not None and all(_plain(m) for m in mods[i:stop]):
                out = _chain(mods[i:stop], x)
            if out is not None:
                x, i = out, stop
            else:
                x, i = mods[i](x), i + 1
        return x


def attach(model):
    """Give every nn.Sequential of `model` with a run of converted layers the chained forward."""
    for m in model.modules():
        if type(m) is nn.Sequential and "forward" not in m.__dict__:
            spans = runs(m)
            if spans:
                m.forward = ChainedForward(m, spans)


def detach(model):
    for m in model.modules():
        if isinstance(m.__dict__.get("forward"), ChainedForward):
            del m.forward
