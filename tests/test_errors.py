"""Every bad input raises TypeError/ValueError naming the parameter and its value, before any
device work (the backend is never asked to run)."""
import numpy as np
import pytest

import vkconvt
from vkconvt import backends

X = np.zeros((2, 4, 10), np.float32)
W = np.zeros((4, 3, 5), np.float32)

# (id, call kwargs overriding the good call, exception, regex the message must match)
ERRORS = [
    ("x_ndim4", dict(x=np.zeros((1, 2, 4, 10))), ValueError, r"x must have shape .*got shape \(1, 2, 4, 10\)"),
    ("x_ndim1", dict(x=np.zeros(10)), ValueError, r"x must have shape .*\(10,\)"),
    ("w_ndim2", dict(weight=np.zeros((4, 3))), ValueError, r"weight must have shape .*\(4, 3\)"),
    ("channel_mismatch", dict(weight=np.zeros((5, 3, 5))), ValueError, r"weight.shape\[0\].*C_in=4.*\(5, 3, 5\)"),
    ("groups_not_dividing", dict(groups=3), ValueError, r"groups=3 must divide .*C_in=4"),
    ("groups_zero", dict(groups=0), ValueError, r"groups must be >= 1, got 0"),
    ("stride_zero", dict(stride=0), ValueError, r"stride must be >= 1, got 0"),
    ("dilation_zero", dict(dilation=0), ValueError, r"dilation must be >= 1, got 0"),
    ("padding_negative", dict(padding=-1), ValueError, r"padding must be >= 0, got -1"),
    ("output_padding_negative", dict(output_padding=-1), ValueError, r"output_padding must be >= 0, got -1"),
    ("output_padding_too_big", dict(stride=2, dilation=1, output_padding=2), ValueError,
     r"output_padding must be smaller than either stride or dilation.*output_padding=2, stride=2, dilation=1"),
    ("stride_float", dict(stride=1.5), TypeError, r"stride must be an int, got 1.5"),
    ("padding_str", dict(padding="1"), TypeError, r"padding must be an int, got '1'"),
    ("stride_bool", dict(stride=True), TypeError, r"stride must be an int, got True"),
    ("stride_tuple2", dict(stride=(1, 2)), ValueError, r"stride must be an int or a 1-element tuple.*\(1, 2\)"),
    # an empty batch (N=0) gives PyTorch's empty result, not an error: tests/test_empty_inputs.py
    ("empty_batch_no_output", dict(x=np.zeros((0, 4, 10)), padding=20), ValueError, r"output length .* must be positive"),
    ("empty_length", dict(x=np.zeros((2, 4, 0))), ValueError, r"x has an empty dimension: shape \(2, 4, 0\)"),
    ("empty_kernel", dict(weight=np.zeros((4, 3, 0))), ValueError, r"weight has an empty dimension"),
    ("nonpositive_output", dict(padding=20), ValueError, r"output length .* = -26 must be positive"),
    ("x_strings", dict(x=np.array([["a", "b"]])), TypeError, r"x must have a real numeric dtype, got dtype <U1"),
    ("x_complex", dict(x=np.zeros((2, 4, 10), np.complex64)), TypeError,
     r"x must have a real numeric dtype, got dtype complex64"),
    ("weight_object", dict(weight=np.array([None], dtype=object)), TypeError, r"weight must have a real numeric dtype"),
    ("x_ragged", dict(x=[[1, 2], [3]]), TypeError, r"x must be array-like of numbers"),
    ("bias_shape", dict(bias=np.zeros(4)), ValueError, r"bias must have shape \(C_out,\) = \(3,\); got shape \(4,\)"),
    ("bias_dtype", dict(bias=np.array(["a", "b", "c"])), TypeError, r"bias must have a real numeric dtype"),
    ("algorithm_unknown", dict(algorithm="fft"), ValueError, r"algorithm must be one of auto, direct, gemm; got 'fft'"),
    ("backend_unknown", dict(backend="cuda"), ValueError, r"unknown backend 'cuda'; valid backends: vulkan, numpy, auto"),
    ("budget_list", dict(max_workspace_bytes=[1]), TypeError, r"max_workspace_bytes must be an int number of bytes, got \[1\]"),
    ("budget_zero", dict(max_workspace_bytes=0), ValueError, r"max_workspace_bytes must be positive, got 0"),
    ("budget_text", dict(max_workspace_bytes="lots"), ValueError, r"max_workspace_bytes must be a byte count .* got 'lots'"),
    # what PyTorch's conv_transpose1d refuses is refused, never silently cast (issue 23)
    ("x_int32", dict(x=np.zeros((2, 4, 10), np.int32)), TypeError, r"x must be floating point .*got dtype int32"),
    ("weight_int64", dict(weight=np.zeros((4, 3, 5), np.int64)), TypeError, r"weight must be floating point .*int64"),
    ("bias_bool", dict(bias=np.zeros(3, bool)), TypeError, r"bias must be floating point .*got dtype bool"),
    ("x_int_list", dict(x=[[1, 2, 3]] * 4), TypeError, r"x must be floating point .*got a list of int64 values"),
    ("x_half_weight_float", dict(x=X.astype(np.float16)), TypeError,
     r"x has dtype float16 and weight has dtype float32: their dtypes must match"),
    ("x_float_weight_half", dict(weight=W.astype(np.float16)), TypeError,
     r"x has dtype float32 and weight has dtype float16: their dtypes must match.*storage='float16'"),
    ("x_channels_last", dict(x=np.zeros((2, 10, 4), np.float32)), ValueError,
     r"C_in=10 .*x looks channels-last .*transpose"),
]
if backends.vulkan_reason() is None:
    ERRORS.append(("device_list", dict(device=[0]), TypeError,
                   r"device must be an index or a substring of a device name, got \[0\]"))


