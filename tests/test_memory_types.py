"""Which memory type each buffer role takes (vkconvt/vulkan/memory.py), over real devices' memory-type
lists (tests/memory_types.py, each with its public source), and on this machine's device: staged
tensors get the chosen types, and `python -m vkconvt info` prints them."""
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import vkconvt
from conftest import needs_vulkan
from memory_types import REPORTS
from vkconvt.vulkan import memory
from vkconvt.vulkan.memory import AVOID, DEVICE_LOCAL, HOST_CACHED, HOST_COHERENT, HOST_VISIBLE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BY_NAME = {r.name: r for r in REPORTS}
# What memory.plan chooses: (device, upload, download) type indices per memory mode ("staged": device-
# local buffers with staging copies, the default on discrete GPUs; "host": host-visible buffers the
# kernels use directly, the default on integrated GPUs and CPUs). Partial lists: device and download only.
EXPECTED = {
    "NVIDIA GeForce RTX 3090": {"staged": (1, 2, 3), "host": (1, 4, 3)},
    "NVIDIA GeForce RTX 5070 Ti": {"staged": (1, 2, 3), "host": (1, 2, 3)},     # not the 214 MiB BAR heap
    "NVIDIA GeForce GTX 1060": {"staged": (7, 8, 9), "host": (7, 8, 9)},
    "AMD Radeon RX 5700 XT": {"staged": (0, 2, 5), "host": (0, 3, 5)},
    "AMD RADV POLARIS10 (Mesa 21": {"staged": (0, 1, 3), "host": (0, 1, 3)},
    "AMD RADV POLARIS10 (Mesa 19": {"staged": (1, 0, 2), "host": (1, 1, 2)},
    "AMD Radeon Graphics (RADV GFX1150": {"staged": (0, 2, 5), "host": (0, 3, 5)},
    "AMD RADV RAVEN": {"staged": (0, 0, 2), "host": (0, 0, 2)},
    "Intel UHD Graphics 630": {"staged": (0, 0, 0), "host": (0, 0, 0)},
    "Adreno (TM) 620": {"staged": (0, None, 2), "host": (0, None, 2)},
}


def expected(report):
    (key,) = [k for k in EXPECTED if report.name.startswith(k)]
    return EXPECTED[key]


def info_of(report):
    return SimpleNamespace(memory_types=report.types, heaps=report.heaps)


def test_every_report_has_a_source_and_an_expectation():
    assert len({r.name for r in REPORTS}) == len(REPORTS)
    for r in REPORTS:
        assert r.source.startswith("https://github.com/") and expected(r)
        assert all(0 <= heap < len(r.heaps) for _, heap in r.types), r.name
        # a type is DEVICE_LOCAL exactly when its heap is (the spec's rule: the copy is consistent)
        assert all(bool(flags & DEVICE_LOCAL) == r.heaps[heap][1] for flags, heap in r.types if flags), r.name


@pytest.mark.parametrize("mode", ["staged", "host"])
@pytest.mark.parametrize("report", REPORTS, ids=[re.sub(r"\W+", "-", r.name.split(";")[0]).strip("-") for r in REPORTS])
def test_choice_on_real_devices(report, mode):
    staged = mode == "staged"
    chosen = memory.plan(info_of(report), staged)
    dev_i, up_i, down_i = expected(report)[mode]
    assert chosen["device"] == dev_i and chosen["download"] == down_i, chosen
    if report.complete:
        assert chosen["upload"] == up_i, chosen
    flags = {role: report.types[i][0] for role, i in chosen.items()}
    heap = {role: report.types[i][1] for role, i in chosen.items()}
    others = report.types if report.complete else ()

    assert not any(f & AVOID for f in flags.values())                  # protected, lazy, AMD-coherent: never
    # device buffers: device-local, from the largest device-local heap, not host-visible if one is not
    assert flags["device"] & DEVICE_LOCAL
    local_sizes = [report.heaps[h][0] for f, h in report.types if f & DEVICE_LOCAL and not f & AVOID]
    assert report.heaps[heap["device"]][0] == max(local_sizes)
    if any(f & DEVICE_LOCAL and not f & HOST_VISIBLE and not f & AVOID for f, _ in report.types):
        assert not flags["device"] & HOST_VISIBLE
    # host-visible buffers are coherent (Kompute never flushes or invalidates)
    for role in ("upload", "download"):
        assert flags[role] & (HOST_VISIBLE | HOST_COHERENT) == HOST_VISIBLE | HOST_COHERENT, role
    # downloads: cached and coherent wherever such a type exists (fast CPU reads)
    if any(f & (HOST_VISIBLE | HOST_COHERENT | HOST_CACHED) == HOST_VISIBLE | HOST_COHERENT | HOST_CACHED
           and not f & AVOID for f, _ in report.types):
        assert flags["download"] & HOST_CACHED
    # staged uploads: write-combined (not cached) host memory wherever it exists, off device-local heaps if it can
    coherent = [(f, h) for f, h in others if f & (HOST_VISIBLE | HOST_COHERENT) == HOST_VISIBLE | HOST_COHERENT
                and not f & AVOID]
    if staged and any(not f & HOST_CACHED for f, _ in coherent):
        assert not flags["upload"] & HOST_CACHED
        if any(not f & HOST_CACHED and not f & DEVICE_LOCAL for f, _ in coherent):
            assert not flags["upload"] & DEVICE_LOCAL
    # host mode: no buffer in a small device-local heap (a BAR window, a carve-out) when another will do
    biggest = max(size for size, local in report.heaps if local)
    for role in ("upload", "download"):
        size, local = report.heaps[heap[role]]
        if local and 2 * size < biggest:
            assert all(report.heaps[h][1] and 2 * report.heaps[h][0] < biggest for _, h in coherent), role


