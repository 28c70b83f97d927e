"""The house rules, checked: a cold call schedules once (and a warm one not at all), the cost
model's estimate from classes of pieces equals the count over every piece, modules stay small,
imports only point down the layers (cli -> api -> calls -> planner -> backends -> profile/ops ->
schedule/vulkan -> kernels/params -> env), and an op declared here, in a test file, plans,
explains and runs through the generic layers without touching them (tests/toy_op.py)."""
import ast
import shutil
import glob
import os

import numpy as np
import pytest

import vkconvt
from vkconvt import backends, cache, calls, costmodel, kernels, ops, planner, schedule
from vkconvt.params import params_from_shapes
from conftest import needs_vulkan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Layer of each module: a module may import only modules of a lower layer (or its own package).
LAYERS = {
    "errors": 0, "env": 0, "metrics": 0, "timing": 0, "version": 0, "activations": 0, "cache": 0,
    "params": 1, "kernels": 1,
    "settings": 2, "fold": 2, "reference": 2,
    "schedule": 3, "vulkan": 3,
    "costmodel": 4,
    "ops": 5, "profile": 5,
    "backends": 6,
    "planner": 7, "interop": 7,
    "calls": 8, "empty": 8,
    "api": 9, "torch_autograd": 9,
    "api_grad": 10, "tune": 10, "bench": 10, "torch": 10, "torch_models": 11, "cli": 12, "__main__": 13, "__init__": 13,
}


def module_of(path):
    rel = os.path.relpath(path, os.path.join(ROOT, "vkconvt"))
    parts = rel[:-3].split(os.sep)
    return parts[0], parts


