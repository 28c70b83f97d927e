"""Everything scripts/gpu_compile and tests/test_gpu_compile.py take from vkconvt's internals, in
one module, so that a change of those internals is fixed here alone: the kernel list and where
each kernel's SPIR-V is, its specialization constants by name, the specs vkconvt's own spec choice
picks for a problem on a device with given limits, the limits vkconvt reads from a RADV null
device, and a context that makes the running Vulkan backend plan as if its device had smaller
limits.

`limits` arguments are anything with the fields of tests/device_limits.Limits (max_shared,
max_invocations, subgroup, max_buffer; name for labels).
"""
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from collections import namedtuple

import vkconvt
from vkconvt import backends, kernels, ops, params, planner, schedule
from vkconvt.ops.matmul import MatmulParams
from vkconvt.kernels import gpu

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPV_DIR = os.path.join(os.path.dirname(vkconvt.__file__), "spv")
LAYERS_JSON = os.path.join(os.path.dirname(vkconvt.__file__), "data", "model_layers.json")

# A conv_transpose1d problem (batch n, default 1) or a matmul, as the bench runs them.
Conv = namedtuple("Conv", "label c_in c_out k stride padding l_in groups n output_padding dilation",
                  defaults=(1, 0, 1))
Matmul = namedtuple("Matmul", "label m k n")
BENCH_MATMULS = (Matmul("matmul 1024^3", 1024, 1024, 1024),)


# ------------------------------------------------------------------------------------ kernels
def kernel_names():
    """Every kernel vkconvt ships (float16 twins included), in table order."""
    return list(kernels.KERNELS)


def gpu_shaped(name):
    """Whether `name` is one of the GPU-shaped kernels (kernels/gpu.py) or its float16 twin."""
    return kernels.KERNELS[name].shader in (gpu.CONV_TILED.name, gpu.MATMUL_TILED.name)


def spv_path(name):
    return os.path.join(SPV_DIR, kernels.KERNELS[name].spv)


def default_specs(name):
    """{device class: spec} of the kernel's defaults."""
    return {cls: tuple(spec) for cls, spec in kernels.KERNELS[name].defaults.items()}


def spec_fields(name, spec):
    """{constant name: value} of a spec (the shader's constant_id order)."""
    return dict(zip(kernels.KERNELS[name].spec, spec))


def workgroup(name, spec):
    """(x, y) workgroup size of a spec, and its invocations and shared-memory bytes."""
    kern, f = kernels.KERNELS[name], spec_fields(name, spec)
    spec = kern.make_spec(spec)
    x = f.get("wg_x", f.get("wg", 1))
    return (x, f.get("wg_y", 1)), kern.invocations(spec), kern.shared_bytes(spec)


# ------------------------------------------------------------------------------------ spec choice
def device(limits, subgroup=None, device_class="gpu"):
    """The kernels.Device vkconvt's spec choice sees on a device with these limits (subgroup ops:
    the set every listed GPU offers; the GPU-shaped kernels use none)."""
    return kernels.Device(device_class, limits.max_shared, limits.max_invocations,
                          subgroup or limits.subgroup, ("basic", "vote", "ballot", "shuffle"))


def bench_layers():
    """The bench's model layers (vkconvt/data/model_layers.json), one per distinct shape."""
    with open(LAYERS_JSON) as f:
        layers = json.load(f)["layers"]
    out = {}
    for lay in layers:
        key = (lay["c_in"], lay["c_out"], lay["kernel"], lay["stride"], lay["padding"], lay["l_in"], lay["groups"])
        if lay["output_padding"] == 0 and lay["dilation"] == 1:
            out.setdefault(key, Conv(f"{lay['model']} {lay['name'].split(' ')[0]}", *key))
    return list(out.values())


def _dispatches(sched):
    for st in sched.steps:
        for d in st.dispatches:
            yield d.kernel, tuple(int(v) for v in d.spec)


