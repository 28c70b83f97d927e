"""Split-K on the gemm path: where matmul_tiled's grid is too small to fill the GPU, it cuts the
reduction (input channels) into slices that write partial column buffers, and col2im_1d sums them in
slice order. The choice itself is device-free (a large GPU's limits, no device); the results run on
lavapipe with the split forced (matmul_tiled with k tiles of 4 rows, so that case-table shapes
split), over the whole case table, float16 storage, activations, both memory modes, the replayed
call, and a workspace budget that holds fewer slices."""
import os

import numpy as np
import pytest

import vkconvt
from vkconvt import kernels, ops, profile
from vkconvt.kernels import gpu
from vkconvt.params import params_from_shapes
from vkconvt.planner import make_plan
from cases import CASE_IDS, CASES, TOL, Case, assert_close
from conftest import needs_vulkan

# matmul_tiled on lavapipe (a 'small' device: at most 16 x 8 threads, 4 x 4 outputs each) with
# BK = 4 and up to 8 slices: a reduction of 16 rows or more splits where the grid has < 32 tiles
SPLIT_SPEC = (16, 8, 4, 1, 4, 8)
NO_SPLIT_SPEC = SPLIT_SPEC[:5] + (1,)


def forced(name="matmul_tiled", spec=SPLIT_SPEC):
    return vkconvt.settings.override(kernels={"matmul": kernels.only(name, "cpu", spec)})


def matmul_dispatches(sched):
    return [d for st in sched.steps for d in st.dispatches if kernels.KERNELS[d.kernel].op == "matmul"]


def slices_of(sched):
    return max([kernels.KERNELS[d.kernel].slices(d.spec) for d in matmul_dispatches(sched)], default=1)


# ------------------------------------------------------------------ the choice (device-free)
HIFIGAN_UPS0 = ((1, 512, 32), (512, 256, 16), 8, 4)


def large_plan(shapes, spec=None, budget=None, algorithm="gemm"):
    xs, ws, s, pad = shapes
    p, _ = params_from_shapes(xs, ws, s, pad, 0, 1, 1)
    prof = profile.for_limits("gpu")
    if spec is not None:
        choice = dict(prof.choice, matmul=kernels.only("matmul_tiled", "gpu", spec))
        return ops.get("conv_transpose1d").schedule(p, algorithm, prof.limits, budget or 1 << 30, choice)
    return make_plan("conv_transpose1d", p, algorithm, backend="vulkan", prof=prof,
                     max_workspace_bytes=budget).schedule


def test_a_short_grid_splits_the_reduction_instead_of_shrinking_the_tile():
    """HiFi-GAN V1 ups[0] on a large GPU: 64 tiles of 64 x 128 columns. With split-K the tile keeps
    its 32 accumulators per thread and 4 slices of 128 input channels make 256 workgroups; without
    it (ks=1, what tune's search tries) the per-thread tile shrinks to reach the same grid."""
    default = kernels.KERNELS["matmul_tiled"].defaults["gpu"]
    split = large_plan(HIFIGAN_UPS0)
    (d,) = matmul_dispatches(split)
    assert d.spec.ks == 4 and d.spec.tm * 4 * d.spec.tn4 == default.tm * 4 * default.tn4 == 32
    assert d.grid[2] == 4 and np.prod(d.grid) >= gpu.MIN_WORKGROUPS["large"]
    assert split.notes["split-K"] == 4
    cols = split.info["columns"]
    assert split.buffers["col"].nbytes == 4 * cols
    c2i = [x for st in split.steps for x in st.dispatches if x.kernel == "col2im_1d"]
    assert c2i and all(x.fields["slices"] == 4 and x.fields["slice_stride"] == d.local.batch * d.local.c_batch_stride
                       for x in c2i)

    plain = large_plan(HIFIGAN_UPS0, spec=default._replace(ks=1))
    (e,) = matmul_dispatches(plain)
    assert e.spec.ks == 1 and e.spec.tm * 4 * e.spec.tn4 < 32 and np.prod(e.grid) >= gpu.MIN_WORKGROUPS["large"]
    assert "split-K" not in plain.notes and plain.buffers["col"].nbytes == cols


