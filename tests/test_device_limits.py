"""Small and mobile GPUs: vkconvt's spec choice and planner against the limits of real devices
(tests/device_limits.py: Mali, Adreno, Intel, Apple via MoltenVK, Raspberry Pi, PowerVR, and the
large RX 7900 XTX, RTX 4090, H200), every subgroup size each may run with; then lavapipe runs the
case table for real as the smallest of them (16 KiB shared memory, 256 invocations) and as a large
GPU (the large-GPU tiles), results checked against the NumPy reference.

A spec fits a device when its workgroup's invocations, its x and y sizes and its shared memory are
within maxComputeWorkGroupInvocations, maxComputeWorkGroupSize and maxComputeSharedMemorySize.
"""
import os
import sys

import numpy as np
import pytest

import vkconvt
import device_limits
from cases import CASE_IDS, CASES, assert_close
from conftest import needs_vulkan

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
from gpu_compile import specs  # noqa: E402

ROWS = device_limits.DEVICES
SMALLEST = device_limits.smallest()
LARGE_ROW = device_limits.BY_NAME["RX 7900 XTX"]
CASE_CONVS = [specs.Conv(c.id, c.c_in, c.c_out, c.k, c.stride, c.padding, c.l, c.groups, c.n, c.output_padding,
                         c.dilation) for c in CASES]
MATMULS = specs.BENCH_MATMULS + (specs.Matmul("4096x512x86", 4096, 512, 86), specs.Matmul("7x13x5", 7, 13, 5),
                                 specs.Matmul("256x128x5504", 256, 128, 5504))


def misfits(limits, kernel, spec):
    """What of the device's limits the spec exceeds (empty when it fits)."""
    (x, y), inv, shared = specs.workgroup(kernel, spec)
    out = []
    if inv > limits.max_invocations:
        out.append(f"{inv} invocations > {limits.max_invocations}")
    if x > limits.max_size[0] or y > limits.max_size[1]:
        out.append(f"workgroup {x} x {y} > {limits.max_size[0]} x {limits.max_size[1]}")
    if shared > limits.max_shared:
        out.append(f"{shared} B shared > {limits.max_shared}")
    return out


def check_fit(limits, chosen):
    bad = [f"{k}{list(s)} ({use}): {', '.join(m)}" for k, s, use in chosen for m in [misfits(limits, k, s)] if m]
    assert not bad, f"{limits.name if hasattr(limits, 'name') else limits}: specs that do not fit:\n" + "\n".join(bad)


def test_the_table_covers_small_mobile_and_large_gpus():
    names = " ".join(d.name for d in ROWS)
    for want in ("Mali-G78", "Adreno 740", "Intel UHD 770", "Apple M2", "RX 7900 XTX", "RTX 4090", "H200"):
        assert want in names
    assert {8, 16, 32, 64, 128} <= {sg for d in ROWS for sg in d.subgroup_sizes()}
    assert any(d.subgroup_range for d in ROWS), "no device with a varying subgroup size"
    assert SMALLEST.max_shared == 16 * 1024 and SMALLEST.max_invocations <= 256
    for d in ROWS:
        assert d.sources, f"{d.name}: no source"
        for f in d.conservative:
            assert any(f in k and "CONSERVATIVE" in v for k, v in d.sources.items()), \
                f"{d.name}: {f} is a stand-in, its source line must say CONSERVATIVE and why"


@pytest.mark.parametrize("row,subgroup", [(d, sg) for d in ROWS for sg in d.subgroup_sizes()],
                         ids=lambda v: v.name if hasattr(v, "name") else f"sg{v}")
def test_spec_choice_fits_the_device(row, subgroup):
    """The bench's model layers, the case table and some matmuls, float32 and float16, direct and
    gemm: every dispatch's spec fits, and the GPU-shaped kernels are among them."""
    chosen = specs.chosen_specs(row, specs.bench_layers() + CASE_CONVS, MATMULS, subgroup=subgroup)
    check_fit(row, chosen)
    kernels_used = {k for k, _, _ in chosen}
    assert {"conv_transpose_1d_tiled", "matmul_tiled", "conv_transpose_1d_tiled_f16"} <= kernels_used, kernels_used