def imported(path):
    """vkconvt modules (first component) that `path` imports."""
    top, parts = module_of(path)
    package = parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            if node.module:
                target = base + node.module.split(".")
                out.add(target[0])
            else:
                out.update((base + [a.name])[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vkconvt."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("vkconvt."))
    return out - {top}


SOURCES = sorted(glob.glob(os.path.join(ROOT, "vkconvt", "**", "*.py"), recursive=True))


@pytest.mark.parametrize("path", SOURCES, ids=[os.path.relpath(p, ROOT) for p in SOURCES])
def test_imports_point_down(path):
    top, _ = module_of(path)
    assert top in LAYERS, f"{top} has no layer in this test"
    for dep in imported(path):
        assert LAYERS[dep] < LAYERS[top], f"{top} (layer {LAYERS[top]}) imports {dep} (layer {LAYERS[dep]})"


@pytest.mark.parametrize("path", SOURCES + sorted(glob.glob(os.path.join(ROOT, "scripts", "*.py"))),
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_modules_are_small(path):
    lines = sum(1 for _ in open(path))
    assert lines <= 420, f"{os.path.relpath(path, ROOT)} has {lines} lines (keep modules readable in one sitting)"


@needs_vulkan
@pytest.mark.parametrize("algorithm", ["auto", "direct", "gemm"])
def test_a_cold_call_schedules_once(algorithm):
    cache.clear_all()
    x = np.ones((2, 24, 37), np.float32)
    w = np.ones((24, 5, 6), np.float32)
    before = schedule.COUNTERS["schedules"]
    vkconvt.conv_transpose1d(x, w, stride=3, padding=1, algorithm=algorithm, backend="vulkan")
    assert schedule.COUNTERS["schedules"] == before + 1
    vkconvt.conv_transpose1d(x, w, stride=3, padding=1, algorithm=algorithm, backend="vulkan")
    assert schedule.COUNTERS["schedules"] == before + 1


CLASS_CASES = [((2, 64, 1000), (64, 32, 16), 8, 4, 1, 1 << 14), ((3, 12, 500), (12, 5, 7), 3, 2, 3, 1 << 12),
               ((1, 8, 20000), (8, 4, 3), 2, 0, 1, 4096), ((1, 1, 4), (1, 1, 5000), 3, 0, 1, 1 << 12)]


@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
@pytest.mark.parametrize("xs,ws,stride,padding,groups,cap", CLASS_CASES)
def test_class_estimate_equals_the_complete_schedule(xs, ws, stride, padding, groups, cap, algorithm):
    ws = (ws[0], ws[1] // groups if groups > 1 else ws[1], ws[2])
    p, _ = params_from_shapes(xs, ws, stride, padding, 0, groups, 1, True)
    limits, choice = schedule.Limits(cap), kernels.default_choice("cpu")
    op = ops.get("conv_transpose1d")
    full = op.schedule(p, algorithm, limits, cap, choice)
    est = op.schedule(p, algorithm, limits, cap, choice, complete=False)
    assert len(full.steps) > 1 and len(est.steps) <= len(full.steps)
    f_full, f_est = costmodel.features(full), costmodel.features(est)
    assert f_full.keys() == f_est.keys()
    for k in f_full:
        assert f_est[k] == pytest.approx(f_full[k], rel=1e-12), k
    assert est.workspace_bytes == full.workspace_bytes and est.dispatch_count == full.dispatch_count


@pytest.fixture
def toy(tmp_path):
    if shutil.which("glslangValidator") is None:
        pytest.skip("glslangValidator (Debian glslang-tools) is needed to compile the toy op's kernel")
    import toy_op
    op = toy_op.register(str(tmp_path))
    yield toy_op, op
    toy_op.unregister()


@needs_vulkan
def test_a_new_op_runs_through_the_generic_layers(toy):
    """An op declared in a test file (its params, schedule, transfers, reference and one kernel) plans,
    explains and runs on both backends, split into pieces too, with one submission per piece."""
    toy_op, op = toy
    p = toy_op.RepeatParams(n=2, c=3, l=50, r=3)
    x = np.random.default_rng(0).standard_normal((2, 3, 50)).astype(np.float32)
    want = np.repeat(x, 3, axis=-1)
    plan = planner.make_plan("repeat_1d", p, "auto", "vulkan")
    text = plan.explain()
    assert "repeat_1d N2_C3_L50_r3" in text and "kernels: repeat_1d (wg=" in text
    assert "queue submissions per call: 1" in text and plan.predicted_s["default"] > 0
    be = backends.get("vulkan")
    before = dict(be.dev.counters)
    np.testing.assert_array_equal(calls.execute(plan, {"x": x}), want)
    assert be.dev.counters["submissions"] - before["submissions"] == 1
    np.testing.assert_array_equal(calls.execute(planner.make_plan("repeat_1d", p, "auto", "numpy"), {"x": x}), want)
    with vkconvt.settings.override(max_buffer_bytes=4 * 150 * 2):        # two rows of output per piece
        split = planner.make_plan("repeat_1d", p, "auto", "vulkan")
        assert len(split.schedule.steps) == 3 and "queue submissions per call: 3" in split.explain()
        np.testing.assert_array_equal(calls.execute(split, {"x": x}), want)


def test_a_kernel_without_a_cost_entry_is_never_free():
    """A count the model has no coefficient for borrows the costliest one of that count; never 0."""
    feats = {"calls": 1.0, "matmul_tiled.mac": 1e9, "newkernel.out": 1e6}
    coef = {"calls": 1e-5, "matmul.mac": 2e-12, "matmul_sg.mac": 5e-12}
    assert costmodel.predict(coef, feats) == pytest.approx(1e-5 + 5e-12 * 1e9 + costmodel.FALLBACK_UNIT["out"] * 1e6)


def test_dispatches_bind_buffers_in_the_kernel_tables_order():
    p, _ = params_from_shapes((2, 24, 37), (24, 5, 6), 3, 1, 0, 1, 1, True)
    limits, choice = schedule.Limits(1 << 20), kernels.default_choice("cpu")
    for algorithm in ("direct", "gemm"):
        sched = ops.get("conv_transpose1d").schedule(p, algorithm, limits, 1 << 20, choice)
        for st in sched.steps:
            for d in st.dispatches:
                kern = kernels.KERNELS[d.kernel]
                assert len(d.binds) == len(kern.bindings)
                assert set(d.binds) <= set(sched.buffers) | {"bias"}, (d.kernel, d.binds)
    gemm = ops.get("conv_transpose1d").schedule(p, "gemm", limits, 1 << 20, choice)
    mm = next(d for st in gemm.steps for d in st.dispatches if kernels.KERNELS[d.kernel].op == "matmul")
    assert mm.binds == ("w", "x", "col")            # the matmul's A, B, C: weights, inputs, columns