@pytest.mark.parametrize("shapes,slices", [
    (((1, 64, 4096), (64, 32, 4), 2, 1), 1),        # 64 input channels: one slice of 4 k tiles at most
    (((16, 512, 256), (512, 256, 16), 8, 4), 1),    # a grid that fills the GPU already
    (((1, 128, 2048), (128, 64, 4), 2, 1), 2),
    (((1, 1026, 100), (1026, 1, 4096), 1024, 1536), 4),   # ISTFT-shaped
])
def test_slices_follow_the_grid_and_the_reduction_depth(shapes, slices):
    sched = large_plan(shapes)
    assert slices_of(sched) == slices
    for d in matmul_dispatches(sched):
        if d.spec.ks > 1:      # every slice at least SPLIT_MIN_TILES k tiles deep, none empty
            depth = kernels.round_up(kernels.cdiv(d.local.K, d.spec.ks), d.spec.bk)
            assert depth >= gpu.SPLIT_MIN_TILES * d.spec.bk and (d.spec.ks - 1) * depth < d.local.K


def test_the_budget_bounds_the_slices():
    """The slices are workspace: a budget of 2.5 column buffers allows 2 of them, one allows none."""
    cols = large_plan(HIFIGAN_UPS0).info["columns"]
    assert slices_of(large_plan(HIFIGAN_UPS0, budget=int(2.5 * cols))) == 2
    one = large_plan(HIFIGAN_UPS0, budget=cols)
    assert slices_of(one) == 1 and one.workspace_bytes == cols
    # the device-free workspace figure is the least gemm needs: one column buffer
    assert vkconvt.workspace_bytes(*HIFIGAN_UPS0[:2], stride=8, padding=4, max_workspace_bytes=1 << 30)["gemm"] == cols


def test_explain_shows_the_split():
    xs, ws, s, pad = HIFIGAN_UPS0
    p, _ = params_from_shapes(xs, ws, s, pad, 0, 1, 1)
    text = make_plan("conv_transpose1d", p, "gemm", backend="vulkan", prof=profile.for_limits("gpu")).explain()
    assert "split-K 4" in text and "ks=4" in text, text