def chosen_specs(limits, convs=(), matmuls=BENCH_MATMULS, subgroup=None, storages=("float32", "float16")):
    """[(kernel, spec, use)]: every dispatch of vkconvt's schedules ('direct' and 'gemm' for each
    conv, the matmul op's for each matmul, and its float16 twin with the same spec) with the GPU
    device class's kernel choice on a device with these limits."""
    dev = device(limits, subgroup)
    lim = schedule.Limits(limits.max_buffer, dev)
    choice = kernels.default_choice("gpu")
    out = []
    for c in convs:
        p, _ = params.params_from_shapes((c.n, c.c_in, c.l_in), (c.c_in, c.c_out // c.groups, c.k), c.stride,
                                         c.padding, c.output_padding, c.groups, c.dilation, False)
        for storage in storages:
            q = dataclasses.replace(p, storage=storage, out_float16=storage == "float16")   # a float16 call
            for algo in ("direct", "gemm"):
                sched = ops.get("conv_transpose1d").schedule(q, algo, lim, planner.resolve_budget(None), choice)
                out += [(k, s, f"{c.label} {algo}") for k, s in _dispatches(sched)]
    for mm in matmuls:
        sched = ops.get("matmul").schedule(MatmulParams(1, 1, mm.m, mm.k, mm.n), "default", lim,
                                           planner.resolve_budget(None), choice)
        for k, s in _dispatches(sched):
            out.append((k, s, mm.label))
            twin = k + "_f16"
            if "float16" in storages and twin in kernels.KERNELS:
                out.append((twin, s, mm.label + " (float16 twin)"))
    return out


def planned_specs(conv, algorithm, storage="float32"):
    """[(kernel, spec)] of the plan the running Vulkan backend makes for a Conv (inside
    forced_device(), as that device would)."""
    c = conv
    plan = vkconvt.plan((c.n, c.c_in, c.l_in), (c.c_in, c.c_out // c.groups, c.k), c.stride, c.padding,
                        c.output_padding, c.groups, c.dilation, algorithm=algorithm, backend="vulkan", storage=storage)
    return list(_dispatches(plan.schedule)) if plan.schedule is not None else []


_trace = [[]]      # the schedules run inside forced_device() (a vkconvt.trace() list)


def last_run_specs():
    """[(kernel, spec)] of what the Vulkan backend dispatched for its last call (inside forced_device())."""
    sched = [s for _, be, s in _trace[0] if be == "vulkan"][-1]
    return list(_dispatches(sched))


Running = namedtuple("Running", "max_shared max_invocations max_size subgroup max_buffer")


def running_device():
    """The limits the Vulkan backend plans with now, as a record like a device_limits row."""
    be = backends.get("vulkan")
    prof = be.profile()
    d, info = prof.kernel_device, be.device
    return Running(d.max_shared_bytes, d.max_invocations, tuple(info.max_workgroup_size), d.subgroup_size,
                   prof.max_buffer_bytes)


# ------------------------------------------------------------------------------------ devices
def radv_env(family, icd):
    env = dict(os.environ, RADV_FORCE_FAMILY=family, VK_ICD_FILENAMES=icd, MESA_SHADER_CACHE_DISABLE="true")
    for k in ("VK_INSTANCE_LAYERS", "VK_LOADER_LAYERS_ENABLE", "VK_DRIVER_FILES"):
        env.pop(k, None)
    return env


def radv_limits(family, icd):
    """{name, max_shared, max_invocations, subgroup, max_buffer, driver} of RADV's null device for
    `family`, as vkconvt's vkinfo reads them (a subprocess: the family is read at instance creation)."""
    code = ("import json; from vkconvt.vulkan import vkinfo; d = vkinfo.list_devices()[0]; print(json.dumps(dict("
            "name=d.name, max_shared=d.max_shared_memory, max_invocations=d.max_workgroup_invocations, "
            "subgroup=d.subgroup_size, max_buffer=d.max_storage_buffer_range, driver=d.driver_info)))")
    env = radv_env(family, icd)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (ROOT, env.get("PYTHONPATH"))))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"vkinfo on RADV {family} failed: {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def forced_device(limits):
    """Inside the block, the Vulkan backend (on whatever device it runs) plans and picks specs as
    a GPU with these limits would: the limits of its kernel device (shared memory, invocations,
    subgroup size), device class 'gpu' with that class's kernel choice (what the limits rule out
    dropped, the portable kernels kept) and its buffer limit (vkconvt.settings.override); the runs
    are traced for last_run_specs()."""
    dev = device(limits)
    lim = dict(device_class="gpu", max_shared_bytes=dev.max_shared_bytes, max_invocations=dev.max_invocations,
               subgroup_size=dev.subgroup_size, subgroup_ops=dev.subgroup_ops)
    be = backends.get("vulkan")
    cap = min(limits.max_buffer, be.device.max_storage_buffer_range)
    with vkconvt.settings.override(limits=lim, max_buffer_bytes=cap), vkconvt.trace() as runs:
        _trace[0] = runs
        yield be
