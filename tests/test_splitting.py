"""No size is too big: problems beyond maxStorageBufferRange are split into pieces (over batch,
groups, output channels, input channels and output windows) and give the same answer.

The small-limit tests shrink the backend's buffer limit so that every splitting path runs on small
problems, down to buffers of 64 bytes (input-channel chunks whose sums the host adds up); the
large test uses lavapipe's real 128 MiB limit with a column buffer and an output over it."""
import numpy as np
import pytest

import vkconvt
from vkconvt import fold
from vkconvt.params import params_from_shapes
from cases import CASES, Case, assert_close
from conftest import needs_vulkan

pytestmark = needs_vulkan


@pytest.fixture
def vk():
    be = vkconvt.backends.get("vulkan")
    be.dev.clear()
    yield be
    be.dev.clear()


def limit(nbytes):
    """Plan and run as if the device's storage buffers held at most nbytes."""
    return vkconvt.settings.override(max_buffer_bytes=nbytes)


def recording(be, sched):
    """The device's recording of a schedule that just ran (its buffers)."""
    return next(r for r in be.dev.recordings.values() if r.sched is sched)


SPLIT_CASES = [c for c in CASES if c.n * c.c_in * c.l < 20000 and c.k < 1000] + [
    Case(n=3, c_in=6, c_out=9, l=40, k=5, stride=3, padding=4, output_padding=2, groups=3, bias=True)]


def params_of(case):
    x, w, b = case.inputs()
    return params_from_shapes(x.shape, w.shape, **case.kwargs(), bias=b is not None)[0]


@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
@pytest.mark.parametrize("buffer_bytes", [1024, 64], ids=["buf1K", "buf64"])
@pytest.mark.parametrize("case", SPLIT_CASES, ids=[c.id for c in SPLIT_CASES])
def test_split_matches_reference(case, algorithm, buffer_bytes, vk):
    # the least a piece needs: the inputs and taps of one input channel that reach one output
    lw, kw, _ = fold.window_bounds(case.l, case.k, case.stride, case.dilation, 1)
    buffer_bytes = max(buffer_bytes, 4 * (max(lw, kw) + 4))
    # a few hundred pieces say as much as a hundred thousand (each costs a dispatch on lavapipe)
    buffer_bytes = max(buffer_bytes, params_of(case).io_bytes() // 300)
    x, w, b = case.inputs()
    ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy")
    with limit(buffer_bytes), vkconvt.trace() as runs:
        out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algorithm, backend="vulkan")
    assert_close(out, ref)
    sched = runs[-1][2]
    if params_of(case).io_bytes() > 4 * buffer_bytes:
        assert len(sched.steps) > 1, "expected the problem to be split into pieces"
    for t in recording(vk, sched).tensors.values():
        assert 4 * t.size() <= max(buffer_bytes, 4)


@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
def test_input_channel_chunks_when_one_channels_weights_exceed_a_buffer(algorithm, vk):
    """C_in/groups x K floats of one output channel (64 x 16 x 4 = 4 KiB) over a 1 KiB buffer:
    the input channels are cut into chunks whose partial sums the host adds up."""
    case = Case(n=2, c_in=128, c_out=6, l=30, k=16, stride=4, padding=3, groups=2, bias=True)
    x, w, b = case.inputs()
    with limit(1024), vkconvt.trace() as runs:
        out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algorithm, backend="vulkan")
    assert_close(out, vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy"))
    chunks = {(st.piece.ci0, st.piece.ci1) for st in runs[-1][2].steps}
    assert len(chunks) >= 4, chunks


def test_split_matmul_and_col2im(vk):
    rng = np.random.default_rng(3)
    a, bm = rng.standard_normal((3, 40, 30)).astype(np.float32), rng.standard_normal((30, 50)).astype(np.float32)
    col = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    kw = dict(stride=2, padding=1, dilation=2, output_padding=1, bias=bias)
    with limit(512), vkconvt.trace() as runs:
        assert_close(vkconvt.matmul(a, bm, backend="vulkan"), np.matmul(a.astype(np.float64), bm))
        assert len(runs[-1][2].steps) > 1
        assert_close(vkconvt.col2im_1d(col, **kw, backend="vulkan"), vkconvt.col2im_1d(col, **kw, backend="numpy"))
        assert len([sched for _, be, sched in runs if be == "vulkan"][-1].steps) > 1


def test_column_budget_chunks_gemm_over_input_length(vk):
    """The gemm column buffer is cut into input-length chunks whose col2im accumulates."""
    case = Case(n=2, c_in=8, c_out=6, l=300, k=7, stride=3, padding=2, output_padding=1, dilation=2, bias=True)
    x, w, b = case.inputs()
    ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy")
    budget = params_of(case).gemm_column_bytes() // 10
    with vkconvt.trace() as runs:
        out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm="gemm", backend="vulkan",
                                       max_workspace_bytes=budget)
    assert_close(out, ref)
    sched = runs[-1][2]
    assert 0 < sched.workspace_bytes <= budget
    assert 0 < recording(vk, sched).tensors["col"].size() * 4 <= budget
    # batch is split first, then input length: >= 10 chunks of (matmul, col2im) in all
    assert sched.dispatch_count >= 2 * 10


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["gemm", "direct"])
def test_buffers_over_128MiB(algorithm, vk):
    """Column buffer 295 MB and output 147 MB, each over lavapipe's 128 MiB maxStorageBufferRange."""
    case = Case(n=1, c_in=8, c_out=512, l=9000, k=16, stride=8)
    x, w, b = case.inputs()
    p = params_of(case)
    cap = vk.device.max_storage_buffer_range
    assert p.gemm_column_bytes() > cap and p.out_bytes() > cap
    ref = vkconvt.conv_transpose1d(x, w, None, stride=8, backend="numpy")
    with vkconvt.trace() as runs:
        out = vkconvt.conv_transpose1d(x, w, None, stride=8, algorithm=algorithm, backend="vulkan")
    assert_close(out, ref)
    sched = runs[-1][2]
    assert len(sched.steps) > 1
    assert all(4 * t.size() <= cap for t in recording(vk, sched).tensors.values())
