"""Every backend and algorithm against the NumPy reference, over the one case table; the NumPy
reference itself against PyTorch; hand-checked small cases."""
import numpy as np
import pytest

import vkconvt
from vkconvt import kernels
from cases import CASE_IDS, CASES, Case, assert_close, backend_params, forced, kernels_used, variant_params

torch = pytest.importorskip("torch", reason="PyTorch (CPU) is the independent oracle for the reference")


def torch_ref(case, x, w, b):
    t = lambda a: None if a is None else torch.from_numpy(a).double()
    return torch.nn.functional.conv_transpose1d(t(x), t(w), t(b), **case.kwargs()).numpy()


@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reference_matches_torch(case, algorithm):
    x, w, b = case.inputs()
    out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algorithm, backend="numpy")
    assert out.dtype == np.float32
    assert_close(out, torch_ref(case, x, w, b), tol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("backend,algorithm,kernel", variant_params())
def test_conv_transpose_1d(case, backend, algorithm, kernel):
    x, w, b = case.inputs()
    ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm="direct", backend="numpy")
    with forced(kernel), vkconvt.trace() as runs:
        out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algorithm, backend=backend)
    if kernel is not None:
        used = kernels_used(runs)
        assert used <= {kernel, kernels.FALLBACK[kernels.KERNELS[kernel].op], "col2im_1d"}, used
    assert_close(out, ref)


