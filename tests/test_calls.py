"""The call cache and the backend's fast runner: a repeated call skips validation and planning,
yet never skips a check that could fail (other types, other settings) and never reuses stale
device data (weights or bias another call overwrote)."""
import numpy as np
import pytest

import vkconvt
from vkconvt import backends
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
    be = backends.get("vulkan")
    vkconvt.conv_transpose1d(X, W, stride=2, backend="vulkan")
    vkconvt.conv_transpose1d(X, W, stride=2, backend="vulkan")
    assert len(be.last_run.schedule.steps) == 1
    saved = be.max_buffer_bytes
    try:
        be.max_buffer_bytes = 64
        assert_close(vkconvt.conv_transpose1d(X, W, stride=2, backend="vulkan"),
                     vkconvt.conv_transpose1d(X, W, stride=2, backend="numpy"))
        assert len(be.last_run.schedule.steps) > 1
    finally:
        be.max_buffer_bytes = saved
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
