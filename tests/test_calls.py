"""The call cache and the backend's fast runner: a repeated call skips validation and planning,
yet never skips a check that could fail (other types, other settings) and never reuses stale
device data (weights or bias another call overwrote)."""
import numpy as np
import pytest

import vkconvt
from vkconvt import backends, calls
from cases import assert_close
from conftest import needs_vulkan

ALL = ["numpy"] + (["vulkan"] if backends.vulkan_reason() is None else [])
X = np.random.default_rng(0).standard_normal((2, 4, 9)).astype(np.float32)
W = np.random.default_rng(1).standard_normal((4, 3, 3)).astype(np.float32)


@pytest.mark.parametrize("backend", ALL)
def test_a_repeated_call_still_refuses_other_types(backend):
    for _ in range(3):
        vkconvt.conv_transpose1d(X, W, stride=2, backend=backend)
    with pytest.raises(TypeError, match=r"stride must be an int, got 2.0"):
        vkconvt.conv_transpose1d(X, W, stride=2.0, backend=backend)
    with pytest.raises(TypeError, match=r"stride must be an int, got True"):
        vkconvt.conv_transpose1d(X, W, stride=True, backend=backend)


@pytest.mark.parametrize("backend", ALL)
def test_repeated_calls_see_new_data_and_new_shapes(backend):
    ref = lambda x, w, b: vkconvt.conv_transpose1d(x, w, b, stride=2, padding=1, backend="numpy")
    rng = np.random.default_rng(2)
    for i in range(4):
        x = rng.standard_normal((2, 4, 9)).astype(np.float32)
        w = rng.standard_normal((4, 3, 3)).astype(np.float32)
        b = rng.standard_normal(3).astype(np.float32) if i % 2 else None
        assert_close(vkconvt.conv_transpose1d(x, w, b, stride=2, padding=1, backend=backend), ref(x, w, b))
        assert_close(vkconvt.conv_transpose1d(x[0], w, b, stride=2, padding=1, backend=backend), ref(x, w, b)[0])


@needs_vulkan
def test_a_changed_setting_replans(monkeypatch):
    with vkconvt.trace() as runs:
        vkconvt.conv_transpose1d(X, W, stride=2, backend="vulkan")
        vkconvt.conv_transpose1d(X, W, stride=2, backend="vulkan")
    assert len(runs[-1][2].steps) == 1
    with vkconvt.settings.override(max_buffer_bytes=64), vkconvt.trace() as runs:
        assert_close(vkconvt.conv_transpose1d(X, W, stride=2, backend="vulkan"),
                     vkconvt.conv_transpose1d(X, W, stride=2, backend="numpy"))
    assert len(runs[0][2].steps) > 1
    with vkconvt.trace() as runs:           # the setting is gone with its block
        vkconvt.conv_transpose1d(X, W, stride=2, backend="vulkan")
    assert len(runs[-1][2].steps) == 1
    monkeypatch.setenv("VKCONVT_BACKEND", "bogus")
    with pytest.raises(ValueError, match="VKCONVT_BACKEND='bogus'"):
        vkconvt.conv_transpose1d(X, W, stride=2)


@needs_vulkan
def test_layers_sharing_buffers_never_see_each_others_weights():
    """Two layers whose bias buffers share a size class but whose weights do not, called in turn:
    each must see its own weights and bias every time."""
    rng = np.random.default_rng(3)
    layers, refs = [], []
    for k in (3, 7):
        w = rng.standard_normal((4, 3, k)).astype(np.float32)
        b = rng.standard_normal(3).astype(np.float32)
        layers.append(vkconvt.ConvTranspose1d(w, b, stride=2, backend="vulkan"))
        refs.append(vkconvt.conv_transpose1d(X, w, b, stride=2, backend="numpy"))
    for _ in range(3):
        for layer, ref in zip(layers, refs):
            assert_close(layer(X), ref)
            assert_close(vkconvt.conv_transpose1d(X, W, stride=2, backend="vulkan"),
                         vkconvt.conv_transpose1d(X, W, stride=2, backend="numpy"))


@pytest.mark.parametrize("backend", ALL)
def test_repeated_calls_keep_dtype_and_storage_apart(backend):
    """Same shapes, other dtypes or storage: each repeated call (served by the call cache from the
    second on) returns its own dtype and its own rounding."""
    b = np.linspace(-1, 1, 3, dtype=np.float32)
    variants = [(X, W, b, {}, np.float32), (X.astype(np.float16), W.astype(np.float16), b.astype(np.float16), {},
                                              np.float16),
                (X, W, b, {"storage": "float16"}, np.float32), (X, W.astype(np.float16), None, {"storage": "float16"},
                                                                np.float32)]
    for _ in range(3):
        # float16 with float32 is refused (as PyTorch refuses it) unless storage= says how to store
        # them, also once the cache is warm
        for x, w in ((X.astype(np.float16), W), (X, W.astype(np.float16))):
            with pytest.raises(TypeError, match="their dtypes must match"):
                vkconvt.conv_transpose1d(x, w, b, stride=2, padding=1, backend=backend)
        for x, w, bias, kw, dtype in variants:
            out = vkconvt.conv_transpose1d(x, w, bias, stride=2, padding=1, backend=backend, **kw)
            half = dtype == np.float16 or kw
            r16 = lambda a: None if a is None else a.astype(np.float16 if half else np.float32).astype(np.float32)  # noqa: E731
            ref = vkconvt.conv_transpose1d(r16(x), r16(w), None if bias is None else bias.astype(np.float32),
                                           stride=2, padding=1, backend="numpy")
            assert out.dtype == dtype
            assert_close(out.astype(np.float32), ref, tol=1e-6 if half else 1e-7)


@needs_vulkan
def test_a_float16_layer_repeats_through_the_cache():
    layer = vkconvt.ConvTranspose1d(W.astype(np.float16), stride=2, backend="vulkan")
    ref = vkconvt.conv_transpose1d(X.astype(np.float16), W.astype(np.float16), stride=2, backend="numpy")
    before = len(calls._calls)
    outs = [layer(X.astype(np.float16)) for _ in range(3)]
    assert len(calls._calls) <= before + 1       # one entry serves the repeated calls
    for out in outs:
        assert out.dtype == np.float16
        np.testing.assert_array_equal(out, outs[0])
        assert_close(out.astype(np.float32), ref.astype(np.float32), tol=1e-6)
    assert layer(X).dtype == np.float32
