"""Run under VKCONVT_VALIDATE=1 by test_vulkan_validation.py (a separate process, since the layer
policy is fixed when the first Vulkan instance is made). Prints one line per checked case; the
Khronos layer's messages go to this process's stdout (vkconvt/data/vk_layer_settings.txt).

    python vk_validation_probe.py cases      representative ops, host-visible and staged tensors
    python vk_validation_probe.py hazard     negative control: two dependent dispatches in ONE
                                             sequence, which the layer must report
"""
import sys

import numpy as np

import vkconvt
from vkconvt import backends
from vkconvt.backends import vulkan as vkb
from cases import CASES, Case, assert_close


def run_cases():
    be = backends.get("vulkan")
    cases = [c for c in CASES if c.k < 1000 and c.l < 1000][:8] + [
        Case(n=2, c_in=6, c_out=4, l=30, k=5, stride=3, padding=2, output_padding=1, groups=2, bias=True)]
    for staged in (False, True):
        # staged: device-local tensors with staging copies, the path discrete GPUs take.
        be.dev.clear()
        be.dev.host_visible = not staged
        be.dev.tensor_type = be.dev.kp.TensorTypes.device if staged else be.dev.kp.TensorTypes.host
        be.dev._dummy = None
        for limits in ((be.device.max_storage_buffer_range, be.device.max_workgroup_count), (1024, (2, 2, 2))):
            be.max_buffer_bytes, be.max_groups = limits
            for case in cases:
                x, w, b = case.inputs()
                ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy")
                for algo in ("direct", "gemm"):
                    out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algo, backend="vulkan")
                    assert_close(out, ref)
                    print(f"ok staged={staged} buf={limits[0]} {algo} {case.id}", flush=True)
            rng = np.random.default_rng(0)
            a, m = rng.standard_normal((2, 33, 17)).astype(np.float32), rng.standard_normal((17, 40)).astype(np.float32)
            assert_close(vkconvt.matmul(a, m, backend="vulkan"), np.matmul(a.astype(np.float64), m))
            col = rng.standard_normal((2, 3, 4, 9)).astype(np.float32)
            assert_close(vkconvt.col2im_1d(col, 2, 1, 2, 1, backend="vulkan"),
                         vkconvt.col2im_1d(col, 2, 1, 2, 1, backend="numpy"))
            print(f"ok staged={staged} buf={limits[0]} matmul col2im_1d", flush=True)
    be.dev.clear()


def run_hazard():
    """matmul writes the column buffer, col2im reads it, recorded in one sequence: a real
    read-after-write hazard that synchronization validation must flag."""
    be = backends.get("vulkan")
    dev, kp = be.dev, be.dev.kp
    m, n, k = 8, 16, 4
    a, b, c, bias, out = dev.tensor(m * k), dev.tensor(k * n), dev.tensor(m * n), dev.tensor(1), dev.tensor(64)
    mm = dev.algorithm([a, b, c], "matmul", (1, 1, 1), be._spec("matmul"),
                       vkb.pack("matmul", M=m, N=n, K=k, lda=k, ldb=n, ldc=n, a_batch_mod=1, a_batch_stride=0,
                                b_batch_stride=0, c_batch_stride=0, b_offset=0, base_x=0, base_y=0, base_z=0))
    ci = dev.algorithm([c, bias, out], "col2im_1d", (1, 1, 1), be._spec("col2im_1d"),
                       vkb.pack("col2im_1d", C=1, K=8, lc=16, lbase=0, stride=1, padding=0, dilation=1, k_period=1,
                                tw=23, t0=0, t_begin=0, t_count=23, fresh_from=0, has_bias=0, g0=0, cocount=1,
                                cog=1, co0=0, base_x=0, base_y=0, base_z=0))
    seq = dev.sequence([kp.OpAlgoDispatch(mm), kp.OpAlgoDispatch(ci)])
    seq.eval()
    print("hazard sequence evaluated", flush=True)


if __name__ == "__main__":
    {"cases": run_cases, "hazard": run_hazard}[sys.argv[1]]()
