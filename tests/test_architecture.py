"""The house rules, checked: a cold call schedules once (and a warm one not at all), the cost
model's estimate from classes of pieces equals the count over every piece, modules stay small,
and imports only point down the layers (cli -> api -> planner -> backends -> schedule/device ->
params/env)."""
import ast
import glob
import os

import numpy as np
import pytest

import vkconvt
from vkconvt import costmodel, kernels, planner, schedule
from vkconvt.params import params_from_shapes
from conftest import needs_vulkan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Layer of each module: a module may import only modules of a lower layer (or its own package).
LAYERS = {
    "errors": 0, "env": 0, "metrics": 0, "timing": 0, "version": 0,
    "activations": 0, "params": 1, "vkinfo": 1, "kernels": 1,
    "shaders": 2, "fold": 2, "schedule": 3, "schedule_ops": 4,
    "device": 3, "costmodel": 4,
    "backends": 5,
    "planner": 6,
    "interop": 6, "calls": 7, "api": 8,
    "tune": 9, "bench": 9, "torch": 9, "torch_models": 10, "cli": 11, "__main__": 12, "__init__": 12,
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
def test_a_cold_call_schedules_once(algorithm, monkeypatch):
    monkeypatch.setattr(planner, "_plans", planner.collections.OrderedDict())
    x = np.ones((2, 24, 37), np.float32)
    w = np.ones((24, 5, 6), np.float32)
    before = schedule.COUNTERS["schedule_conv"]
    vkconvt.conv_transpose1d(x, w, stride=3, padding=1, algorithm=algorithm, backend="vulkan")
    assert schedule.COUNTERS["schedule_conv"] == before + 1
    vkconvt.conv_transpose1d(x, w, stride=3, padding=1, algorithm=algorithm, backend="vulkan")
    assert schedule.COUNTERS["schedule_conv"] == before + 1


CLASS_CASES = [((2, 64, 1000), (64, 32, 16), 8, 4, 1, 1 << 14), ((3, 12, 500), (12, 5, 7), 3, 2, 3, 1 << 12),
               ((1, 8, 20000), (8, 4, 3), 2, 0, 1, 4096), ((1, 1, 4), (1, 1, 5000), 3, 0, 1, 1 << 12)]


@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
@pytest.mark.parametrize("xs,ws,stride,padding,groups,cap", CLASS_CASES)
def test_class_estimate_equals_the_complete_schedule(xs, ws, stride, padding, groups, cap, algorithm):
    ws = (ws[0], ws[1] // groups if groups > 1 else ws[1], ws[2])
    p, _ = params_from_shapes(xs, ws, stride, padding, 0, groups, 1, True)
    limits, choice = schedule.Limits(cap), kernels.default_choice("cpu")
    full = schedule.schedule_conv(p, algorithm, limits, cap, choice)
    est = schedule.schedule_conv(p, algorithm, limits, cap, choice, complete=False)
    assert len(full.steps) > 1 and len(est.steps) <= len(full.steps)
    f_full, f_est = costmodel.features(full), costmodel.features(est)
    assert f_full.keys() == f_est.keys()
    for k in f_full:
        assert f_est[k] == pytest.approx(f_full[k], rel=1e-12), k
    assert est.workspace_bytes == full.workspace_bytes and est.dispatch_count == full.dispatch_count
