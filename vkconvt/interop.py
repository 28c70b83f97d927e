"""Tensors in, tensors out: let the NumPy-based public API take and return PyTorch tensors.

vkconvt computes on NumPy float32 arrays. A CPU torch.Tensor argument is turned into a NumPy
array that shares its memory (float16 stays float16: conv_transpose1d then stores halves and
returns float16; bfloat16 and float64 are converted to float32), and the result comes back as a
torch.Tensor (torch.from_numpy, no copy) in the floating dtype of the first tensor argument.
Without tensor arguments nothing changes: NumPy in, NumPy out.

torch is never imported here: a value is a tensor only if torch is already in sys.modules (the
caller imported it) and the value is a torch.Tensor. `import vkconvt` therefore never loads torch.

Refused, with errors that name the parameter:
  * a tensor not on the CPU (ValueError: "x is on device cuda:0; vkconvt takes CPU tensors ...");
  * a tensor that requires grad while grad mode is enabled (RuntimeError): these NumPy-based functions
    carry no gradient, and a result without one would be silently wrong for training (vkconvt.torch
    carries gradients: check_tensor(..., autograd=True));
  * a tensor that is not floating point (integer, bool, complex: TypeError), and x and weight
    tensors (a and b for matmul) of different dtypes (TypeError), as PyTorch refuses them;
  * a PyTorch device given as device= (ValueError): device= names the Vulkan device.

vkconvt/api.py wraps every public entry point with tensor_io (conv_transpose1d, matmul,
col2im_1d, ConvTranspose1d.__init__ and __call__); each wrapped function carries the attribute
__vkconvt_tensor_io__ = True, which the tests check on all of them. Being the first code to see
the caller's own x and weight, tensor_io also refuses a NumPy float16 with another dtype there
(params.check_half_pair), before api.py stores the weights in x's storage type, unless the call
says how to store them (storage=...; tensors: the same-dtype rule above).
"""
import functools
import inspect
import sys

import numpy as np

from .params import check_half_pair

__all__ = ["is_tensor", "check_tensor", "check_same_dtype", "unwrap", "as_numpy", "wrap", "TensorIO", "tensor_io",
           "check_vulkan_device"]
# arguments whose tensors must share one dtype (PyTorch: "expected scalar type Half but found Float")
SAME_DTYPE = (("x", "weight"), ("a", "b"))


def _torch():
    """The torch module if the caller has imported it, else None (never imports it)."""
    return sys.modules.get("torch")


def is_tensor(value):
    torch = _torch()
    return torch is not None and isinstance(value, torch.Tensor)


def inference_hint(name):
    return (f"run inference under `with torch.inference_mode():` (or `with torch.no_grad():`), "
            f"or pass {name}.detach()")


def check_tensor(name, value, autograd=False):
    """Refuse a tensor vkconvt cannot take (see the module doc); fake tensors (torch.compile,
    torch.export) are checked the same way. autograd: the caller carries gradients (vkconvt.torch),
    so a tensor that requires grad is fine."""
    torch = _torch()
    if value.device.type != "cpu":
        raise ValueError(f"{name} is on device {value.device}; vkconvt takes CPU tensors (call "
                         f"{name}.cpu()): it copies them to the Vulkan device itself")
    if value.requires_grad and torch.is_grad_enabled() and not autograd:
        raise RuntimeError(f"{name} requires grad and grad mode is enabled, but this vkconvt function computes no "
                           f"gradient (vkconvt.torch's modules and conv_transpose1d do); {inference_hint(name)}")
    if value.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {value.layout}")
    if not value.is_floating_point():
        raise TypeError(f"{name} has dtype {value.dtype}; vkconvt computes floating tensors (float16, bfloat16, "
                        f"float32, float64) and, like PyTorch, does not convert others: pass {name}.float()")


def check_same_dtype(first, a, second, b):
    """Two tensors of one op that PyTorch requires to share a dtype."""
    if is_tensor(a) and is_tensor(b) and a.dtype != b.dtype:
        raise TypeError(f"{first} ({a.dtype}) and {second} ({b.dtype}) must have the same dtype, as PyTorch's own op "
                        f"requires: convert one, e.g. {second}.to({first}.dtype)")


