"""PyTorch integration: vkconvt.interop (tensors in, tensors out), vkconvt.torch (drop-in module,
convert/restore) and vkconvt.torch_models (HiFi-GAN V1).

Converted layers must match PyTorch per layer to float32 rounding: normalised MSE
mean((a-b)^2)/mean(b^2) <= 1e-10, each layer fed the same input; restore must be bit-identical.
"""
import copy
import io
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import parametrizations  # noqa: E402

import vkconvt  # noqa: E402
import vkconvt.torch as vt  # noqa: E402
from vkconvt import interop, torch_models  # noqa: E402
from vkconvt.backends import vulkan_reason  # noqa: E402

LAYER_TOL = 1e-10   # per layer, same input
MODEL_TOL = 1e-8    # whole model: per-layer rounding carried through the network

BACKENDS = [pytest.param("vulkan", marks=pytest.mark.skipif(vulkan_reason() is not None,
                                                            reason=f"no Vulkan: {vulkan_reason()}")), "numpy"]


def nmse(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float(((a - b) ** 2).mean() / (b ** 2).mean())


def weight_norm_hooks(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(module)


# ---------------------------------------------------------------- models written for the tests
def hifigan_style():
    """torch_models.Generator (HiFi-GAN, weight_norm hooks) with a small config."""
    torch.manual_seed(0)
    return torch_models.Generator(resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3], [1, 3]],
                                  upsample_rates=[4, 2], upsample_kernel_sizes=[8, 4], upsample_initial_channel=16,
                                  num_mels=8).eval()


class SConvTranspose1d(nn.Module):
    """EnCodec's SConvTranspose1d: a weight-normalised (parametrization) ConvTranspose1d, then trimmed."""

    def __init__(self, c_in, c_out, kernel_size, stride):
        super().__init__()
        self.convtr = parametrizations.weight_norm(nn.ConvTranspose1d(c_in, c_out, kernel_size, stride))
        self.trim = kernel_size - stride

    def forward(self, x):
        y = self.convtr(x)
        right = self.trim // 2
        return y[..., self.trim - right:y.shape[-1] - right]


