"""A toy op declared outside the package: repeat_1d, out[n, c, t] = x[n, c, t // r] (nearest-neighbour
upsampling), with its own tiny kernel compiled here. Registering it is all it takes for the generic
layers (planner, cost model, explain, the Vulkan and NumPy backends, the call path) to run it:
tests/test_architecture.py proves it."""
import os
import shutil
import sys
from dataclasses import dataclass

import numpy as np

from vkconvt import kernels, ops
from vkconvt.kernels import Kernel, cdiv
from vkconvt.schedule import Buffer, Schedule, Step, Transfer, make_dispatch, runs, split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHADER = """#version 450
#extension GL_GOOGLE_include_directive : require
// kernel "repeat_1d": out[row, t] = x[row, t / r] (rows of L inputs, L*r outputs)
layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(std430, binding = 0) readonly buffer BufX { float x[]; };       // (rows, L)
layout(std430, binding = 1) writeonly buffer BufOut { float outp[]; }; // (rows, L*r)
layout(push_constant) uniform Push { uint L; uint r; uint grid_x; uint grid_y; uint grid_z; } pc;
#include "common.glsl"
void group(uvec3 G) {
    const uint t = G.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    const uint lo = pc.L * pc.r;
    if (t >= lo) return;
    outp[G.y * lo + t] = x[G.y * pc.L + t / pc.r];
}
VKCONVT_MAIN
"""


@dataclass(frozen=True)
class RepeatParams:
    n: int
    c: int
    l: int
    r: int

    def tag(self):
        return f"N{self.n}_C{self.c}_L{self.l}_r{self.r}"


@dataclass(frozen=True)
class RepeatLocal:
    rows: int
    L: int
    r: int


def setup(loc, spec):
    return (cdiv(loc.L * loc.r, spec.wg), loc.rows, 1), dict(L=loc.L, r=loc.r)


def work(loc, spec, grid):
    return {"out": float(loc.rows * loc.L * loc.r)}


class RepeatOp(ops.Op):
    def schedule(self, p, algorithm, limits, budget, choice, complete=True, safe=False):
        rows, lo = p.n * p.c, p.l * p.r

        def over(sz):       # rows of x and of the output must fit a buffer
            return ["rows"] if 4 * sz["rows"] * lo > limits.max_buffer_bytes else None

        def fail(sz):
            raise MemoryError("one output row does not fit a buffer")
        g = split(dict(rows=rows), over, fail)
        sched = Schedule(self.name, p, algorithm, limits, dict(choice), budget=budget)
        sched.key = (self.name, p, limits, tuple(sorted(choice.items())))
        for r0, r1 in runs(rows, g["rows"]):
            loc = RepeatLocal(r1 - r0, p.l, p.r)
            name, spec = kernels.pick("repeat_1d", choice, loc, limits.device)
            st = Step((r0, r1), [make_dispatch(name, loc, spec)])
            st.uploads = (Transfer("x", "x", ((r0, r1),), (0, p.l), p.l),)
            st.downloads = (Transfer("out", "out", ((r0, r1),), (0, lo), lo),)
            sched.steps.append(st)
        sched.buffers = {"x": Buffer(g["rows"] * p.l), "out": Buffer(g["rows"] * lo, "out")}
        return sched

    def describe(self, p):
        return f"repeat_1d {p.tag()}  ->  out ({p.n}, {p.c}, {p.l * p.r})"

    def out_array(self, p, sched=None):
        return np.zeros((p.n, p.c, p.l * p.r), np.float32)

    def bind(self, p, args, out):
        return dict(args, x=args["x"].reshape(p.n * p.c, p.l), out=out.reshape(p.n * p.c, p.l * p.r))

    def reference(self, p, algorithm, args):
        return np.repeat(args["x"], p.r, axis=-1)


def register(tmp_dir):
    """Compile the toy kernel into tmp_dir and register the kernel and the op; returns the op."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from compile_shaders import compile_one
    src = os.path.join(tmp_dir, "repeat_1d.comp")
    shutil.copy(os.path.join(ROOT, "shaders", "common.glsl"), tmp_dir)
    with open(src, "w") as f:
        f.write(SHADER)
    spv = compile_one(src, tmp_dir, shutil.which("glslangValidator"))
    kernels.register(Kernel(name="repeat_1d", op="repeat_1d", push=("L", "r", "grid_x", "grid_y", "grid_z"),
                            spec=("wg",), defaults={"cpu": (64,), "gpu": (64,)},
                            bindings=(("x", "(rows, L)"), ("out", "(rows, L*r)")), setup=setup, work=work,
                            invocations=lambda spec: spec.wg, f16=None, spv_path=spv,
                            summary="toy: nearest-neighbour repeat"))
    return ops.register(RepeatOp("repeat_1d", ("default",), ("repeat_1d",)))


def unregister():
    ops.OPS.pop("repeat_1d", None)
    kernels.unregister("repeat_1d")