@needs_vulkan
def test_a_matmul_alone_never_splits():
    """vkconvt.matmul has no consumer to sum slices: its C is written whole whatever the spec."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 8, 300)).astype(np.float32), rng.standard_normal((2, 300, 5)).astype(np.float32)
    with forced(), vkconvt.trace() as runs:
        out = vkconvt.matmul(a, b, backend="vulkan")
    assert_close(out, np.matmul(a.astype(np.float64), b))
    scheds = [sc for _, _, sc in runs if sc is not None]
    assert scheds and all(slices_of(sc) == 1 for sc in scheds)


# ------------------------------------------------------------------ on the device (lavapipe)
def run(case, storage=None, **kw):
    x, w, b = case.inputs()
    with vkconvt.trace() as runs:
        out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm="gemm", backend="vulkan", storage=storage,
                                       **kw)
    return out, runs[-1][2]


def reference(case, storage=None, **kw):
    x, w, b = case.inputs()
    if storage == "float16":
        x, w = x.astype(np.float16).astype(np.float32), w.astype(np.float16).astype(np.float32)
    return vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm="direct", backend="numpy", **kw)


@needs_vulkan
@pytest.mark.parametrize("storage", ["float32", "float16"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_table_with_split_k(case, storage):
    with forced():
        out, sched = run(case, storage)
    used = {d.kernel for st in sched.steps for d in st.dispatches}
    assert used <= {"matmul_tiled", "matmul_tiled_f16", "matmul", "matmul_f16", "col2im_1d", "col2im_1d_f16",
                    "to_float16"}, used
    assert_close(out, reference(case, storage), TOL[storage])


# Shapes that split on lavapipe with SPLIT_SPEC (16 or more input channels per group, few tiles):
# ragged last slices, groups, batches, phases, padding beyond K, dilation, bias.
SPLIT_CASES = [
    Case(c_in=32, c_out=3, l=5, k=3, stride=2),
    Case(c_in=33, c_out=5, l=7, k=4, stride=3, padding=2, bias=True),
    Case(n=3, c_in=47, c_out=6, l=9, k=5, stride=2, padding=1, output_padding=1, dilation=2, bias=True),
    Case(n=2, c_in=64, c_out=8, l=12, k=7, stride=4, padding=9, groups=2),
    Case(c_in=100, c_out=4, l=20, k=16, stride=8, padding=4, bias=True),
    Case(c_in=256, c_out=32, l=16, k=8, stride=4, padding=2, bias=True),
    Case(c_in=130, c_out=2, l=3, k=1, stride=5),
    Case(c_in=40, c_out=7, l=11, k=3, unbatched=True, bias=True),
]


@needs_vulkan
@pytest.mark.parametrize("storage", ["float32", "float16"])
@pytest.mark.parametrize("case", SPLIT_CASES, ids=[c.id for c in SPLIT_CASES])
def test_split_results_match_the_reference(case, storage):
    with forced():
        out, sched = run(case, storage)
    assert slices_of(sched) > 1, "this shape was chosen to split"
    assert_close(out, reference(case, storage), TOL[storage])
    with forced(spec=NO_SPLIT_SPEC):
        plain, sched1 = run(case, storage)
    assert slices_of(sched1) == 1
    # the same sum in another order: as close to the unsplit result as to the reference
    assert_close(out, plain.astype(np.float64), TOL[storage])


@needs_vulkan
@pytest.mark.parametrize("memory", ["host", "device"])
def test_split_is_deterministic_one_submission_and_replayed(memory):
    from vkconvt import backends
    case = SPLIT_CASES[2]
    dev = backends.get("vulkan").dev
    with forced(), vkconvt.settings.override(memory=memory):
        first, sched = run(case)
        before = dict(dev.counters)
        again, _ = run(case)
        n = {k: v - before[k] for k, v in dev.counters.items()}
    assert slices_of(sched) > 1
    np.testing.assert_array_equal(first, again)      # slices summed in a fixed order: bit for bit
    assert n["submissions"] == n["fence_waits"] == 1 and n["recordings"] == 0


@needs_vulkan
def test_split_with_fused_activations():
    case = SPLIT_CASES[1]
    kw = dict(activation="leaky_relu", negative_slope=0.2, input_activation="leaky_relu", input_negative_slope=0.1)
    with forced():
        out, sched = run(case, **kw)
    assert slices_of(sched) > 1
    assert_close(out, reference(case, **kw))


@needs_vulkan
def test_a_budget_of_one_column_buffer_runs_unsplit():
    case = SPLIT_CASES[5]
    with forced():
        _, sched = run(case)
        cols = sched.info["columns"]
        out, small = run(case, max_workspace_bytes=cols)
    assert slices_of(sched) > 1 and slices_of(small) == 1 and small.workspace_bytes <= cols
    assert_close(out, reference(case))


# ------------------------------------------------------------------ conv1d and the backward pass
# conv1d's gemm path sums the slices in bias_act_1d (its epilogue); the weight gradient's in
# col2im_1d (its add into gw, which the matmul otherwise writes itself when it is gw's only product)
@needs_vulkan
@pytest.mark.parametrize("storage", ["float32", "float16"])
@pytest.mark.parametrize("n,c_in,c_out,l,k,stride,padding,groups,bias", [
    (1, 20, 6, 9, 3, 1, 1, 1, True),            # reduction 60 rows: 3 slices of 20 -> 16-row tiles
    (2, 48, 8, 30, 5, 2, 2, 2, False),
    (1, 64, 4, 7, 4, 3, 0, 1, True),
])
def test_conv1d_with_split_k(n, c_in, c_out, l, k, stride, padding, groups, bias, storage):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, c_in, l)).astype(np.float32)
    w = rng.standard_normal((c_out, c_in // groups, k)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32) if bias else None
    kw = dict(stride=stride, padding=padding, groups=groups, activation="leaky_relu", negative_slope=0.2)
    with forced(), vkconvt.trace() as runs:
        out = vkconvt.conv1d(x, w, b, **kw, algorithm="gemm", backend="vulkan", storage=storage)
    assert slices_of(runs[-1][2]) > 1
    if storage == "float16":
        x, w = x.astype(np.float16).astype(np.float32), w.astype(np.float16).astype(np.float32)
    assert_close(out, vkconvt.conv1d(x, w, b, **kw, backend="numpy"), TOL[storage])


@needs_vulkan
@pytest.mark.parametrize("storage", ["float32", "float16"])
@pytest.mark.parametrize("n,c_in,c_out,l,k,stride,padding", [
    (1, 6, 12, 40, 3, 2, 1),         # one batch entry: the matmul would write gw itself unsplit
    (3, 5, 8, 40, 4, 2, 1),
])
def test_weight_gradient_with_split_k(n, c_in, c_out, l, k, stride, padding, storage):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, c_in, l)).astype(np.float32)
    w = rng.standard_normal((c_in, c_out, k)).astype(np.float32)
    l_out = (l - 1) * stride - 2 * padding + k
    go = rng.standard_normal((n, c_out, l_out)).astype(np.float32)
    kw = dict(stride=stride, padding=padding, output_mask=(True, True, False))
    with forced(), vkconvt.trace() as runs:
        gi, gw, _ = vkconvt.conv_transpose1d_backward(go, x, w, **kw, algorithm="gemm", backend="vulkan",
                                                      storage=storage)
    split_ops = {sc.op for _, _, sc in runs if sc is not None and slices_of(sc) > 1}
    assert {"conv_grad_weight", "conv1d"} <= split_ops, split_ops
    if storage == "float16":
        x, w, go = (a.astype(np.float16).astype(np.float32) for a in (x, w, go))
    rgi, rgw, _ = vkconvt.conv_transpose1d_backward(go, x, w, **kw, backend="numpy")
    assert_close(gi, rgi, TOL[storage])
    assert_close(gw, rgw, TOL[storage])


# ------------------------------------------------------------------ the report the README quotes
def test_split_k_report():
    """scripts/split_k_report.py: on a large GPU's limits some bench layers split and keep larger
    register tiles; on a small GPU (32 workgroups fill it) none does; a bad device row is refused."""
    import re
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "split_k_report.py")

    def report(*args):
        return subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=300)
    big = report("--device", "H200")
    assert big.returncode == 0, big.stderr
    split, total, kept = map(int, re.search(r"(\d+) of (\d+) distinct layers split.*?; (\d+) of them", big.stdout).groups())
    assert 0 < kept <= split < total
    rows = [ln for ln in big.stdout.splitlines() if ln.startswith("| ") and "->" in ln]
    assert len(rows) == split and all(int(r.split("|")[4]) > 1 for r in rows)
    small = report("--device", "Mali-G78")
    assert small.returncode == 0 and "0 of" in small.stdout.splitlines()[-1], small.stdout
    bad = report("--device", "GeForce 256")
    assert bad.returncode == 2 and "--device must be one of" in bad.stderr


# ------------------------------------------------------------------ random shapes and budgets
def _random_problems(count=36, seed=2026):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        groups = int(rng.choice([1, 1, 2, 3]))
        c_in = groups * int(rng.integers(16, 90))
        c_out = groups * int(rng.integers(1, 9))
        k, stride, dilation = int(rng.integers(1, 9)), int(rng.integers(1, 6)), int(rng.integers(1, 4))
        padding = int(rng.integers(0, dilation * (k - 1) + 3))
        n, l = int(rng.integers(1, 4)), int(rng.integers(1, 40))
        out.append(pytest.param(n, c_in, c_out, l, k, stride, padding, dilation, groups, i % 3, id=f"r{i}"))
    return out


@needs_vulkan
@pytest.mark.parametrize("n,c_in,c_out,l,k,stride,padding,dilation,groups,budget_kind", _random_problems())
def test_random_problems_with_split_k(n, c_in, c_out, l, k, stride, padding, dilation, groups, budget_kind):
    """Forward, conv1d and the weight gradient with the split forced, under the default budget, one
    that holds about two slices, and one that forces length chunks (budget_kind 0, 1, 2)."""
    rng = np.random.default_rng(n * 1000 + c_in)
    x = rng.standard_normal((n, c_in, l)).astype(np.float32)
    w = rng.standard_normal((c_in, c_out // groups, k)).astype(np.float32)
    kw = dict(stride=stride, padding=min(padding, dilation * (k - 1)), dilation=dilation, groups=groups)
    cols = 4 * n * c_out * k * (l + 4)
    budget = (None, 2 * cols + 64, max(4 * n * c_out * k * 8, cols // 3))[budget_kind]
    ref = vkconvt.conv_transpose1d(x, w, **kw, backend="numpy")
    with forced():
        out = vkconvt.conv_transpose1d(x, w, **kw, algorithm="gemm", backend="vulkan", max_workspace_bytes=budget)
        y1 = vkconvt.conv1d(ref, w, **kw, algorithm="gemm", backend="vulkan", max_workspace_bytes=budget)
        _, gw, _ = vkconvt.conv_transpose1d_backward(ref, x, w, **kw, output_mask=(False, True, False),
                                                     algorithm="gemm", backend="vulkan", max_workspace_bytes=budget)
    assert_close(out, ref)
    assert_close(y1, vkconvt.conv1d(ref, w, **kw, backend="numpy"))
    assert_close(gw, vkconvt.conv_transpose1d_backward(ref, x, w, **kw, output_mask=(False, True, False),
                                                       backend="numpy")[1])
