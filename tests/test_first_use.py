"""The first use of a GPU with no tuning file (VKCONVT_TUNE): a one-line hint that `tune` measures it,
once per device and process; with VKCONVT_TUNE=auto a quick tune there and then, saved like `tune`'s,
whose failure never fails the call. lavapipe plays an untuned GPU here: its device class is forced
to "gpu" (it then plans with the GPU kernels, which it runs), with a fresh profile cache and an empty
cache directory."""
import os
import warnings

import numpy as np
import pytest

import vkconvt
from conftest import needs_vulkan
from vkconvt import backends, costmodel, env, kernels, profile, tune
from vkconvt.kernels import base

X = np.random.default_rng(0).standard_normal((1, 4, 13)).astype(np.float32)
W = np.random.default_rng(1).standard_normal((4, 6, 3)).astype(np.float32)


@pytest.fixture
def untuned_gpu(monkeypatch, tmp_path):
    """lavapipe as an untuned GPU: its DeviceInfo, with profiles made afresh."""
    monkeypatch.setenv("VKCONVT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VKCONVT_TUNE", raising=False)
    monkeypatch.setattr(base, "device_class", lambda info: "gpu")
    monkeypatch.setattr(profile, "device_class", lambda info: "gpu")
    for name in ("_loaded", "_unused", "_first_use_done"):
        monkeypatch.setattr(profile, name, type(getattr(profile, name))())
    profile._epoch[0] += 1          # a new profile epoch: no call cached before plans afresh
    yield backends.device_info(None)
    profile._epoch[0] += 1          # and none cached here is reused after


def call():
    """A conv_transpose1d call on the Vulkan device; checked against the NumPy backend."""
    out = vkconvt.conv_transpose1d(X, W, None, 2, backend="vulkan")
    np.testing.assert_allclose(out, vkconvt.conv_transpose1d(X, W, None, 2, backend="numpy"), rtol=1e-5, atol=1e-5)


def hints(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught if issubclass(w.category, profile.TuneHint)]


@needs_vulkan
def test_first_use_hints_once_per_device(untuned_gpu):
    first = hints(call)
    assert len(first) == 1, first
    assert untuned_gpu.name in first[0] and "`python -m vkconvt tune` measures this device" in first[0]
    assert "about a minute" in first[0] and "VKCONVT_TUNE=auto" in first[0]
    assert hints(call) == []                               # once per device and process
    assert not backends.get("vulkan").profile().tuned


@needs_vulkan
def test_no_hint_for_a_cpu_device_or_when_off_or_while_tuning(untuned_gpu, monkeypatch):
    with profile.tuning():
        assert hints(call) == []                           # `tune` itself is measuring
    monkeypatch.setenv("VKCONVT_TUNE", "off")
    assert hints(call) == []
    monkeypatch.undo()                                     # lavapipe as itself: a CPU device, shipped measured defaults
    assert kernels.device_class(untuned_gpu) == "cpu" and hints(call) == []


def test_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("VKCONVT_TUNE", "always")
    with pytest.raises(ValueError, match="VKCONVT_TUNE must be one of hint, auto, off"):
        env.tune_mode()
    monkeypatch.setenv("VKCONVT_TUNE", "AUTO")
    assert env.tune_mode() == "auto"


@needs_vulkan
def test_auto_tunes_once_saves_like_tune_and_plans_with_it(untuned_gpu, monkeypatch):
    runs = []

    def quick(info, path):                                 # stands in for tune.auto (slow on lavapipe)
        runs.append(info.name)
        data, _ = costmodel.shipped("generic-gpu")
        costmodel.save(info, dict(data, kernels={"matmul": [["matmul", [8, 1, 8, 8]]]}), path)
    monkeypatch.setattr(profile, "_auto_tuner", [quick])
    monkeypatch.setenv("VKCONVT_TUNE", "auto")
    said = hints(call)
    path = costmodel.cache_path(untuned_gpu)
    assert runs == [untuned_gpu.name] and os.path.isfile(path)
    assert any("running a quick tune now" in s and path in s for s in said), said
    assert any(s.startswith(f"vkconvt: VKCONVT_TUNE=auto: tuned {untuned_gpu.name} in ") for s in said), said
    prof = backends.get("vulkan").profile()
    assert prof.tuned and prof.source == path and prof.choice["matmul"][0][0] == "matmul"
    assert hints(call) == [] and runs == [untuned_gpu.name]        # once


@needs_vulkan
@pytest.mark.parametrize("failure", ["raises", "unwritable"])
def test_a_failing_auto_tune_never_fails_the_call(untuned_gpu, monkeypatch, tmp_path, failure):
    if failure == "raises":
        def broken(info, path):
            raise RuntimeError("the device went away")
        monkeypatch.setattr(profile, "_auto_tuner", [broken])
        expected = "RuntimeError: the device went away"
    else:                                                  # the real tune.auto: refuses before measuring
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("")
        monkeypatch.setenv("VKCONVT_CACHE_DIR", str(blocker / "cache"))
        monkeypatch.setattr(profile, "_auto_tuner", [tune.auto])
        expected = "OSError: cannot write to"
    monkeypatch.setenv("VKCONVT_TUNE", "auto")
    said = hints(call)                                     # the call itself succeeds (checked in call())
    assert any(f"failed ({expected}" in s and "going on with the shipped defaults" in s for s in said), said
    assert not backends.get("vulkan").profile().tuned
    assert hints(call) == []                               # reported once, not retried


@needs_vulkan
def test_a_real_quick_auto_tune_from_inside_a_call(untuned_gpu, monkeypatch):
    """tune.auto for real, on a one-shape calibration set: it plans and runs calls itself, from inside
    the first call's planning, without recursing into another first use."""
    shape = (1, 8, 8, 32, 4, 2, 1, 1)
    monkeypatch.setattr(tune, "CLASSES", [("dense", "conv_transpose_1d", "conv_transpose1d", "direct", [shape])])
    monkeypatch.setattr(tune, "QUICK", {"conv_transpose1d": [shape]})
    monkeypatch.setattr(profile, "_auto_tuner", [tune.auto])
    monkeypatch.setenv("VKCONVT_TUNE", "auto")
    said = hints(call)
    assert any("tuned" in s for s in said) and not any("failed" in s for s in said), said
    prof = backends.get("vulkan").profile()
    assert prof.tuned and os.path.isfile(costmodel.cache_path(untuned_gpu))
    assert "vulkan" in costmodel.read_untrusted(prof.source)
