"""A repeated call on host arrays (a layer's, or a function's exactly repeated) is replayed
(calls.CallReplay, vulkan/replay.py): the recorded sequence submitted once with only x's rows
written (and a function's one-off weights packed) and the result's rows read. It must give
what the full path gives, count what the full path counts, and step aside wherever the full path
would do more (another shape, settings or device state changed, a trace, a recording evicted,
another layer's weights in the buffers)."""
import numpy as np
import pytest

import vkconvt
from vkconvt.vulkan import execute
from cases import CASE_IDS, CASES, assert_close
from conftest import needs_vulkan
from test_execution import counted, dev

pytestmark = needs_vulkan


def no_full_path(monkeypatch):
    """Make the full path fail: a call that still succeeds was replayed."""
    def refuse(*a, **k):
        raise AssertionError("the full path ran")
    monkeypatch.setattr(execute, "run", refuse)


@pytest.mark.parametrize("memory", ("host", "device"))
@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_replay_matches_the_full_path_and_its_counts(case, algorithm, memory, monkeypatch):
    x, w, b = case.inputs()
    x2 = case.inputs(seed=1)[0]
    ref2 = vkconvt.conv_transpose1d(x2, w, b, **case.kwargs(), backend="numpy")
    with vkconvt.settings.override(memory=memory):
        layer = vkconvt.ConvTranspose1d(w, b, **case.kwargs(), algorithm=algorithm, backend="vulkan")
        with vkconvt.trace() as runs:
            layer(x)                                 # the full path (a trace is active: never replayed)
        _, full = counted(lambda: layer(x))          # the replay's counts (or the full path's)
        sched = runs[-1][2]
        if len(sched.steps) != 1:                    # several pieces: not replayed, the full path every time
            assert layer._replay is None
            return
        assert layer._replay is not None
        with monkeypatch.context() as m:
            no_full_path(m)
            out, n = counted(lambda: layer(x2))
        with vkconvt.trace():
            _, traced = counted(lambda: layer(x2))  # the full path, counted the same
    assert_close(out, ref2)
    assert n == full == traced
    assert n["submissions"] == n["fence_waits"] == 1 and n["recordings"] == 0


@pytest.mark.parametrize("memory", ("host", "device"))
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_a_repeated_function_call_is_replayed_with_its_weights_packed(case, memory, monkeypatch):
    x, w, b = case.inputs()
    x2, w2, b2 = case.inputs(seed=1)
    call = lambda x, w, b: vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="vulkan")  # noqa: E731
    with vkconvt.settings.override(memory=memory):
        call(x, w, b)
        with vkconvt.trace() as runs:
            _, full = counted(lambda: call(x, w, b))     # a hit: the full path (a trace), which makes the replay
        call(x, w, b)
        if len(runs[-1][2].steps) != 1:
            return
        with monkeypatch.context() as m:
            no_full_path(m)
            out, n = counted(lambda: call(x2, w2, b2))   # other weights of the same shapes: packed again
    assert_close(out, vkconvt.conv_transpose1d(x2, w2, b2, **case.kwargs(), backend="numpy"))
    assert n == full and n["submissions"] == n["fence_waits"] == 1


def test_a_replayed_function_call_with_non_finite_weights_takes_the_exact_path():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((1, 8, 40)).astype(np.float32), rng.standard_normal((8, 8, 4)).astype(np.float32)
    for _ in range(3):
        vkconvt.conv_transpose1d(x, w, stride=2, backend="vulkan")
    w_inf = w.copy()
    w_inf[3, 2, 1] = np.inf
    out = vkconvt.conv_transpose1d(x, w_inf, stride=2, backend="vulkan")
    ref = vkconvt.conv_transpose1d(x, w_inf, stride=2, backend="numpy")
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(out[fin], ref[fin], rtol=1e-4, atol=1e-4)


def test_replay_steps_aside_when_anything_changes(monkeypatch):
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((6, 4, 5)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    w2 = rng.standard_normal((6, 4, 5)).astype(np.float32)
    x = rng.standard_normal((2, 6, 11)).astype(np.float32)
    ref = lambda w, x: vkconvt.conv_transpose1d(x, w, b, stride=3, padding=1, backend="numpy")  # noqa: E731
    a = vkconvt.ConvTranspose1d(w, b, stride=3, padding=1, backend="vulkan")
    c = vkconvt.ConvTranspose1d(w2, b, stride=3, padding=1, backend="vulkan")    # same configuration
    for _ in range(3):                          # alternating: each keeps its own weights on the device
        assert_close(a(x), ref(w, x))
        assert_close(c(x), ref(w2, x))
    assert a._replay is not None and c._replay is not None
    # another shape, unbatched, float64, non-contiguous: the full path (and a new replay for the shape)
    x3 = rng.standard_normal((1, 6, 7)).astype(np.float32)
    assert_close(a(x3), ref(w, x3))
    assert_close(a(x[0]), ref(w, x[0]))
    assert_close(a(x.astype(np.float64)), ref(w, x))
    xt = np.asfortranarray(x)
    assert_close(a(xt), ref(w, x))
    # the recordings evicted (out of device memory frees everything): the full path records again
    a(x)
    dev().clear()
    out, n = counted(lambda: a(x))
    assert_close(out, ref(w, x))
    assert n["recordings"] >= 1
    # settings changed: the replay steps aside
    a(x)
    with vkconvt.settings.override(memory="device" if dev().mode() == "host" else "host"):
        out, n = counted(lambda: a(x))
        assert_close(out, ref(w, x))
        assert n["recordings"] >= 1
    # a trace sees the call
    a(x)
    want = ref(w, x)
    with vkconvt.trace() as runs:
        assert_close(a(x), want)
    assert [r[:2] for r in runs] == [("conv_transpose1d", "vulkan")]
    # a call left in flight by wait=False is landed first (the replay declines while one is pending)
    a(x)
    pending = c(x, wait=False)
    assert_close(a(x), ref(w, x))
    assert_close(pending.result(), ref(w2, x))
    # replayed while every check holds
    a(x)
    with monkeypatch.context() as m:
        no_full_path(m)
        assert_close(a(x), ref(w, x))


def test_replay_of_a_layer_with_fused_activations():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 4, 3)).astype(np.float32)
    alpha = rng.random(4).astype(np.float32) + 0.5
    x = rng.standard_normal((1, 4, 9)).astype(np.float32)
    layer = vkconvt.ConvTranspose1d(w, stride=2, activation="snake", alpha=alpha, input_activation="leaky_relu",
                                    backend="vulkan")
    ref = vkconvt.conv_transpose1d(x, w, stride=2, activation="snake", alpha=alpha, input_activation="leaky_relu",
                                   backend="numpy")
    for _ in range(3):
        assert_close(layer(x), ref)