class Exploding:
    """A backend that fails the test if any work reaches it."""
    name = "exploding"

    def __getattr__(self, item):
        raise AssertionError(f"validation let a bad call reach the backend ({item})")


@pytest.mark.parametrize("kw,exc,pattern", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_conv_errors(kw, exc, pattern, monkeypatch):
    if "backend" not in kw and "device" not in kw:
        monkeypatch.setattr(backends, "get", lambda *a, **k: Exploding())
    call = dict(x=X, weight=W, bias=None)
    call.update(kw)
    with pytest.raises(exc, match=pattern):
        vkconvt.conv_transpose1d(**call)


MATMUL_ERRORS = [
    ("a_1d", np.zeros(3), np.zeros((3, 2)), ValueError, r"a must be 2-D .*\(3,\)"),
    ("inner", np.zeros((2, 3)), np.zeros((4, 2)), ValueError, r"inner dimensions differ.*\(2, 3\).*\(4, 2\)"),
    ("batch", np.zeros((2, 2, 3)), np.zeros((3, 3, 2)), ValueError, r"batch sizes differ"),
    # empty operands give PyTorch's empty (or, over K=0, zero) result: tests/test_empty_inputs.py
    ("empty_inner", np.zeros((0, 3)), np.zeros((2, 2)), ValueError, r"inner dimensions differ"),
    ("dtype", np.array([["x"]]), np.zeros((1, 1)), TypeError, r"a must have a real numeric dtype"),
]


@pytest.mark.parametrize("a,b,exc,pattern", [e[1:] for e in MATMUL_ERRORS], ids=[e[0] for e in MATMUL_ERRORS])
def test_matmul_errors(a, b, exc, pattern, monkeypatch):
    monkeypatch.setattr(backends, "get", lambda *a, **k: Exploding())
    with pytest.raises(exc, match=pattern):
        vkconvt.matmul(a, b)


COL2IM_ERRORS = [
    ("col_ndim2", dict(col=np.zeros((3, 4))), ValueError, r"col must have shape .*\(3, 4\)"),
    ("nonpositive_output", dict(col=np.zeros((1, 2, 3, 4)), padding=9), ValueError, r"output length -12 must be positive"),
    ("bias_shape", dict(col=np.zeros((1, 2, 3, 4)), bias=np.zeros(3)), ValueError, r"bias must have shape \(C,\) = \(2,\)"),
    ("stride_zero", dict(col=np.zeros((1, 2, 3, 4)), stride=0), ValueError, r"stride must be >= 1, got 0"),
]


@pytest.mark.parametrize("kw,exc,pattern", [e[1:] for e in COL2IM_ERRORS], ids=[e[0] for e in COL2IM_ERRORS])
def test_col2im_errors(kw, exc, pattern, monkeypatch):
    monkeypatch.setattr(backends, "get", lambda *a, **k: Exploding())
    with pytest.raises(exc, match=pattern):
        vkconvt.col2im_1d(**kw)


def test_layer_refuses_what_pytorch_refuses(monkeypatch):
    """The layer: integer weights when it is made; a float16 x for float32 weights at the call
    (also after a good call warmed its cache). A layer storing halves takes float32 x."""
    with pytest.raises(TypeError, match=r"weight must be floating point .*int32"):
        vkconvt.ConvTranspose1d(W.astype(np.int32), backend="numpy")
    layer = vkconvt.ConvTranspose1d(W, backend="numpy")
    layer(X)
    monkeypatch.setattr(backends, "get", lambda *a, **k: Exploding())
    with pytest.raises(TypeError, match=r"x has dtype float16 and weight has dtype float32: their dtypes must match"):
        layer(X.astype(np.float16))
    with pytest.raises(TypeError, match=r"x must be floating point .*int64"):
        layer(X.astype(np.int64))
    monkeypatch.undo()
    half = vkconvt.ConvTranspose1d(W, backend="numpy", storage="float16")
    assert half(X).dtype == np.float32 and half(X.astype(np.float16)).dtype == np.float16
