"""The backend registry, default choice, device selection and `python -m vkconvt info`."""
import os
import subprocess
import sys

import pytest

import vkconvt
from vkconvt import backends, kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VULKAN = backends.vulkan_reason()
needs_vulkan = pytest.mark.skipif(VULKAN is not None, reason=f"Vulkan backend unavailable: {VULKAN}")


def run_py(code, **env):
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)


def test_available_lists_every_backend():
    rows = {r["name"]: r for r in vkconvt.available()}
    assert set(rows) == {"numpy", "vulkan"}
    assert rows["numpy"]["available"] and rows["numpy"]["reason"] is None
    assert rows["vulkan"]["available"] == (rows["vulkan"]["reason"] is None)


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown backend 'metal'; valid backends: vulkan, numpy, auto"):
        backends.get("metal")


def test_env_default_backend(monkeypatch):
    monkeypatch.setenv("VKCONVT_BACKEND", "numpy")
    assert backends.resolve_name(None) == "numpy"
    assert backends.resolve_name("vulkan") == "vulkan"          # the call's argument wins
    monkeypatch.setenv("VKCONVT_BACKEND", "nope")
    with pytest.raises(ValueError, match=r"VKCONVT_BACKEND='nope' is not a backend; valid backends: vulkan, numpy, auto"):
        backends.resolve_name(None)
    monkeypatch.setenv("VKCONVT_BACKEND", "auto")          # the same names as backend=
    assert backends.resolve_name(None) in ("vulkan", "numpy")


def test_default_is_vulkan_when_a_device_exists(monkeypatch):
    monkeypatch.delenv("VKCONVT_BACKEND", raising=False)
    assert backends.resolve_name(None) == ("vulkan" if VULKAN is None else "numpy")


def test_without_kp_vulkan_says_why_and_numpy_serves():
    code = ("import sys; sys.modules['kp'] = None\n"
            "import vkconvt, numpy as np\n"
            "from vkconvt import backends\n"
            "row = [r for r in vkconvt.available() if r['name'] == 'vulkan'][0]\n"
            "assert not row['available'] and 'kp' in row['reason'], row\n"
            "try:\n    backends.get('vulkan')\nexcept vkconvt.BackendUnavailable as e:\n"
            "    assert e.backend == 'vulkan' and 'kp' in e.reason; print('raised:', e)\n"
            "assert backends.resolve_name(None) == 'numpy'\n"
            "print(vkconvt.conv_transpose1d([[1., 2.]], [[[1., 1.]]]).tolist())\n")
    r = run_py(code, VKCONVT_BACKEND="")
    assert r.returncode == 0, r.stderr
    assert "raised: backend 'vulkan' is unavailable" in r.stdout and "[[1.0, 3.0, 2.0]]" in r.stdout


def test_without_a_vulkan_driver_vulkan_says_why():
    code = ("import vkconvt\nrow = [r for r in vkconvt.available() if r['name'] == 'vulkan'][0]\n"
            "print(row['available'], row['reason'])\n")
    r = run_py(code, VK_DRIVER_FILES="/nonexistent/icd.json", VK_ICD_FILENAMES="/nonexistent/icd.json")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("False ") and ("driver" in r.stdout or "no device" in r.stdout), r.stdout


@needs_vulkan
def test_device_selection():
    from vkconvt.vulkan import device, vkinfo
    devs = vkinfo.list_devices()
    assert device.resolve_device(0) == devs[0]
    assert device.resolve_device(devs[0].name[:5]) == devs[0]
    assert device.resolve_device(None) == device.best_device()
    with pytest.raises(ValueError, match=r"device=99 is out of range"):
        device.resolve_device(99)
    with pytest.raises(ValueError, match=r"device='no-such-gpu' matches no Vulkan device name"):
        device.resolve_device("no-such-gpu")
    with pytest.raises(TypeError, match=r"device must be an index or a substring"):
        device.resolve_device(1.5)


@needs_vulkan
def test_limits_are_read_from_the_device():
    info = backends.get("vulkan").device
    assert info.max_storage_buffer_range > 0 and min(info.max_workgroup_count) > 0
    r = subprocess.run(["vulkaninfo"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip("vulkaninfo (Debian vulkan-tools) is not runnable here")
    assert f"maxStorageBufferRange                           = {info.max_storage_buffer_range}" in r.stdout \
        or f"maxStorageBufferRange = {info.max_storage_buffer_range}" in " ".join(r.stdout.split())


def test_info_command():
    r = subprocess.run([sys.executable, "-m", "vkconvt", "info"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "numpy   available" in r.stdout
    for name in kernels.KERNELS:
        assert name in r.stdout
    assert "UNUSABLE" not in r.stdout
    if VULKAN is None:
        assert "maxStorageBufferRange" in r.stdout and "*[" in r.stdout
