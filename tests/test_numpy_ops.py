"""vkconvt/reference.py (conv1d and the gradients) against PyTorch in float64: conv1d (direct, gemm, im2col), and
the gradients of conv_transpose1d (input, weight, bias) from autograd, over the conv1d case table
(tests/cases.py CONV1D_CASES). Cases with offsets beyond 32 bits (PyTorch would allocate the padding)
are checked against a brute-force loop with exact integers."""

import numpy as np
import pytest

from vkconvt import reference as ops
from cases import CONV1D_CASES as CASES, CONV1D_IDS as CASE_IDS

torch = pytest.importorskip("torch")
F = torch.nn.functional


def nmse(a, b):
    return float(np.sum((a - b) ** 2) / max(np.sum(b ** 2), 1e-300))


def close(got, want, tol=1e-24):
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.isfinite(got).all()
    assert nmse(got, want) <= tol, nmse(got, want)


def inputs64(case, seed=0):
    x, w, b = case.inputs(seed)
    return x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64)


def brute_conv1d(x, w, b, s, p, d, g, l_out=None):
    """conv1d by its definition, exact integers (the huge cases PyTorch would allocate); l_out: the
    outputs computed (default PyTorch's length)."""
    n, c_in, l_in = x.shape
    c_out, cig, k = w.shape
    l_out = ops.conv1d_output_length(l_in, k, s, p, d) if l_out is None else l_out
    cog = c_out // g
    out = np.zeros((n, c_out, l_out))
    for t in range(l_out):
        for kk in range(k):
            m = t * s - p + kk * d
            if 0 <= m < l_in:
                for gi in range(g):
                    out[:, gi * cog:(gi + 1) * cog, t] += (x[:, gi * cig:(gi + 1) * cig, m].astype(np.float64)
                                                           @ w[gi * cog:(gi + 1) * cog, :, kk].T)
    return out if b is None else out + b[None, :, None]


def brute_grad_weight(x, go, k, s, p, d, g):
    n, c_in, l_in = x.shape
    c_out, l_out = go.shape[1:]
    cig, cog = c_in // g, c_out // g
    gw = np.zeros((c_in, cog, k))
    for li in range(l_in):
        for kk in range(k):
            t = li * s - p + kk * d
            if 0 <= t < l_out:
                for gi in range(g):
                    gw[gi * cig:(gi + 1) * cig, :, kk] += x[:, gi * cig:(gi + 1) * cig, li].T @ go[:, gi * cog:(gi + 1) * cog, t]
    return gw


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_conv1d(case):
    x, w, b = inputs64(case)
    if case.huge:
        want = brute_conv1d(x, w, b, *case.hyper())
    else:
        want = F.conv1d(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b),
                        case.stride, case.padding, case.dilation, case.groups).numpy()
    close(ops.conv1d_direct(x, w, b, *case.hyper()), want)
    close(ops.conv1d_gemm(x, w, b, *case.hyper()), want)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_im2col_1d(case):
    x, _, _ = inputs64(case)
    col = ops.im2col_1d(x, case.k, case.stride, case.padding, case.dilation)
    assert col.shape == (case.n, case.c_in * case.k, case.l_out)
    for t in sorted({0, case.l_out // 2, case.l_out - 1}):
        for kk in sorted({0, case.k // 2, case.k - 1}):
            m = t * case.stride - case.padding + kk * case.dilation
            want = x[:, :, m] if 0 <= m < case.l else 0.0
            assert np.array_equal(col[:, kk::case.k, t], np.broadcast_to(want, (case.n, case.c_in)))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_conv_transpose1d_gradients(case):
    """The backward of conv_transpose1d(xT (n, c_out, l_out), w, bias (c_in,)) whose output has length l."""
    _, w, _ = inputs64(case)
    rng = np.random.default_rng(1)
    xt = rng.standard_normal((case.n, case.c_out, case.l_out))
    go = rng.standard_normal((case.n, case.c_in, case.l))
    hyper = case.stride, case.padding, case.dilation, case.groups
    if case.huge:
        want_x = brute_conv1d(go, w, None, *hyper)
        want_w = brute_grad_weight(xt, go, case.k, *hyper)
        want_b = go.sum(axis=(0, 2))
    else:
        txt, tw = torch.from_numpy(xt).requires_grad_(), torch.from_numpy(w).requires_grad_()
        tb = torch.zeros(case.c_in, dtype=torch.float64, requires_grad=True)
        y = F.conv_transpose1d(txt, tw, tb, case.stride, case.padding, case.output_padding, case.groups,
                               case.dilation)
        assert y.shape == go.shape
        y.backward(torch.from_numpy(go))
        want_x, want_w, want_b = txt.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()
    close(ops.conv_transpose1d_grad_input(go, w, *hyper, l_in=case.l_out), want_x)
    close(ops.conv_transpose1d_grad_weight(xt, go, case.k, *hyper), want_w)
    close(ops.grad_bias(go), want_b)


def test_float32_in_float32_out():
    x = np.ones((1, 2, 5), np.float32)
    w = np.ones((3, 2, 2), np.float32)
    assert ops.conv1d_direct(x, w).dtype == np.float32 and ops.conv1d_gemm(x, w).dtype == np.float32
    assert ops.conv_transpose1d_grad_weight(x, np.ones((1, 3, 6), np.float32), 2).dtype == np.float32


def test_long_kernel_over_few_inputs_costs_its_flops(monkeypatch):
    """K = 200001 taps over 3 inputs: the loops walk the 3 outputs (or inputs), never the taps."""
    calls = []
    real = np.matmul
    monkeypatch.setattr(ops.np, "matmul", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = np.arange(3.0).reshape(1, 1, 3)
    w = np.random.default_rng(0).standard_normal((1, 1, 200001))
    out = ops.conv1d_direct(x, w, padding=100000)
    assert out.shape == (1, 1, 3) and len(calls) <= 3
    want = [sum(x[0, 0, m] * w[0, 0, m - t + 100000] for m in range(3)) for t in range(3)]   # k = m - t + p
    assert np.allclose(out[0, 0], want)
    calls.clear()
    gw = ops.conv_transpose1d_grad_weight(x, np.ones((1, 1, 3)), 200001, padding=100000)
    assert gw.shape == (1, 1, 200001) and len(calls) <= 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="groups"):
        ops.conv1d_direct(np.ones((1, 6, 8)), np.ones((6, 2, 3)), groups=4)
    with pytest.raises(ValueError, match="no output"):
        ops.conv1d_direct(np.ones((1, 6, 8)), np.ones((6, 6, 9)))