class EncodecStyleDecoder(nn.Module):
    def __init__(self, dim=8, channels=16, ratios=(4, 2)):
        super().__init__()
        layers = [parametrizations.weight_norm(nn.Conv1d(dim, channels, 7, padding=3))]
        for r in ratios:
            layers += [nn.ELU(), SConvTranspose1d(channels, channels // 2, 2 * r, r), nn.ELU(),
                       parametrizations.weight_norm(nn.Conv1d(channels // 2, channels // 2, 3, padding=3, dilation=3))]
            channels //= 2
        layers += [nn.ELU(), parametrizations.weight_norm(nn.Conv1d(channels, 1, 7, padding=3))]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def depthwise_upsampler(channels=8):
    return nn.Sequential(nn.ConvTranspose1d(channels, channels, 4, stride=2, padding=1, groups=channels, bias=False),
                         nn.Conv1d(channels, channels, 1),
                         nn.ConvTranspose1d(channels, channels, 3, stride=3, groups=channels, dilation=2,
                                            output_padding=1))


class MyConvTranspose1d(nn.ConvTranspose1d):
    """A subclass that only adds an attribute."""
    tag = "mine"


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """A subclass that overrides forward and calls super().forward."""

    def forward(self, x, output_size=None):
        y = super().forward(x, output_size)
        return y[..., :y.shape[-1] - (self.kernel_size[0] - self.stride[0])]


def subclassed():
    return nn.Sequential(MyConvTranspose1d(6, 4, 4, stride=2, padding=1), nn.Tanh(),
                         CausalConvTranspose1d(4, 3, 5, stride=3))


MODELS = {"hifigan_style": (hifigan_style, 8), "encodec_style": (EncodecStyleDecoder, 8),
          "depthwise": (depthwise_upsampler, 8), "subclassed": (subclassed, 6)}


def make(name):
    torch.manual_seed(0)
    build, c_in = MODELS[name]
    return build(), torch.randn(2, c_in, 9)


def conv_layers(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.ConvTranspose1d)}


def run_capturing(model, x):
    """Run model under inference_mode; returns its output and {name: (args, kwargs, output)} per
    ConvTranspose1d."""
    seen, handles = {}, []
    for name, m in conv_layers(model).items():
        hook = (lambda n: lambda mod, args, kwargs, out: seen.__setitem__(n, (args, kwargs, out)))(name)
        handles.append(m.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.inference_mode():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, seen


# ---------------------------------------------------------------- convert / restore
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", MODELS)
def test_convert_matches_torch_per_layer(name, backend, monkeypatch):
    calls = []
    vk_forward = vt._vk_forward
    monkeypatch.setattr(vt, "_vk_forward", lambda m, *a: calls.append(m) or vk_forward(m, *a))
    model, x = make(name)
    with torch.inference_mode():
        ref = model(x)
    converted = vt.convert(model, backend=backend)
    assert converted is not model and not any(vt.is_converted(m) for m in model.modules())
    layers = conv_layers(converted)
    assert layers and all(vt.is_converted(m) for m in layers.values())
    out, seen = run_capturing(converted, x)
    assert set(seen) == set(layers)
    assert sorted(map(id, calls)) == sorted(map(id, layers.values()))     # each layer ran on vkconvt, once
    originals = dict(model.named_modules())
    with torch.inference_mode():
        for lname, (args, kwargs, y) in seen.items():
            expect = originals[lname](*args, **kwargs)          # PyTorch, same input, same weights
            assert y.shape == expect.shape and y.dtype == expect.dtype
            assert nmse(y, expect) <= LAYER_TOL, lname
    assert out.shape == ref.shape and nmse(out, ref) <= MODEL_TOL
    with torch.inference_mode():
        assert torch.equal(vt.restore(converted)(x), ref)       # restore is exact


@pytest.mark.parametrize("name", ["hifigan_style", "subclassed"])
def test_convert_inplace_then_restore_is_exact(name):
    model, x = make(name)
    kinds = {n: type(m) for n, m in model.named_modules()}
    keys = list(model.state_dict())
    with torch.inference_mode():
        ref = model(x)
    assert vt.convert(model, inplace=True, backend="numpy") is model
    assert list(model.state_dict()) == keys
    for n, m in model.named_modules():    # isinstance keeps working; classes change only for forward overrides
        assert isinstance(m, kinds[n])
        assert type(m) is kinds[n] or kinds[n] is CausalConvTranspose1d
    with torch.inference_mode():
        assert nmse(model(x), ref) <= MODEL_TOL
        assert vt.restore(model) is model
        assert torch.equal(model(x), ref)
    assert {n: type(m) for n, m in model.named_modules()} == kinds
    assert not any(vt.is_converted(m) or "_vkconvt" in vars(m) for m in model.modules())


@pytest.mark.parametrize("name", ["encodec_style", "depthwise"])
def test_convert_copies_and_pickles(name):
    model, x = make(name)
    converted = vt.convert(model, backend="numpy")
    with torch.inference_mode():
        ref = converted(x)
        twin = copy.deepcopy(converted)
        assert all(vt.is_converted(m) for m in conv_layers(twin).values())
        assert torch.equal(twin(x), ref)
        if name == "depthwise":         # PyTorch pickles no parametrized module (encodec_style's weight norm)
            buf = io.BytesIO()
            torch.save(converted, buf)
            loaded = torch.load(io.BytesIO(buf.getvalue()), weights_only=False)
            assert all(vt.is_converted(m) for m in conv_layers(loaded).values())
            assert torch.equal(loaded(x), ref)
        # converting again leaves converted layers alone
        assert vt.convert(converted, inplace=True) is converted and torch.equal(converted(x), ref)


def test_convert_arguments():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        vt.convert(np.zeros(3))
    with pytest.raises(ValueError, match="algorithm"):
        vt.convert(nn.ConvTranspose1d(2, 2, 3), algorithm="fft")
    with pytest.raises(ValueError, match="names the Vulkan device"):
        vt.convert(nn.ConvTranspose1d(2, 2, 3), device=torch.device("cuda"))
    with pytest.warns(UserWarning, match="no nn.ConvTranspose1d"):
        vt.convert(nn.Linear(2, 2))


def test_conversion_is_visible():
    model = nn.Sequential(nn.ConvTranspose1d(512, 256, 16, stride=8, padding=4), nn.Tanh(),
                          CausalConvTranspose1d(256, 4, 4, stride=2))
    before = repr(model)
    conv = vt.convert(model, algorithm="gemm", backend="numpy")
    text = repr(conv)
    assert "ConvTranspose1d(512, 256, kernel_size=(16,), stride=(8,), padding=(4,), vkconvt: device=default, " \
           "algorithm=gemm, backend=numpy)" in text
    assert "CausalConvTranspose1d(256, 4, kernel_size=(4,), stride=(2,), vkconvt: device=default" in text
    assert repr(model) == before and "vkconvt" not in before                  # the original is untouched
    assert [vt.is_converted(m) for m in conv] == [True, False, True]
    assert not vt.is_converted(vt.ConvTranspose1d(2, 2, 3, backend="numpy"))     # the drop-in is vkconvt's own
    assert repr(vt.restore(conv)) == before and not any(vt.is_converted(m) for m in conv)
    assert "is_converted" in vt.__all__


# ---------------------------------------------------------------- the drop-in module
def test_dropin_is_a_torch_module_and_state_dict_round_trips():
    torch.manual_seed(0)
    ref = nn.ConvTranspose1d(6, 4, 5, stride=2, padding=1)
    m = vt.ConvTranspose1d(6, 4, 5, stride=2, padding=1, backend="numpy")
    assert isinstance(m, nn.ConvTranspose1d) and m.stride == (2,) and m.kernel_size == (5,)
    m.load_state_dict(ref.state_dict())                                # torch -> vkconvt
    x = torch.randn(2, 6, 7)
    with torch.no_grad():
        assert nmse(m(x), ref(x)) <= LAYER_TOL
        m.weight.mul_(-0.5)
        back = nn.ConvTranspose1d(6, 4, 5, stride=2, padding=1)
        back.load_state_dict(m.state_dict())                           # vkconvt -> torch
        assert nmse(m(x), back(x)) <= LAYER_TOL
    assert list(m.state_dict()) == ["weight", "bias"]
    assert repr(m).endswith("padding=(1,), vkconvt: device=default, algorithm=auto, backend=numpy)")
    buf = io.BytesIO()
    torch.save(m, buf)
    loaded = torch.load(io.BytesIO(buf.getvalue()), weights_only=False)
    with torch.no_grad():
        assert type(loaded) is vt.ConvTranspose1d and torch.equal(loaded(x), m(x))


@pytest.mark.parametrize("form", ["hooks", "parametrizations"])
def test_from_torch_folds_weight_norm(form):
    torch.manual_seed(0)
    conv = nn.ConvTranspose1d(6, 4, 4, stride=2, padding=1, dilation=2, output_padding=1)
    conv = weight_norm_hooks(conv) if form == "hooks" else parametrizations.weight_norm(conv)
    with torch.no_grad():
        (conv.weight_g if form == "hooks" else conv.parametrizations.weight.original0).mul_(3)
    m = vt.ConvTranspose1d.from_torch(conv, backend="numpy")
    assert type(m) is vt.ConvTranspose1d and m.output_padding == (1,) and m.dilation == (2,)
    x = torch.randn(1, 6, 8)
    with torch.no_grad():
        assert nmse(m(x), conv(x)) <= LAYER_TOL
    with pytest.raises(TypeError, match="torch.nn.ConvTranspose1d"):
        vt.ConvTranspose1d.from_torch(nn.Conv1d(2, 2, 3))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("hyper", [
    dict(stride=1), dict(stride=2, output_padding=1), dict(stride=2, dilation=3, padding=1),
    dict(stride=3, padding=2),   # padding 2 > (K-1)/2: no valid output for a 1-long input
    dict(stride=(2,), padding=(1,), dilation=(2,), output_padding=(1,)), dict(stride=2, groups=2),
    dict(stride=4, groups=6, bias=False)], ids=lambda h: "-".join(f"{k}{v}" for k, v in h.items()))
def test_dropin_hyper_parameters(hyper, backend):
    torch.manual_seed(0)
    ref = nn.ConvTranspose1d(6, 6, 3, **hyper)
    m = vt.ConvTranspose1d.from_torch(ref, backend=backend)
    x = torch.randn(2, 6, 10)
    with torch.inference_mode():
        assert nmse(m(x), ref(x)) <= LAYER_TOL
        assert nmse(m(x[0]), ref(x[0])) <= LAYER_TOL and m(x[0]).shape == ref(x[0]).shape   # unbatched


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_size(backend):
    torch.manual_seed(0)
    ref = nn.ConvTranspose1d(4, 3, 3, stride=3, padding=1)
    m = vt.convert(ref, backend=backend)
    x = torch.randn(2, 4, 5)
    with torch.inference_mode():
        for size in ([13], [14], [15], (2, 3, 15), torch.Size([14]), None, [13]):
            y, expect = m(x, output_size=size), ref(x, output_size=size)
            assert y.shape == expect.shape and nmse(y, expect) <= LAYER_TOL, size
        assert m(x[0], output_size=[14]).shape == (3, 14)
        with pytest.raises(ValueError, match="output_size|requested an output size"):
            m(x, output_size=[20])


def test_padding_mode_rejected_like_torch():
    with pytest.raises(ValueError, match="zeros"):
        vt.ConvTranspose1d(2, 2, 3, padding_mode="reflect")
    m = vt.convert(nn.ConvTranspose1d(2, 2, 3), backend="numpy")
    m.padding_mode = "circular"
    with torch.inference_mode(), pytest.raises(ValueError, match="Only `zeros` padding mode"):
        m(torch.randn(1, 2, 4))


def test_dropin_device_argument():
    for bad in (torch.device("cuda"), "cuda:0", "cpu", torch.device("cpu")):
        with pytest.raises(ValueError, match="is a PyTorch device.*names the Vulkan device"):
            vt.ConvTranspose1d(2, 2, 3, device=bad)
    m = vt.ConvTranspose1d(2, 2, 3, device=None, dtype=torch.float64, backend="numpy")
    assert m.weight.device.type == "cpu" and m.weight.dtype == torch.float64
    x = torch.randn(1, 2, 5, dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
        assert y.dtype == torch.float64 and nmse(y, F.conv_transpose1d(x, m.weight, m.bias)) <= LAYER_TOL


# ---------------------------------------------------------------- autograd, devices, dtypes
class _FakeCuda(torch.Tensor):
    """A CPU tensor that reports device cuda:0 (this machine has no CUDA)."""

    @property
    def device(self):
        return torch.device("cuda:0")


def test_non_cpu_tensors_are_refused():
    x = torch.randn(1, 4, 5)
    m = vt.convert(nn.ConvTranspose1d(4, 2, 3), backend="numpy")
    with torch.inference_mode():
        with pytest.raises(ValueError, match=r"input is on device meta; vkconvt takes CPU tensors \(call input.cpu\(\)\)"):
            m(torch.empty(1, 4, 5, device="meta"))
        with pytest.raises(ValueError, match=r"input is on device cuda:0; vkconvt takes CPU tensors"):
            m(x.as_subclass(_FakeCuda))
        with pytest.raises(ValueError, match=r"weight is on device meta"):
            vt.conv_transpose1d(x, torch.empty(4, 2, 3, device="meta"), backend="numpy")
    with pytest.raises(ValueError, match=r"x is on device cuda:0; vkconvt takes CPU tensors \(call x.cpu\(\)\)"):
        interop.unwrap("x", x.as_subclass(_FakeCuda))


def test_what_pytorch_refuses_is_refused():
    """No silent casts (issue 23): integer and mixed-dtype tensors, lists and NumPy arrays given to
    the PyTorch-facing API are refused as torch.nn.functional.conv_transpose1d refuses them."""
    torch.manual_seed(0)
    x, w = torch.randn(1, 4, 5), torch.randn(4, 3, 3)
    m = vt.convert(nn.ConvTranspose1d(4, 3, 3), backend="numpy")
    with torch.inference_mode():
        for bad in (x.half(), x.double(), x.bfloat16()):
            with pytest.raises(TypeError, match=r"input \(torch.\w+\) and weight \(torch.float32\) must have the same"):
                m(bad)
            with pytest.raises(RuntimeError, match="expected scalar type|should be the same"):
                nn.ConvTranspose1d(4, 3, 3)(bad)                                              # PyTorch agrees
        with pytest.raises(TypeError, match=r"input has dtype torch.int32; vkconvt computes floating tensors"):
            m(x.int())
        with pytest.raises(TypeError, match=r"argument 'input' must be Tensor, not list"):
            vt.conv_transpose1d(x.tolist(), w)
        with pytest.raises(TypeError, match=r"argument 'weight' must be Tensor, not ndarray.*vkconvt.conv_transpose1d"):
            vt.conv_transpose1d(x, w.numpy())
        with pytest.raises(TypeError, match=r"weight has dtype torch.int64"):
            vt.conv_transpose1d(x, w.long())
        with pytest.raises(TypeError, match=r"input \(torch.float16\) and weight \(torch.float32\)"):
            vt.conv_transpose1d(x.half(), w, backend="numpy")
        half = vt.convert(nn.ConvTranspose1d(4, 3, 3), backend="numpy").half()
        assert half(x.half()).dtype == torch.float16
        with pytest.raises(TypeError, match=r"input \(torch.float32\) and weight \(torch.float16\)"):
            half(x)
        with pytest.raises(ValueError, match=r"C_in=5 .*x looks channels-last .*x.transpose\(-1, -2\)"):
            m(x.transpose(1, 2))                       # (N, L, C_in)
        # a float bias of another dtype is fine, as in PyTorch
        y = vt.conv_transpose1d(x, w, torch.zeros(3, dtype=torch.float64), backend="numpy")
        assert y.dtype == torch.float32 and nmse(y, F.conv_transpose1d(x, w)) <= LAYER_TOL


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_functional_dtypes(dtype):
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 4, 6), torch.randn(4, 3, 5), torch.randn(6)
    ref = F.conv_transpose1d(x, w, b, stride=(2,), padding=(1,), groups=2, dilation=(2,), output_padding=1)
    y = vt.conv_transpose1d(x.to(dtype), w.to(dtype), b.to(dtype), stride=(2,), padding=(1,), groups=2,
                            dilation=(2,), output_padding=1, backend="numpy")
    assert isinstance(y, torch.Tensor) and y.dtype == dtype and y.shape == ref.shape
    assert nmse(y, ref) <= (LAYER_TOL if dtype == torch.float64 else 1e-4)    # half inputs are rounded


# ---------------------------------------------------------------- changed weights are noticed
@pytest.mark.parametrize("backend", BACKENDS)
def test_changed_weights_are_noticed(backend):
    torch.manual_seed(0)
    ref = nn.Sequential(nn.ConvTranspose1d(4, 3, 4, stride=2),
                        parametrizations.weight_norm(nn.ConvTranspose1d(3, 3, 3, stride=2)),
                        weight_norm_hooks(nn.ConvTranspose1d(3, 2, 2, stride=2)))
    conv = vt.convert(ref, backend=backend)
    x = torch.randn(1, 4, 6)

    def check():
        with torch.inference_mode():
            assert nmse(conv(x), ref(x)) <= MODEL_TOL

    check()
    held = [dict(m._vkconvt.layers) for m in conv]
    check()
    assert [dict(m._vkconvt.layers) for m in conv] == held        # unchanged weights: the device copy is reused
    new_state = {k: torch.randn_like(v) for k, v in ref.state_dict().items()}
    edits = [
        lambda m: m[0].weight.mul_(2),                                        # in place under no_grad
        lambda m: m[0].weight.data.add_(1),                                   # through .data (no version bump)
        lambda m: m[0].bias.detach().numpy().__setitem__(0, 5.0),             # through NumPy
        lambda m: m[1].parametrizations.weight.original0.mul_(3),             # weight norm g (parametrization)
        lambda m: m[2].weight_v.add_(0.5),                                    # weight norm v (hooks)
        lambda m: m.load_state_dict(new_state),
    ]
    for edit in edits:
        with torch.no_grad():
            edit(ref)
            edit(conv)
        check()
    assert all(m._vkconvt.layers[k] is not v for m, h in zip(conv, held) for k, v in h.items())


def test_dropin_notices_load_state_dict():
    torch.manual_seed(0)
    m = vt.ConvTranspose1d(3, 2, 3, stride=2, backend="numpy")
    x = torch.randn(1, 3, 4)
    with torch.no_grad():
        before = m(x)
        m.load_state_dict(nn.ConvTranspose1d(3, 2, 3, stride=2).state_dict())
        after = m(x)
        assert not torch.allclose(before, after)
        assert nmse(after, F.conv_transpose1d(x, m.weight, m.bias, stride=2)) <= LAYER_TOL


# ---------------------------------------------------------------- tensors in, tensors out (public API)
def _check_tensor_io(conv, layer_cls, matmul, col2im, backend):
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 4, 6), torch.randn(4, 3, 3), torch.randn(3)
    ref = F.conv_transpose1d(x, w, b, stride=2, padding=1)
    y = conv(x, w, b, stride=2, padding=1, backend=backend)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and nmse(y, ref) <= LAYER_TOL
    y_np = conv(x.numpy(), w.numpy(), b.numpy(), stride=2, padding=1, backend=backend)
    assert isinstance(y_np, np.ndarray) and nmse(y_np, ref) <= LAYER_TOL                  # NumPy in, NumPy out
    assert conv(x.double(), w.double(), b, stride=2, padding=1, backend=backend).dtype == torch.float64
    for bad in (x.double(), x.half()):          # PyTorch refuses an input and weight of two dtypes
        with pytest.raises(TypeError, match=r"x \(torch.float(64|16)\) and weight \(torch.float32\) must have the same"):
            conv(bad, w, b, stride=2, padding=1, backend=backend)
    with pytest.raises(TypeError, match=r"x has dtype torch.int32; vkconvt computes floating tensors"):
        conv(x.int(), w.int(), backend=backend)
    with pytest.raises(RuntimeError, match="this vkconvt function computes no gradient.*vkconvt.torch"):
        conv(x, w.clone().requires_grad_(), backend=backend)
    with pytest.raises(ValueError, match="x is on device meta"):
        conv(torch.empty(2, 4, 6, device="meta"), w, backend=backend)
    with pytest.raises(ValueError, match="names the Vulkan device"):
        conv(x, w, device=torch.device("cuda"), backend=backend)
    layer = layer_cls(w, b, stride=2, padding=1, backend=backend)
    assert isinstance(layer(x), torch.Tensor) and nmse(layer(x), ref) <= LAYER_TOL
    assert isinstance(layer(x.numpy()), np.ndarray)
    a, bm = torch.randn(3, 5), torch.randn(5, 4)
    assert isinstance(matmul(a, bm, backend=backend), torch.Tensor) and nmse(matmul(a, bm, backend=backend), a @ bm) <= LAYER_TOL
    col = torch.randn(1, 2, 3, 4)
    out = col2im(col, stride=2, backend=backend)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 2, 9)


def test_interop_unwrap_wrap():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    arr = interop.unwrap("x", t)
    assert isinstance(arr, np.ndarray) and np.shares_memory(arr, t.numpy())
    assert interop.unwrap("x", [1, 2]) == [1, 2] and interop.wrap(arr, None) is arr
    back = interop.wrap(arr, t)
    assert isinstance(back, torch.Tensor) and back.data_ptr() == t.data_ptr()    # from_numpy: no copy
    assert interop.wrap(arr, t.half()).dtype == torch.float16
    assert interop.unwrap("x", t.to(torch.bfloat16)).dtype == np.float32
    for dtype in (torch.complex64, torch.int32, torch.int64, torch.bool, torch.uint8):
        with pytest.raises(TypeError, match=f"x has dtype {dtype}; vkconvt computes floating tensors.*x.float"):
            interop.unwrap("x", torch.zeros(2, dtype=dtype))
    with pytest.raises(TypeError, match="no parameter"):
        interop.tensor_io("nope")(vkconvt.matmul)


@pytest.mark.parametrize("backend", BACKENDS)
def test_public_api_tensors_in_tensors_out(backend):
    _check_tensor_io(vkconvt.conv_transpose1d, vkconvt.ConvTranspose1d, vkconvt.matmul, vkconvt.col2im_1d, backend)


def test_public_api_is_marked():
    for fn in (vkconvt.conv_transpose1d, vkconvt.matmul, vkconvt.col2im_1d, vkconvt.ConvTranspose1d.__init__,
               vkconvt.ConvTranspose1d.__call__):
        assert getattr(fn, "__vkconvt_tensor_io__", False), fn
    assert vkconvt.conv_transpose1d.__name__ == "conv_transpose1d"      # functools.wraps keeps the name


# ---------------------------------------------------------------- imports
def _python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_vkconvt_does_not_import_torch():
    r = _python("import sys, vkconvt, vkconvt.interop; print('torch' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_without_torch():
    r = _python("import sys; sys.modules['torch'] = None\n"
                "import numpy as np, vkconvt\n"
                "y = vkconvt.conv_transpose1d(np.ones((1, 2, 3)), np.ones((2, 1, 2)), backend='numpy')\n"
                "assert isinstance(y, np.ndarray) and y.shape == (1, 1, 4)\n"
                "for name in ('vkconvt.torch', 'vkconvt.torch_models'):\n"
                "    try:\n"
                "        __import__(name)\n"
                "    except ImportError as exc:\n"
                "        print(exc)\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and all("pip install torch" in s and "vkconvt[torch]" in s for s in lines), r.stdout


# ---------------------------------------------------------------- the HiFi-GAN V1 demo
def test_hifigan_v1_architecture():
    model = torch_models.hifigan_v1()
    ups = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0]) for m in model.ups]
    assert ups == [(512, 256, 16, 8, 4), (256, 128, 16, 8, 4), (128, 64, 4, 2, 1), (64, 32, 4, 2, 1)]
    assert len(model.resblocks) == 12 and model.conv_pre.kernel_size == (7,) and model.conv_post.out_channels == 1
    assert "weight_g" in dict(model.ups[0].named_parameters())                 # weight_norm hooks
    # 13.9 M parameters as published (jik876/hifi-gan V1 generator), plus the weight-norm gains
    assert 13.8e6 < sum(p.numel() for n, p in model.named_parameters() if not n.endswith("_g")) < 14.0e6


def test_hifigan_demo_runs(capsys):
    small = dict(resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]],
                 upsample_rates=[8, 2], upsample_kernel_sizes=[16, 4], upsample_initial_channel=32, num_mels=80)
    rc = torch_models.run_hifigan_demo(seconds=0.25, repeat=1, config=small)    # default backend
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "max |vkconvt - torch|" in out and "time per second of audio" in out and "outputs agree" in out


