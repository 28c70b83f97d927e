"""How fast can any shader compute on this Vulkan device? A probe for the speed targets.

A shader with no memory access in its loop, only independent multiply-adds on NA vec4 registers per
lane (acc = acc * a + b), gives the device's arithmetic ceiling as its compiler builds it. On
lavapipe that ceiling is far below the CPU's own: llvmpipe lowers every fused multiply-add into a
multiply and an add (Mesa's gallivm NIR options set lower_ffma32) and uses 256-bit vectors, while
NumPy's BLAS uses FMA on the widest vectors the CPU has. Printed beside NumPy's 1024^3 `a @ b` and
vkconvt's matmul, measured side by side in this run, so that a ratio target can be read against
what the device can reach at all. Each result is checked against the closed form.

    .venv/bin/python scripts/lavapipe_ceiling.py
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import vkconvt  # noqa: E402
from vkconvt import timing
from vkconvt.vulkan import device  # noqa: E402

SHADER = """#version 450
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x = WG) in;
layout(std430, binding = 0) buffer B { vec4 o[]; };
layout(push_constant) uniform P { uint iters; float a; float b; } pc;
void main() {
    vec4 acc[NA];
    [[unroll]] for (int i = 0; i < NA; ++i) acc[i] = vec4(float(i) + float(gl_GlobalInvocationID.x));
    const vec4 a = vec4(pc.a), b = vec4(pc.b);
    for (uint it = 0u; it < pc.iters; ++it)
        [[unroll]] for (int i = 0; i < NA; ++i) acc[i] = acc[i] * a + b;
    vec4 s = vec4(0.0);
    [[unroll]] for (int i = 0; i < NA; ++i) s += acc[i];
    o[gl_GlobalInvocationID.x] = s;
}
"""
GROUPS, ITERS, A, B = 256, 2000, np.float32(0.999), np.float32(0.001)
SHAPES = [(8, 16), (8, 32), (16, 16), (16, 32), (64, 32)]       # (WG, NA)


def compile_probe(tmp, wg, na):
    src = os.path.join(tmp, f"p{wg}_{na}.comp")
    with open(src, "w") as f:
        f.write(SHADER.replace("WG", str(wg)).replace("NA", str(na)))
    subprocess.run(["glslangValidator", "-V", src, "-o", src + ".spv"], check=True, capture_output=True)
    with open(src + ".spv", "rb") as f:
        return f.read()


def expected(wg, na):
    """The closed form of NA accumulators after ITERS steps, summed (float64)."""
    gid = np.arange(GROUPS * wg, dtype=np.float64)
    a, b = np.float64(A), np.float64(B)
    an = a ** ITERS
    return sum(an * (i + gid) + b * (1 - an) / (1 - a) for i in range(na))


def main():
    if shutil.which("glslangValidator") is None:
        sys.exit("glslangValidator is needed (Debian: glslang-tools)")
    dev = device.get_device()
    kp, mgr = dev.kp, dev.mgr
    push = np.array([ITERS, A.view(np.uint32), B.view(np.uint32)], dtype=np.uint32)
    probes = []
    with tempfile.TemporaryDirectory() as tmp:
        for wg, na in SHAPES:
            t = mgr.tensor(np.zeros(GROUPS * wg * 4, dtype=np.float32))
            alg = mgr.algorithm([t], compile_probe(tmp, wg, na), (GROUPS, 1, 1), np.array([], np.uint32), push)
            mgr.sequence().record(kp.OpTensorSyncDevice([t])).eval()
            seq = mgr.sequence().record(kp.OpAlgoDispatch(alg))
            seq.eval()
            mgr.sequence().record(kp.OpTensorSyncLocal([t])).eval()
            got, want = t.data().reshape(-1, 4)[:, 0].astype(np.float64), expected(wg, na)
            err = float(np.abs(got - want).max() / np.abs(want).max())
            if err > 1e-4:
                sys.exit(f"probe WG={wg} NA={na} computed a wrong result (relative error {err:.2g})")
            probes.append((wg, na, seq, GROUPS * wg * ITERS * na * 4 * 2))
    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    # As the benchmark does: NumPy alone, then (its BLAS threads parked) the Vulkan work side by side.
    (t_np,) = timing.interleaved([lambda: a @ a], budget_s=1.0, min_runs=5, max_runs=20)
    vkconvt.matmul(a, a)
    timing.settle()
    fns = [p[2].eval for p in probes] + [lambda: vkconvt.matmul(a, a)]
    med = [float(np.median(t)) for t in timing.interleaved(fns, budget_s=3.0, min_runs=5, max_runs=20)]
    numpy_gf = 2 * 1024 ** 3 / float(np.median(t_np)) / 1e9
    mm_gf = 2 * 1024 ** 3 / med[-1] / 1e9
    print(f"device: {dev.info.name}")
    print(f"NumPy 1024^3 a @ b: {numpy_gf:.1f} GFLOP/s; vkconvt.matmul: {mm_gf:.1f} GFLOP/s ({mm_gf / numpy_gf:.2f} of NumPy)")
    print("multiply-add-only shader (no loads):")
    for (wg, na, _, flops), m in zip(probes, med):
        gf = flops / m / 1e9
        print(f"  workgroup {wg:3d} lanes, {na:2d} vec4 accumulators: {gf:6.1f} GFLOP/s = {gf / numpy_gf:.2f} of NumPy")


if __name__ == "__main__":
    main()