def test_every_gpu_default_spec_fits_the_smallest_device():
    """A GPU's kernel choice falls back to a kernel's defaults[gpu] where nothing else takes a
    piece (kernels.pick): those must fit the smallest device too."""
    check_fit(SMALLEST, [(k, specs.default_specs(k)["gpu"], "defaults[gpu]") for k in specs.kernel_names()])


def test_spec_choice_fits_the_vulkan_minimum():
    """Vulkan's required minimum (128 invocations, 16 KiB): the portable kernels halve their
    workgroups to fit (Kernel.shrink), the last fallback of kernels.pick included."""
    lim = device_limits.VULKAN_MINIMUM
    check_fit(lim, specs.chosen_specs(lim, specs.bench_layers() + CASE_CONVS, MATMULS))


@needs_vulkan
@pytest.mark.parametrize("row", ROWS, ids=lambda d: d.name)
def test_the_planner_fits_the_device(row):
    """The Vulkan backend's own planner, steered to the device's limits: every case of the case
    table and the bench's model layers, every algorithm, float32 and float16."""
    chosen = []
    with specs.forced_device(row):
        for conv in CASE_CONVS + specs.bench_layers():
            for algorithm in ("direct", "gemm", "auto"):
                for storage in ("float32", "float16"):
                    chosen += [(k, s, f"{conv.label} {algorithm} {storage}")
                               for k, s in specs.planned_specs(conv, algorithm, storage)]
    check_fit(row, chosen)
    assert any(specs.gpu_shaped(k) for k, _, _ in chosen)


@needs_vulkan
@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
@pytest.mark.parametrize("row", [SMALLEST, LARGE_ROW], ids=lambda d: d.name)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_table_runs_as_that_device(case, row, algorithm):
    """lavapipe plans and picks specs as the device would (its own limits are larger than the
    smallest device's; the large-GPU tiles need no more than its 32 KiB), runs the case, and the
    result matches the NumPy reference; what ran fits both the device and lavapipe."""
    x, w, b = case.inputs()
    ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm="direct", backend="numpy")
    lavapipe = specs.running_device()
    with specs.forced_device(row):
        out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algorithm, backend="vulkan")
        ran = [(k, s, case.id) for k, s in specs.last_run_specs()]
    assert_close(out, ref)
    check_fit(row, ran)
    check_fit(lavapipe, ran)


@needs_vulkan
@pytest.mark.parametrize("row", [SMALLEST, LARGE_ROW], ids=lambda d: d.name)
def test_matmul_and_float16_run_as_that_device(row):
    rng = np.random.default_rng(3)
    a, bm = rng.standard_normal((70, 45), dtype=np.float32), rng.standard_normal((45, 130), dtype=np.float32)
    case = CASES[-2]
    x, w, b = case.inputs()
    ref16 = vkconvt.conv_transpose1d(x.astype(np.float16), w.astype(np.float16), b.astype(np.float16),
                                     **case.kwargs(), algorithm="direct", backend="numpy")
    with specs.forced_device(row):
        c = vkconvt.matmul(a, bm, backend="vulkan")
        ran = [(k, s, "matmul") for k, s in specs.last_run_specs()]
        out16 = vkconvt.conv_transpose1d(x.astype(np.float16), w.astype(np.float16), b.astype(np.float16),
                                         **case.kwargs(), algorithm="direct", backend="vulkan")
        ran += [(k, s, "float16 " + case.id) for k, s in specs.last_run_specs()]
    assert_close(c, a.astype(np.float64) @ bm.astype(np.float64))
    assert_close(out16.astype(np.float32), ref16.astype(np.float32), tol=1e-6)
    assert {"matmul_tiled", "conv_transpose_1d_tiled_f16"} <= {k for k, _, _ in ran}, ran
    check_fit(row, ran)
