"""Planning: the plan object and explain, workspace bytes without a device, the budget and its
chunking (peak workspace asserted from the package's own accounting), running out of memory,
backend='auto', device selection, the layer object and tuning."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import vkconvt
from vkconvt import backends, cache, kernels, planner
from vkconvt.errors import DeviceOutOfMemory, WorkspaceTooSmall
from cases import Case, assert_close

from conftest import VULKAN_REASON as VULKAN, needs_vulkan
MiB = 1 << 20


def test_workspace_bytes_without_a_device():
    ws = vkconvt.workspace_bytes((2, 64, 1000), (64, 32, 16), stride=8)
    assert ws == {"direct": 0, "gemm": 4 * 32 * 16 * 2 * 1000}
    groups = vkconvt.workspace_bytes((1, 8, 100), (8, 3, 5), groups=4)      # C_out = 12
    assert groups["gemm"] == 4 * 12 * 5 * 100
    chunked = vkconvt.workspace_bytes((2, 64, 1000), (64, 32, 16), stride=8, max_workspace_bytes=100_000)
    assert 0 < chunked["gemm"] <= 100_000


def test_budget_resolution(monkeypatch):
    monkeypatch.delenv("VKCONVT_MAX_WORKSPACE", raising=False)
    assert planner.resolve_budget(123) == 123
    monkeypatch.setenv("VKCONVT_MAX_WORKSPACE", "64M")
    assert planner.resolve_budget() == 64 * MiB
    vkconvt.set_max_workspace_bytes(5 * MiB)
    try:
        assert planner.resolve_budget() == 5 * MiB            # the global setting beats the environment
        assert planner.resolve_budget(7) == 7                 # the call's argument beats both
    finally:
        vkconvt.set_max_workspace_bytes(None)
    monkeypatch.setenv("VKCONVT_MAX_WORKSPACE", "lots")
    with pytest.raises(ValueError, match=r"VKCONVT_MAX_WORKSPACE must be a byte count .* got 'lots'"):
        planner.resolve_budget()
    with pytest.raises(ValueError, match=r"max_workspace_bytes must be positive, got 0"):
        planner.resolve_budget(0)
    with pytest.raises(TypeError, match=r"max_workspace_bytes must be an int number of bytes, got 1.5"):
        planner.resolve_budget(1.5)


@needs_vulkan
def test_default_budget_comes_from_the_device_heaps(monkeypatch):
    monkeypatch.delenv("VKCONVT_MAX_WORKSPACE", raising=False)
    info = backends.get("vulkan").device
    assert planner.resolve_budget(None, info) == info.device_local_bytes // 4


@needs_vulkan
def test_plan_and_explain():
    pl = vkconvt.plan((1, 512, 86), (512, 256, 16), stride=8, padding=4)
    assert pl.algorithm in ("direct", "gemm") and pl.backend == "vulkan"
    assert set(pl.predicted_s) == {"direct", "gemm"} and all(t > 0 for t in pl.predicted_s.values())
    assert pl.algorithm == min(pl.predicted_s, key=pl.predicted_s.get)
    # the column buffer: 256*16 rows of the 86 inputs, padded to the matmul kernel's alignment
    al = kernels.KERNELS[backends.get("vulkan").profile().choice["matmul"][0][0]].align
    assert pl.workspace_bytes["direct"] == 0 and pl.workspace_bytes["gemm"] == 256 * 16 * kernels.round_up(86, al) * 4
    text = pl.explain()
    assert "chosen: vulkan" in text and "predicted" in text and "fastest" in text
    forced = vkconvt.plan((1, 512, 86), (512, 256, 16), stride=8, padding=4, algorithm="gemm")
    assert forced.algorithm == "gemm" and forced.reason == "requested"


def test_explain_command():
    r = subprocess.run([sys.executable, "-m", "vkconvt", "explain", "--x", "1,512,86", "--w", "512,256,16",
                        "--stride", "8", "--padding", "4"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "N1_Ci512_Co256_L86_K16_s8_p4" in r.stdout and "chosen:" in r.stdout


@needs_vulkan
@pytest.mark.slow
def test_gemm_under_a_64MiB_budget_when_unchunked_needs_800MB():
    be = backends.get("vulkan")
    case = Case(n=2, c_in=4, c_out=512, l=6400, k=32, stride=4, padding=3, bias=True)
    x, w, b = case.inputs()
    p = vkconvt.params.params_from_shapes(x.shape, w.shape, **case.kwargs(), bias=True)[0]
    assert p.gemm_column_bytes() >= 800e6
    be.dev.clear()
    be.dev.reset_peak()
    out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm="gemm", max_workspace_bytes=64 * MiB)
    peak = be.dev.workspace_peak_bytes
    be.dev.clear()
    assert 0 < peak <= 64 * MiB, f"peak workspace {peak} bytes"
    assert_close(out, vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy"))


@needs_vulkan
def test_budget_below_one_column_raises_for_gemm_and_auto_goes_direct():
    case = Case(c_in=4, c_out=4, l=20, k=64, stride=2)
    x, w, _ = case.inputs()
    with pytest.raises(WorkspaceTooSmall, match=r"needs at least \d+ bytes of workspace .* budget is 100 bytes") as ei:
        vkconvt.conv_transpose1d(x, w, stride=2, algorithm="gemm", max_workspace_bytes=100)
    assert isinstance(ei.value, MemoryError) and ei.value.budget_bytes == 100
    out = vkconvt.conv_transpose1d(x, w, stride=2, algorithm="auto", max_workspace_bytes=100)
    assert_close(out, vkconvt.conv_transpose1d(x, w, stride=2, backend="numpy"))
    assert "gemm" in vkconvt.plan(x.shape, w.shape, stride=2, max_workspace_bytes=100).infeasible


@needs_vulkan
def test_out_of_device_memory(monkeypatch):
    """A device that cannot allocate more than 64 KiB of workspace at once: auto retries (smaller
    chunks, then direct) and succeeds; an explicit gemm raises a MemoryError naming bytes and
    budget; nothing stays allocated; the process goes on working."""
    be = backends.get("vulkan")
    real = type(be.dev).new_tensor

    def small_device(self, nwords, placement, direction=None, workspace=False):
        if 4 * nwords > 64 * 1024 and workspace:
            raise DeviceOutOfMemory(f"simulated: cannot allocate {4 * nwords} bytes", needed_bytes=4 * nwords)
        return real(self, nwords, placement, direction, workspace)

    case = Case(c_in=64, c_out=64, l=400, k=16, stride=8, padding=4)
    x, w, _ = case.inputs()
    ref = vkconvt.conv_transpose1d(x, w, **case.kwargs(), backend="numpy")
    be.dev.clear()
    monkeypatch.setattr(type(be.dev), "new_tensor", small_device)
    cache.clear_all()
    # make auto choose gemm first, so the retry path runs
    monkeypatch.setattr(planner, "_choose", lambda predicted, infeasible: ("gemm", "forced by the test"))
    assert_close(vkconvt.conv_transpose1d(x, w, **case.kwargs(), algorithm="auto"), ref)
    with pytest.raises(DeviceOutOfMemory, match=r"algorithm 'gemm' ran out of device memory \(workspace budget \d+ bytes") as ei:
        vkconvt.conv_transpose1d(x, w, **case.kwargs(), algorithm="gemm")
    assert isinstance(ei.value, MemoryError) and ei.value.needed_bytes > 64 * 1024
    assert be.dev.workspace_bytes == 0
    monkeypatch.undo()
    assert_close(vkconvt.conv_transpose1d(x, w, **case.kwargs(), algorithm="gemm"), ref)


def test_backend_auto_picks_a_backend_and_says_why():
    pl = vkconvt.plan((1, 16, 50), (16, 8, 4), stride=2, backend="auto")
    assert pl.backend in ("numpy", "vulkan") and pl.auto_backend
    if VULKAN is None:
        assert "numpy" in pl.predicted_s and pl.reason
    x = np.random.default_rng(0).standard_normal((1, 16, 50)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((16, 8, 4)).astype(np.float32)
    assert_close(vkconvt.conv_transpose1d(x, w, stride=2, backend="auto"),
                 vkconvt.conv_transpose1d(x, w, stride=2, backend="numpy"))


@needs_vulkan
def test_device_by_index_or_name_shares_one_manager():
    from vkconvt.vulkan import device
    info = backends.get("vulkan").device
    assert device.get_device(info.index) is device.get_device(info.name[:6])
    x, w, _ = Case(c_in=3, c_out=2, l=9, k=3, stride=2).inputs()
    a = vkconvt.conv_transpose1d(x, w, stride=2, backend="vulkan", device=info.index)
    b = vkconvt.conv_transpose1d(x, w, stride=2, backend="vulkan", device=info.name[:6])
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("vulkan", marks=needs_vulkan)])
def test_layer_keeps_weights(backend):
    case = Case(n=2, c_in=6, c_out=4, l=30, k=5, stride=3, padding=2, output_padding=1, groups=2, bias=True)
    x, w, b = case.inputs()
    layer = vkconvt.ConvTranspose1d(w, b, **case.kwargs(), backend=backend)
    ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy")
    assert_close(layer(x), ref)
    w[:] = 0                                      # the layer owns a copy
    assert_close(layer(x), ref)
    assert_close(layer(x[0]), ref[0])             # unbatched input
    with pytest.raises(ValueError, match=r"weight.shape\[0\] must equal the input channels C_in=5"):
        layer(np.zeros((1, 5, 30)))


@needs_vulkan
def test_tune_writes_a_model_that_plans_use(tmp_path):
    env = dict(os.environ, VKCONVT_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "vkconvt", "tune", "--quick"], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (path,) = list(tmp_path.glob("costmodel-*.json"))
    data = json.loads(path.read_text())
    assert data["vulkan"] and data["numpy"] and data["fit"]["vulkan"]["n"] > 0
    assert any(v > 0 for v in data["vulkan"].values())
    code = "import vkconvt; print(vkconvt.plan((1, 64, 100), (64, 32, 8), stride=4).model_source)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout.strip() == str(path), r.stderr