@pytest.mark.skipif(vulkan_reason() is not None, reason=f"Vulkan backend unavailable: {vulkan_reason()}")
def test_convert_warmup_records_every_layers_first_call():
    """convert(..., warmup=x) runs the model once: the first real call at that length compiles and
    records nothing more (one submission per converted layer)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose1d(8, 4, 4, stride=2), nn.ReLU(), nn.ConvTranspose1d(4, 2, 4, stride=2))
    x = torch.randn(1, 8, 20)
    conv = vt.convert(model, warmup=x)
    dev = vkconvt.backends.get("vulkan").dev
    before = dict(dev.counters)
    with torch.no_grad():
        out = conv(x)
        ref = model(x)
    assert dev.counters["recordings"] == before["recordings"]
    assert dev.counters["submissions"] - before["submissions"] == 2
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(vulkan_reason() is not None, reason=f"Vulkan backend unavailable: {vulkan_reason()}")
def test_converted_weights_change_detection_by_version_counter(monkeypatch):
    """A repeated call neither converts nor compares the weights (PyTorch's version counter says they
    are unchanged); in-place edits, load_state_dict and weight norm's g are seen; an edit through
    .data (not versioned) is seen after vkconvt.torch.refresh."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.ConvTranspose1d(6, 4, 5, stride=2)))
    conv = vt.convert(model)
    x = torch.randn(1, 6, 30)

    def check():
        with torch.no_grad():
            torch.testing.assert_close(conv(x), vt.restore(copy.deepcopy(conv))(x), rtol=1e-5, atol=1e-5)
    check()
    from vkconvt.torch import _op
    compared = []
    real = _op._same
    monkeypatch.setattr(_op, "_same", lambda a, b: compared.append(0 if a is None else a.size) or real(a, b))
    with torch.no_grad():
        conv(x)
    assert max(compared) < 6 * 4 * 5, "an unchanged module's weights were compared whole"     # the bias only
    layer = conv[0]
    with torch.no_grad():
        layer.parametrizations.weight.original0.mul_(1.5)       # weight norm's g, in place
    check()
    conv.load_state_dict({k: v * 0.5 for k, v in conv.state_dict().items()})
    check()
    with torch.no_grad():
        layer.bias.data.add_(3.0)                                # not versioned: needs refresh
    vt.refresh(conv)
    check()


@pytest.mark.skipif(vulkan_reason() is not None, reason=f"Vulkan backend unavailable: {vulkan_reason()}")
def test_consecutive_converted_layers_keep_activations_on_the_device():
    """Three converted layers in a row in an nn.Sequential: the input goes up once, the result comes
    down once; a forward hook on the middle one (something reads its output) breaks the chain there."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.ConvTranspose1d(16, 8, 4, stride=2, padding=1), nn.ConvTranspose1d(8, 8, 4, stride=2),
                          nn.ConvTranspose1d(8, 4, 3), nn.Tanh())
    conv = vt.convert(model)
    x = torch.randn(1, 16, 25)
    dev = vkconvt.backends.get("vulkan").dev
    with torch.inference_mode():
        ref = model(x)
        conv(x)
        before = dict(dev.counters)
        out = conv(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    up = dev.counters["bytes_up"] - before["bytes_up"]
    down = dev.counters["bytes_down"] - before["bytes_down"]
    assert up == x.numel() * 4 and down == ref.numel() * 4, (up, down)
    seen = []
    conv[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.inference_mode():
        torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-5)
    assert seen and vt.restore(conv) is conv and "forward" not in conv.__dict__