def test_describe_names_flags_and_heaps():
    lines = memory.describe(info_of(BY_NAME[REPORTS[0].name]), staged=True)
    assert lines == ["device: type 1 (DEVICE_LOCAL; heap 0, 23.8 GiB)",
                     "upload: type 2 (HOST_VISIBLE|HOST_COHERENT; heap 1, 63.9 GiB)",
                     "download: type 3 (HOST_VISIBLE|HOST_COHERENT|HOST_CACHED; heap 1, 63.9 GiB)"]
    assert memory.flag_names(0xce) == "HOST_VISIBLE|HOST_COHERENT|HOST_CACHED|DEVICE_COHERENT_AMD|DEVICE_UNCACHED_AMD"
    with pytest.raises(ValueError, match="role must be one of"):
        memory.choose(REPORTS[0].types, REPORTS[0].heaps, "staging")


def test_no_usable_type_is_none():
    """A list with nothing host-visible and coherent (only AMD device-coherent ones): no choice, and
    Kompute's own rule applies (the caller passes -1)."""
    types, heaps = ((0x1, 0), (0xc6, 1)), ((1 << 30, True), (1 << 30, False))
    assert memory.plan(SimpleNamespace(memory_types=types, heaps=heaps), True) == \
        {"device": 0, "upload": None, "download": None}


@needs_vulkan
@pytest.mark.parametrize("mode", ["device", "host"])
def test_tensors_take_the_chosen_types(mode):
    """Every buffer a call allocates has the memory types memory.plan chose for its placement and
    direction (kp's Tensor.memory_type_indices: primary, staging; -1 where none)."""
    x = np.random.default_rng(0).standard_normal((2, 6, 40)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((6, 4, 5)).astype(np.float32)
    be = vkconvt.backends.get("vulkan")
    be.dev.clear()
    with vkconvt.settings.override(memory=mode):
        out = vkconvt.conv_transpose1d(x, w, None, 3, 1, backend="vulkan", algorithm="gemm")
    np.testing.assert_allclose(out, vkconvt.conv_transpose1d(x, w, None, 3, 1, backend="numpy"), rtol=1e-5, atol=1e-5)
    dev = be.dev
    seen = set()
    for (role, _, placement, direction, _), t in list(dev.pool.items()):
        types = dev.memory_types["host" if placement == "host" else "device"]
        want = {"host": (types[direction or "upload"], -1), "device": (types["device"], -1),
                "staged": (types["device"], types[direction or "upload"])}[placement]
        assert tuple(t.memory_type_indices()) == want, (role, placement, direction)
        seen.add(placement)
    assert seen >= ({"staged", "device"} if mode == "device" else {"host"}), seen


@needs_vulkan
@pytest.mark.parametrize("mode", ["device", "host"])
def test_info_prints_the_chosen_types(mode):
    env = dict(os.environ, VKCONVT_MEMORY=mode, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "vkconvt", "info"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    from vkconvt.vulkan import device, vkinfo
    d = device.resolve_device(None)
    lines = memory.describe(d, staged=mode == "device")
    assert f"memory mode '{mode}'" in r.stdout and "memory types: 0: " in r.stdout
    assert "chosen types: " + "; ".join(lines) in r.stdout, r.stdout
    assert all(v is not None for v in memory.plan(vkinfo.list_devices()[d.index], mode == "device").values())
