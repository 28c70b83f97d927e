"""Run under VKCONVT_VALIDATE=1 by test_vulkan_validation.py (a separate process, since the layer
policy is fixed when the first Vulkan instance is made). Prints one line per checked case; the
Khronos layer's messages go to this process's stdout (vkconvt/data/vk_layer_settings.txt).

    python vk_validation_probe.py cases      representative ops in both memory modes (host-visible, and
                                             device-local with staging), every kernel variant of every op,
                                             float32 and float16, device arrays and calls that do not wait
    python vk_validation_probe.py hazard     negative control: two dependent dispatches in ONE
                                             sequence, which the layer must report
"""
import sys

import numpy as np

import vkconvt
from vkconvt import backends, kernels
from vkconvt.kernels import Col2imLocal, MatmulLocal
from vkconvt.schedule import make_dispatch
from cases import CASES, TOL, Case, assert_close


def variants(be):
    """Settings overrides: the device's default choice, then each kernel variant forced alone, then
    matmul_tiled splitting the reduction (split-K: BK 4, up to 8 slices, summed by col2im_1d)."""
    out = [{}]
    for op in kernels.OPS:
        for k in kernels.variants(op):
            if be.supports(k) and len(kernels.variants(op)) > 1:
                out.append({"kernels": {op: k.name}})
    if be.supports(kernels.KERNELS["matmul_tiled"]):
        out.append({"kernels": {"matmul": kernels.only("matmul_tiled", "cpu", (16, 8, 4, 1, 4, 8))}})
    return out


def used(runs):
    return sorted({d.kernel for _, _, sched in runs if sched is not None for st in sched.steps for d in st.dispatches})


def run_cases():
    be = backends.get("vulkan")
    cases = [c for c in CASES if c.k < 1000 and c.l < 1000][:8] + [
        Case(n=2, c_in=6, c_out=4, l=30, k=5, stride=3, padding=2, output_padding=1, groups=2, bias=True),
        Case(c_in=40, c_out=5, l=9, k=3, stride=2, bias=True)]      # splits the reduction with split-K
    for memory in ("host", "device"):
        # device: device-local buffers with staging copies in the call's command buffer (discrete GPUs)
        be.dev.clear()
        for override in variants(be):
            for limit in (be.device.max_storage_buffer_range, 1024):
                with vkconvt.settings.override(memory=memory, max_buffer_bytes=limit, **override):
                    run_variant(be, cases, memory, limit)
        with vkconvt.settings.override(memory=memory):
            run_device_arrays(cases, memory)
    be.dev.clear()


def run_variant(be, cases, memory, limit):
    for case in cases:
        x, w, b = case.inputs()
        ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy")
        for algo in ("direct", "gemm"):
            with vkconvt.trace() as runs:
                out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algo, backend="vulkan")
            assert_close(out, ref)
            print(f"ok memory={memory} buf={limit} {algo} {case.id} {used(runs)}", flush=True)
    for case in cases[1:4] + cases[-1:]:
        # float16 storage: the *_f16 twins (packed halves; matmul stores C in whole words)
        x, w, b = (None if a is None else a.astype(np.float16) for a in case.inputs())
        ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy")
        for algo in ("direct", "gemm"):
            with vkconvt.trace() as runs:
                out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algo, backend="vulkan")
            assert_close(out, ref, tol=TOL["float16"])
            print(f"ok memory={memory} buf={limit} {algo} float16 {case.id} {used(runs)}", flush=True)
    rng = np.random.default_rng(0)
    a, m = rng.standard_normal((2, 33, 17)).astype(np.float32), rng.standard_normal((17, 40)).astype(np.float32)
    assert_close(vkconvt.matmul(a, m, backend="vulkan"), np.matmul(a.astype(np.float64), m))
    col = rng.standard_normal((2, 3, 4, 9)).astype(np.float32)
    assert_close(vkconvt.col2im_1d(col, 2, 1, 2, 1, backend="vulkan"),
                 vkconvt.col2im_1d(col, 2, 1, 2, 1, backend="numpy"))
    print(f"ok memory={memory} buf={limit} matmul col2im_1d", flush=True)


def run_device_arrays(cases, memory):
    """Chains on device arrays (copies in and out recorded in the calls' command buffers), and calls
    that do not wait."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 20)).astype(np.float32)
    ws = [rng.standard_normal((8, 8, 4)).astype(np.float32) for _ in range(3)]
    ref = x
    for w in ws:
        ref = vkconvt.conv_transpose1d(ref, w, stride=2, padding=1, backend="numpy")
    for algo in ("direct", "gemm"):
        y = vkconvt.asarray(x)
        for w in ws:
            y = vkconvt.conv_transpose1d(y, w, stride=2, padding=1, algorithm=algo, wait=False)
        assert_close(y.numpy(), ref, tol=1e-6)
        pending = vkconvt.conv_transpose1d(x, ws[0], stride=2, padding=1, algorithm=algo, wait=False)
        assert_close(pending.result(), vkconvt.conv_transpose1d(x, ws[0], stride=2, padding=1, backend="numpy"))
        print(f"ok memory={memory} device arrays and async {algo}", flush=True)


def run_hazard():
    """matmul writes the column buffer, col2im reads it, recorded in one sequence: a real
    read-after-write hazard that synchronization validation must flag."""
    be = backends.get("vulkan")
    dev, kp = be.dev, be.dev.kp
    m, n, k = 8, 16, 4
    a, b, c, bias, out = (dev.buffer(r, s, "host") for r, s in (("ha", m * k), ("hb", k * n), ("hc", m * n),
                                                                 ("hbias", 1), ("hout", 64)))
    mm = make_dispatch("matmul", MatmulLocal(1, m, n, k, k, n, n, 1, 0, 0, 0, 0),
                       kernels.KERNELS["matmul"].defaults["cpu"])
    ci = make_dispatch("col2im_1d", Col2imLocal(1, 1, 8, 16, 1, 1, 0, 23, 0, 23, 0, False),
                       kernels.KERNELS["col2im_1d"].defaults["cpu"])
    ops = []
    for d, tensors in ((mm, [a, b, c]), (ci, [c, bias, out])):
        algo = dev.algorithm(d.kernel, tensors, d.spec, d.push(), 1)
        ops.append(kp.OpAlgoDispatch(algo, d.push()))
    seq = dev.sequence(ops)
    seq.eval()
    print("hazard sequence evaluated", flush=True)


if __name__ == "__main__":
    {"cases": run_cases, "hazard": run_hazard}[sys.argv[1]]()
