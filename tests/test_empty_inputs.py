"""Edge inputs answered as PyTorch answers them (issue 22, item 6): an empty batch (N == 0) gives
the empty result on every backend (conv_transpose1d, the layer, matmul, col2im_1d; matmul over
K == 0 gives zeros), while the empty inputs PyTorch refuses stay refused; activation parameters
beyond float32's range are refused (as PyTorch refuses such a scalar for a float32 op) instead of
turning every output into inf/NaN."""
import numpy as np
import pytest

import vkconvt
from vkconvt import backends
FLOAT32_MAX = float(np.finfo(np.float32).max)

torch = pytest.importorskip("torch")
F = torch.nn.functional
ALL = ["numpy"] + (["vulkan"] if backends.vulkan_reason() is None else [])

CONV = [dict(x=(0, 4, 5), w=(4, 3, 3), stride=2), dict(x=(0, 4, 5), w=(4, 3, 3), bias=True, padding=1, output_padding=1,
                                                            stride=2),
        dict(x=(0, 4, 9), w=(4, 3, 2), groups=2, dilation=3), dict(x=(0, 8, 7), w=(8, 1, 4), groups=8, stride=3)]


def conv_args(c):
    kw = {k: v for k, v in c.items() if k not in ("x", "w", "bias")}
    x, w = np.zeros(c["x"], np.float32), np.ones(c["w"], np.float32)
    b = np.ones(w.shape[1] * kw.get("groups", 1), np.float32) if c.get("bias") else None
    return x, w, b, kw


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("algorithm", ["auto", "direct", "gemm"])
@pytest.mark.parametrize("i", range(len(CONV)))
def test_an_empty_batch_gives_pytorchs_empty_result(i, algorithm, backend):
    x, w, b, kw = conv_args(CONV[i])
    want = F.conv_transpose1d(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b), **kw)
    out = vkconvt.conv_transpose1d(x, w, b, **kw, algorithm=algorithm, backend=backend)
    assert isinstance(out, np.ndarray) and out.shape == tuple(want.shape) and out.dtype == np.float32
    layer = vkconvt.ConvTranspose1d(w, b, **kw, algorithm=algorithm, backend=backend)
    assert layer(x).shape == tuple(want.shape)
    assert layer(np.ones((1,) + x.shape[1:], np.float32)).shape == (1,) + tuple(want.shape[1:])    # still computes
    half = vkconvt.conv_transpose1d(x.astype(np.float16), w.astype(np.float16), b, **kw, backend=backend)
    assert half.dtype == np.float16 and half.shape == tuple(want.shape)


@pytest.mark.parametrize("backend", ALL)
def test_empty_batches_in_and_out_of_torch(backend):
    x, w = torch.zeros(0, 4, 5), torch.ones(4, 3, 3)
    out = vkconvt.conv_transpose1d(x, w, stride=2, backend=backend)
    assert isinstance(out, torch.Tensor) and out.shape == F.conv_transpose1d(x, w, stride=2).shape
    out = vkconvt.conv_transpose1d(x.half(), w.half(), backend=backend)
    assert out.dtype == torch.float16 and out.shape == (0, 3, 7)


@pytest.mark.skipif("vulkan" not in ALL, reason="no Vulkan device")
def test_an_empty_batch_on_the_device_stays_there():
    out = vkconvt.conv_transpose1d(vkconvt.asarray(np.zeros((0, 4, 5), np.float32)), np.ones((4, 3, 3), np.float32))
    assert isinstance(out, vkconvt.DeviceArray) and out.shape == (0, 3, 7) and out.numpy().shape == (0, 3, 7)


MATMUL = [((0, 3), (3, 4)), ((2, 0), (0, 4)), ((2, 3), (3, 0)), ((0, 2, 3), (0, 3, 4)), ((0, 2, 3), (3, 4)),
          ((2, 3), (0, 3, 4)), ((5, 2, 0), (0, 4)), ((3, 2, 0), (3, 0, 4))]


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("shapes", MATMUL, ids=str)
def test_empty_matmuls_as_in_pytorch(shapes, backend):
    a, b = (np.ones(s, np.float32) for s in shapes)
    want = torch.matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    out = vkconvt.matmul(a, b, backend=backend)
    assert out.shape == want.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, want)            # K == 0: zeros, an empty sum


@pytest.mark.parametrize("backend", ALL)
def test_col2im_of_an_empty_batch(backend):
    col = np.zeros((0, 3, 2, 5), np.float32)
    out = vkconvt.col2im_1d(col, stride=2, padding=1, bias=np.ones(3, np.float32), backend=backend)
    want = F.fold(torch.zeros(0, 3 * 2, 5), (1, 8), (1, 2), padding=(0, 1), stride=(1, 2))
    assert out.shape == (0, 3, want.shape[-1]) and out.dtype == np.float32