def unwrap(name, value):
    """A value vkconvt's NumPy API takes: a CPU tensor becomes a NumPy array (sharing memory when
    it is float32); anything else is returned unchanged."""
    if not is_tensor(value):
        return value
    check_tensor(name, value)
    return as_numpy(value)


def as_numpy(value):
    """A checked tensor as a NumPy array (float32, or float16 for float16: conv_transpose1d stores it
    as halves and returns float16), sharing memory where it can."""
    torch = _torch()
    value = value.detach()
    if value.dtype not in (torch.float32, torch.float16):
        value = value.float()   # bfloat16 (no NumPy dtype), float64: vkconvt computes in float32
    return value.resolve_neg().resolve_conj().numpy()


def wrap(out, like):
    """out (a NumPy array, or a tuple of them and Nones) as a torch.Tensor in like's floating dtype
    when like is a tensor (no copy for float32); otherwise out unchanged."""
    if not is_tensor(like):
        return out
    if isinstance(out, tuple):
        return tuple(None if o is None else wrap(o, like) for o in out)
    torch = _torch()
    t = torch.from_numpy(np.asarray(out))
    if like.is_floating_point() and t.dtype != like.dtype:
        t = t.to(like.dtype)
    return t


class TensorIO:
    """unwrap() that remembers the first tensor seen, so that wrap() can answer in kind.

        io = TensorIO()
        x, w = io.unwrap("x", x), io.unwrap("weight", w)
        return io.wrap(vkconvt.conv_transpose1d(x, w))
    """

    def __init__(self):
        self.like = None

    def unwrap(self, name, value):
        if self.like is None and is_tensor(value):
            out = unwrap(name, value)
            self.like = value
            return out
        return unwrap(name, value)

    def wrap(self, out):
        return wrap(out, self.like)


def check_vulkan_device(name, value):
    """Refuse a PyTorch device (torch.device('cuda'), 'cuda:0', 'cpu', ...) given where vkconvt wants
    the Vulkan device (an index or a substring of its name). Returns value."""
    torch = _torch()
    if torch is None or value is None:
        return value
    looks_torch = isinstance(value, torch.device)
    if isinstance(value, str) and not value.strip().isdigit():
        try:
            torch.device(value)
            looks_torch = True
        except (RuntimeError, ValueError):
            pass
    if looks_torch:
        raise ValueError(f"{name}={value!r} is a PyTorch device, but vkconvt's {name}= names the Vulkan device "
                         f"(an index or a substring of its name, see `python -m vkconvt info`; None for the "
                         f"default); tensors and parameters stay on the CPU (backend='numpy' computes there)")
    return value


def tensor_io(*names, wrap_result=True):
    """Decorator: the arguments called `names` may be CPU tensors (see the module doc); the result
    is wrapped like the first tensor argument (unless wrap_result=False, e.g. for __init__)."""

    def decorate(fn):
        sig = inspect.signature(fn)
        missing = [n for n in names if n not in sig.parameters]
        if missing:
            raise TypeError(f"tensor_io: {fn.__qualname__} has no parameter(s) {', '.join(missing)}")

        order = list(sig.parameters)
        half_pair = (order.index("x"), order.index("weight")) if {"x", "weight"} <= set(names) else None

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            torch = _torch()
            # torch not loaded, or no tensor among the arguments: nothing to do (the fast path)
            if torch is None or not any(isinstance(v, torch.Tensor) for v in (*args, *kwargs.values())):
                if half_pair is not None and kwargs.get("storage") is None:   # as the caller gave them
                    ix, iw = half_pair
                    check_half_pair(args[ix] if len(args) > ix else kwargs.get("x"),
                                    args[iw] if len(args) > iw else kwargs.get("weight"))
                return fn(*args, **kwargs)
            bound = sig.bind(*args, **kwargs)
            for first, second in SAME_DTYPE:
                if first in bound.arguments and second in bound.arguments:
                    check_same_dtype(first, bound.arguments[first], second, bound.arguments[second])
            io = TensorIO()
            for name in names:
                if name in bound.arguments:
                    bound.arguments[name] = io.unwrap(name, bound.arguments[name])
            if "device" in bound.arguments:
                check_vulkan_device("device", bound.arguments["device"])
            out = fn(*bound.args, **bound.kwargs)
            return io.wrap(out) if wrap_result else out

        wrapper.__vkconvt_tensor_io__ = True
        return wrapper

    return decorate
