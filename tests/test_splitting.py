"""No size is too big: problems beyond maxStorageBufferRange or maxComputeWorkGroupCount are split
into several buffers/dispatches and give the same answer.

The small-limit tests shrink the backend's limits so every splitting path runs on small problems;
the large test uses lavapipe's real 128 MiB limit with a column buffer and an output over it."""
import numpy as np
import pytest

import vkconvt
from vkconvt import backends
from cases import CASES, Case, assert_close

VULKAN = backends.vulkan_reason()
pytestmark = pytest.mark.skipif(VULKAN is not None, reason=f"Vulkan backend unavailable: {VULKAN}")


@pytest.fixture
def vk():
    be = backends.get("vulkan")
    saved = be.max_buffer_bytes, be.max_groups
    be.dev.clear()
    yield be
    be.max_buffer_bytes, be.max_groups = saved
    be.dev.clear()


SPLIT_CASES = [c for c in CASES if c.n * c.c_in * c.l < 20000 and c.k < 1000] + [
    Case(n=3, c_in=6, c_out=9, l=40, k=5, stride=3, padding=4, output_padding=2, groups=3, bias=True)]


@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
@pytest.mark.parametrize("buffer_bytes,groups", [(1024, (2, 2, 2)), (256, (1, 1, 1)), (1 << 30, (1, 3, 1))],
                         ids=["buf1K-wg2", "buf256-wg1", "wg1x3x1"])
@pytest.mark.parametrize("case", SPLIT_CASES, ids=[c.id for c in SPLIT_CASES])
def test_split_matches_reference(case, algorithm, buffer_bytes, groups, vk):
    # Pieces are never split over input channels: one output channel's weights of one group
    # (C_in/groups x K floats) and one output position's inputs must fit a buffer.
    buffer_bytes = max(buffer_bytes, 2 * 4 * (case.c_in // case.groups) * max(case.k, 8))
    vk.max_buffer_bytes, vk.max_groups = buffer_bytes, groups
    x, w, b = case.inputs()
    p = vkconvt.params.params_from_shapes(x.shape, w.shape, **case.kwargs(), bias=b is not None)[0]
    ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy")
    out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algorithm, backend="vulkan")
    assert_close(out, ref)
    plan = vk.last_plan
    if p.io_bytes() > 4 * buffer_bytes:
        assert len(plan.pieces) > 1, "expected the problem to be split into pieces"
    for t in plan.tensors:
        assert 4 * t.size() <= max(buffer_bytes, 4)


def test_split_matmul_and_col2im(vk):
    vk.max_buffer_bytes, vk.max_groups = 512, (2, 1, 2)
    rng = np.random.default_rng(3)
    a, bm = rng.standard_normal((3, 40, 30)).astype(np.float32), rng.standard_normal((30, 50)).astype(np.float32)
    assert_close(vkconvt.matmul(a, bm, backend="vulkan"), np.matmul(a.astype(np.float64), bm))
    col = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    kw = dict(stride=2, padding=1, dilation=2, output_padding=1, bias=bias)
    assert_close(vkconvt.col2im_1d(col, **kw, backend="vulkan"), vkconvt.col2im_1d(col, **kw, backend="numpy"))


def test_column_budget_chunks_gemm_over_input_length(vk):
    """The gemm column buffer is cut into input-length chunks whose col2im accumulates."""
    case = Case(n=2, c_in=8, c_out=6, l=300, k=7, stride=3, padding=2, output_padding=1, dilation=2, bias=True)
    x, w, b = case.inputs()
    p = vkconvt.params.params_from_shapes(x.shape, w.shape, **case.kwargs(), bias=True)[0]
    ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy")
    budget = p.gemm_column_bytes() // 10
    out = vk.conv_transpose1d(x[:, :, :], w, b, p, "gemm", col_cap=budget)
    assert_close(out, ref)
    assert 0 < vk.last_plan.workspace_bytes <= budget
    # batch is split first, then input length: >= 10 chunks of (matmul, col2im) in all
    assert sum(len(pc.seqs) for pc in vk.last_plan.pieces) >= 2 * 10


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["gemm", "direct"])
def test_buffers_over_128MiB(algorithm, vk):
    """Column buffer 295 MB and output 147 MB, each over lavapipe's 128 MiB maxStorageBufferRange."""
    case = Case(n=1, c_in=8, c_out=512, l=9000, k=16, stride=8)
    x, w, b = case.inputs()
    p = vkconvt.params.params_from_shapes(x.shape, w.shape, stride=8)[0]
    limit = vk.device.max_storage_buffer_range
    assert p.gemm_column_bytes() > limit and 4 * p.n * p.c_out * p.l_out > limit
    ref = vkconvt.conv_transpose1d(x, w, None, stride=8, backend="numpy")
    out = vkconvt.conv_transpose1d(x, w, None, stride=8, algorithm=algorithm, backend="vulkan")
    assert_close(out, ref)
    plan = vk.last_plan
    assert len(plan.pieces) > 1
    assert all(4 * t.size() <= limit for t in plan.tensors)