REFUSED = [  # what PyTorch refuses stays refused, with or without an empty batch
    (lambda be: vkconvt.conv_transpose1d(np.zeros((0, 4, 1)), np.ones((4, 3, 1)), padding=3, backend=be),
     r"output length .* must be positive"),
    (lambda be: vkconvt.conv_transpose1d(np.zeros((0, 4, 5)), np.ones((4, 3, 3)), groups=3, backend=be),
     r"groups=3 must divide"),
    (lambda be: vkconvt.conv_transpose1d(np.zeros((2, 4, 0)), np.ones((4, 3, 3)), backend=be), r"x has an empty dimension"),
    (lambda be: vkconvt.conv_transpose1d(np.zeros((2, 0, 5)), np.ones((0, 3, 3)), backend=be), r"empty dimension"),
    (lambda be: vkconvt.conv_transpose1d(np.zeros((0, 4, 5)), np.ones((4, 3, 0)), backend=be), r"empty dimension"),
    (lambda be: vkconvt.conv_transpose1d(np.zeros((0, 4, 5)), np.ones((4, 3, 3)), backend="bogus"), r"unknown backend"),
    (lambda be: vkconvt.conv_transpose1d(np.zeros((0, 4, 5)), np.ones((4, 3, 3)), algorithm="fft"), r"algorithm must be"),
    (lambda be: vkconvt.col2im_1d(np.zeros((2, 0, 2, 5)), backend=be), r"col has an empty dimension"),
    (lambda be: vkconvt.col2im_1d(np.zeros((2, 3, 2, 0)), backend=be), r"col has an empty dimension"),
    (lambda be: vkconvt.matmul(np.zeros((0, 3)), np.zeros((4, 5)), backend=be), r"inner dimensions differ"),
]


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("i", range(len(REFUSED)))
def test_what_pytorch_refuses_stays_refused(i, backend):
    call, pattern = REFUSED[i]
    with pytest.raises(ValueError, match=pattern):
        call(backend)


# ------------------------------------------------------------------------------ activation parameters
SCALARS = [1e39, -1e39, 3.4028235e38, float(np.nextafter(FLOAT32_MAX, np.inf))]


@pytest.mark.parametrize("value", SCALARS, ids=str)
@pytest.mark.parametrize("name", ["negative_slope", "input_negative_slope"])
def test_a_slope_beyond_float32_is_refused_as_pytorch_does(name, value):
    with pytest.raises(RuntimeError, match="cannot be converted to type float without overflow"):
        F.leaky_relu(torch.zeros(3), value)
    act = dict(activation="leaky_relu") if name == "negative_slope" else dict(input_activation="leaky_relu")
    x, w = np.ones((1, 2, 5), np.float32), np.ones((2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=f"{name}=.* cannot be converted to float32 without overflow"):
        vkconvt.conv_transpose1d(x, w, **act, **{name: value}, backend="numpy")
    with pytest.raises(ValueError, match=f"{name}="):
        vkconvt.ConvTranspose1d(w, **act, **{name: value})


@pytest.mark.parametrize("backend", ALL)
def test_the_largest_float32_slope_is_accepted(backend):
    F.leaky_relu(torch.zeros(3), FLOAT32_MAX)
    x, w = -np.ones((1, 1, 2), np.float32), np.full((1, 1, 1), 1e-38, np.float32)
    out = vkconvt.conv_transpose1d(x, w, activation="leaky_relu", negative_slope=FLOAT32_MAX, backend=backend)
    assert np.isfinite(out).all() and (out < -1).all()


@pytest.mark.parametrize("kw,pattern", [
    (dict(activation="snake", alpha=[1e39, 1.0, 1.0]), r"alpha must be finite in float32"),
    (dict(activation="snakebeta", alpha=[1.0] * 3, beta=[1.0, -1e39, 1.0]), r"beta must be finite in float32"),
    (dict(activation="snake", alpha=[100.0, 1.0, 1.0], alpha_logscale=True), r"exp\(alpha\) is not a finite float32"),
    (dict(activation="snakebeta", alpha=[1.0] * 3, beta=[1.0, -1e-9, 1.0]), r"1 / \(beta \+ 1e-9\) is not a finite"),
], ids=["alpha", "beta", "exp-alpha", "beta-eps"])
def test_snake_parameters_beyond_float32_are_refused(kw, pattern):
    x, w = np.ones((1, 2, 5), np.float32), np.ones((2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=pattern):
        vkconvt.conv_transpose1d(x, w, **kw, backend="numpy")
    with pytest.raises(ValueError, match=pattern):
        vkconvt.ConvTranspose1d(w, **kw)


def test_a_huge_beta_is_fine_as_in_pytorch():
    """exp(100) overflows float32, but only its reciprocal is used: PyTorch computes x + 0 there."""
    x, w = np.ones((1, 2, 5), np.float32), np.ones((2, 3, 3), np.float32)
    kw = dict(activation="snakebeta", alpha=[1.0] * 3, beta=[1.0, 1.0, 100.0], alpha_logscale=True)
    out = vkconvt.conv_transpose1d(x, w, **kw, backend="numpy")
    plain = vkconvt.conv_transpose1d(x, w, backend="numpy")
    assert np.isfinite(out).all() and np.allclose(out[0, 2], plain[0, 2])