@pytest.mark.parametrize("backend,algorithm,kernel", [p for p in variant_params() if p.values[2] is not None])
@pytest.mark.parametrize("bad", [np.inf, np.nan], ids=["inf", "nan"])
def test_non_finite_weights_in_every_variant(bad, backend, algorithm, kernel):
    """Kernels that may multiply a weight by a zero margin switch to their exact variant when a
    weight is not finite: the result is PyTorch's, NaN/inf exactly where PyTorch has them."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 9)).astype(np.float32)
    w = rng.standard_normal((4, 3, 5)).astype(np.float32)
    w[1, 2, 0] = bad
    w[3, 0, 4] = bad
    ref = torch_ref(Case(n=2, c_in=4, c_out=3, l=9, k=5, stride=3, padding=1), x, w, None).astype(np.float32)
    with forced(kernel):
        out = vkconvt.conv_transpose1d(x, w, stride=3, padding=1, algorithm=algorithm, backend=backend)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(ref))
    finite = np.isfinite(ref)
    assert_close(out[finite], ref[finite])


# Small integer cases whose outputs are worked out by hand (no oracle involved).
HAND = [
    ("L3_K2", [[1, 2, 3]], [[[1, 1]]], None, {}, [[1, 3, 5, 3]]),
    ("L3_K2_s2", [[1, 2, 3]], [[[1, 1]]], None, dict(stride=2), [[1, 1, 2, 2, 3, 3]]),
    ("L3_K2_s2_p1", [[1, 2, 3]], [[[1, 1]]], None, dict(stride=2, padding=1), [[1, 2, 2, 3]]),
    ("L3_K2_d2", [[1, 2, 3]], [[[1, 10]]], None, dict(dilation=2), [[1, 2, 13, 20, 30]]),
    ("L3_K2_s2_op1_bias", [[1, 2, 3]], [[[1, 1]]], [0.5], dict(stride=2, output_padding=1),
     [[1.5, 1.5, 2.5, 2.5, 3.5, 3.5, 0.5]]),
    ("Ci2_g2", [[1, 2], [3, 4]], [[[2]], [[10]]], None, dict(groups=2), [[2, 4], [30, 40]]),
    ("Ci2_sum", [[1, 2], [3, 4]], [[[1]], [[1]]], None, {}, [[4, 6]]),
    ("Co2_K2_s3", [[1, 2]], [[[1, 2], [3, 4]]], None, dict(stride=3), [[1, 2, 0, 2, 4], [3, 4, 0, 6, 8]]),
]


@pytest.mark.parametrize("name,x,w,b,kw,expected", HAND, ids=[h[0] for h in HAND])
@pytest.mark.parametrize("backend,algorithm", backend_params())
def test_hand_checked(name, x, w, b, kw, expected, backend, algorithm):
    out = vkconvt.conv_transpose1d(np.array(x, np.float32), np.array(w, np.float32),
                                   None if b is None else np.array(b, np.float32), **kw,
                                   algorithm=algorithm, backend=backend)
    np.testing.assert_allclose(out, np.array(expected, np.float32), rtol=0, atol=1e-6)


def test_accepts_lists_and_float64():
    out = vkconvt.conv_transpose1d([[1.0, 2.0, 3.0]], np.array([[[1, 1]]], dtype=np.float64), backend="numpy")
    assert out.dtype == np.float32 and out.tolist() == [[1, 3, 5, 3]]


MATMUL = [((5, 7), (7, 3)), ((1, 1), (1, 1)), ((3, 37, 19), (3, 19, 45)), ((2, 33, 8), (8, 130)),
          ((17, 64), (4, 64, 9)), ((130, 257), (257, 70))]


MATMUL_VARIANTS = [p for p in variant_params() if p.values[1] == "direct" and p.values[2] is None
                   or p.values[2] in kernels.KERNELS and kernels.KERNELS[p.values[2]].op == "matmul"]


@pytest.mark.parametrize("backend,algorithm,kernel", MATMUL_VARIANTS)
@pytest.mark.parametrize("sa,sb", MATMUL, ids=[f"{'x'.join(map(str, a))}@{'x'.join(map(str, b))}" for a, b in MATMUL])
def test_matmul(sa, sb, backend, algorithm, kernel):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(sa).astype(np.float32), rng.standard_normal(sb).astype(np.float32)
    with forced(kernel):
        out = vkconvt.matmul(a, b, backend=backend)
    assert_close(out, np.matmul(a.astype(np.float64), b))


COL2IM = [((2, 5, 4, 11), dict(stride=3, padding=2, dilation=2, output_padding=1)),
          ((1, 3, 1, 6), dict(stride=4, output_padding=3)),
          ((3, 2, 7, 5), dict(padding=3)),
          ((4, 3, 9), dict(stride=2, dilation=3))]


@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("backend,algorithm", [p for p in backend_params() if p.values[1] == "direct"])
@pytest.mark.parametrize("shape,kw", COL2IM, ids=[f"{'x'.join(map(str, s))}" for s, _ in COL2IM])
def test_col2im_1d(shape, kw, backend, algorithm, with_bias):
    rng = np.random.default_rng(2)
    col = rng.standard_normal(shape).astype(np.float32)
    c = shape[-3]
    bias = rng.standard_normal(c).astype(np.float32) if with_bias else None
    # Oracle: col2im is conv_transpose1d with an identity weight per (channel, tap), depthwise.
    col4 = col if col.ndim == 4 else col[None]
    n, _, k, l_in = col4.shape
    ref = sum(torch.nn.functional.conv_transpose1d(
        torch.from_numpy(col4[:, :, j, :]).double(),
        torch.from_numpy(np.eye(k)[j][None, None, :].repeat(c, axis=0)).double(),
        None, groups=c, **kw).numpy() for j in range(k))
    if bias is not None:
        ref = ref + bias[None, :, None]
    ref = ref if col.ndim == 4 else ref[0]
    assert_close(vkconvt.col2im_1d(col, **kw, bias=bias, backend=backend), ref)


@pytest.mark.parametrize("backend,algorithm", [p for p in backend_params() if p.values[1] == "auto"])
def test_threads_share_a_device(backend, algorithm):
    """Calls from several threads at once (the device serialises them) all give the right answer."""
    from concurrent.futures import ThreadPoolExecutor
    cases = [c for c in CASES if c.l < 1000 and c.k < 1000][:8]

    def run(case):
        x, w, b = case.inputs()
        out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend=backend)
        return out, vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy")
    with ThreadPoolExecutor(4) as pool:
        for out, ref in pool.map(run, cases * 3):
            assert_close(out, ref)
