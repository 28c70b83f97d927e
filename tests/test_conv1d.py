"""vkconvt.conv1d against PyTorch over the conv1d case table (tests/cases.py CONV1D_CASES): both
backends, both algorithms, every conv1d and matmul kernel variant forced; float16 storage, fused
activations, padding='same', unbatched inputs, tensors in and out, DeviceArrays, the workspace
budget and the buffer limit; the folding that keeps every shader index in 32 bits; bad arguments."""
import random

import numpy as np
import pytest

import vkconvt
from vkconvt import kernels, reference
from vkconvt import fold as k1
from cases import CONV1D_CASES, CONV1D_IDS, TOL, Case1d, assert_close, forced, kernels_used, variant_params
from conftest import needs_vulkan
from test_numpy_ops import brute_conv1d as brute

torch = pytest.importorskip("torch", reason="PyTorch (CPU) is the oracle")
F = torch.nn.functional
VARIANTS = variant_params((("conv1d", "direct"), ("matmul", "gemm")))


def want(case, x, w, b):
    if case.huge:
        return brute(x, w, b, *case.hyper())
    t = lambda a: None if a is None else torch.from_numpy(a).double()  # noqa: E731
    return F.conv1d(t(x), t(w), t(b), case.stride, case.padding, case.dilation, case.groups).numpy()


@pytest.mark.parametrize("case", CONV1D_CASES, ids=CONV1D_IDS)
@pytest.mark.parametrize("backend,algorithm,kernel", VARIANTS)
def test_conv1d(case, backend, algorithm, kernel):
    x, w, b = case.inputs()
    with forced(kernel), vkconvt.trace() as runs:
        out = vkconvt.conv1d(x, w, b, case.stride, case.padding, case.dilation, case.groups, algorithm=algorithm,
                             backend=backend)
    assert out.dtype == np.float32
    if kernel is not None:
        used = kernels_used(runs)
        assert used <= {kernel, kernels.FALLBACK[kernels.KERNELS[kernel].op], "im2col_1d", "bias_act_1d"}, used
    assert_close(out, want(case, x, w, b))


SMALL = [c for c in CONV1D_CASES if not c.huge and c.l < 1000][::2]


@pytest.mark.parametrize("case", SMALL, ids=[c.id for c in SMALL])
@pytest.mark.parametrize("backend,algorithm", [("numpy", "direct"), ("vulkan", "direct"), ("vulkan", "gemm")])
def test_float16_storage(case, backend, algorithm):
    """float16 x and weight: stored as halves, float32 arithmetic, the result rounded once to float16."""
    if backend == "vulkan" and vkconvt.backends.vulkan_reason():
        pytest.skip("no Vulkan")
    x, w, b = case.inputs(1)
    x16, w16 = x.astype(np.float16), w.astype(np.float16)
    out = vkconvt.conv1d(x16, w16, b, *case.hyper(), algorithm=algorithm, backend=backend)
    assert out.dtype == np.float16
    assert_close(out, want(case, x16.astype(np.float32), w16.astype(np.float32), b), TOL["float16"])


ACTS = [dict(activation="relu"), dict(activation="leaky_relu", negative_slope=0.2), dict(activation="tanh"),
        dict(activation="snake"), dict(activation="snakebeta", alpha_logscale=True),
        dict(input_activation="leaky_relu", input_negative_slope=0.1),
        dict(activation="tanh", input_activation="leaky_relu")]


def torch_act(y, act, alpha, beta):
    name = act.get("activation")
    if name == "relu":
        return F.relu(y)
    if name == "leaky_relu":
        return F.leaky_relu(y, act["negative_slope"])
    if name == "tanh":
        return torch.tanh(y)
    if name in ("snake", "snakebeta"):
        a = torch.from_numpy(alpha).double().reshape(1, -1, 1)
        bb = torch.from_numpy(beta if name == "snakebeta" else alpha).double().reshape(1, -1, 1)
        if act.get("alpha_logscale"):
            a, bb = a.exp(), bb.exp()
        return y + torch.sin(a * y) ** 2 / (bb + 1e-9)
    return y


@pytest.mark.parametrize("act", ACTS, ids=lambda a: "+".join(f"{v}" for k, v in a.items() if "slope" not in k
                                                              and k != "alpha_logscale"))
@pytest.mark.parametrize("backend,algorithm", [("numpy", "direct"), ("vulkan", "direct"), ("vulkan", "gemm")])
def test_fused_activations(act, backend, algorithm):
    if backend == "vulkan" and vkconvt.backends.vulkan_reason():
        pytest.skip("no Vulkan")
    case = Case1d(n=2, c_in=12, c_out=10, l=40, k=5, stride=2, padding=2, dilation=2, bias=True)
    x, w, b = case.inputs(2)
    rng = np.random.default_rng(3)
    alpha, beta = rng.uniform(0.2, 1.5, 10).astype(np.float32), rng.uniform(0.2, 1.5, 10).astype(np.float32)
    extra = dict(alpha=alpha) if act.get("activation") in ("snake", "snakebeta") else {}
    if act.get("activation") == "snakebeta":
        extra["beta"] = beta
    out = vkconvt.conv1d(x, w, b, *case.hyper(), algorithm=algorithm, backend=backend, **act, **extra)
    xt = torch.from_numpy(x).double()
    if act.get("input_activation"):
        xt = F.leaky_relu(xt, act.get("input_negative_slope", 0.01))
    y = F.conv1d(xt, torch.from_numpy(w).double(), torch.from_numpy(b).double(), *case.hyper())
    assert_close(out, torch_act(y, act, alpha, beta).numpy())


@pytest.mark.filterwarnings("ignore:Using padding='same'")     # PyTorch's note on its own padded copy
@pytest.mark.parametrize("backend", ["numpy", pytest.param("vulkan", marks=needs_vulkan)])
def test_padding_strings_unbatched_and_tuples(backend):
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((6, 31)).astype(np.float32), rng.standard_normal((4, 6, 4)).astype(np.float32)
    for padding, dilation in (("same", 1), ("same", 3), ("valid", 2)):
        out = vkconvt.conv1d(x, w, None, 1, padding, dilation, backend=backend)
        ref = F.conv1d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), None, 1, padding, dilation)
        assert out.shape == tuple(ref.shape)
        assert_close(out, ref.numpy())
    out = vkconvt.conv1d(x, w, stride=(2,), padding=(1,), dilation=(1,), backend=backend)
    assert_close(out, F.conv1d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), stride=2, padding=1).numpy())


@needs_vulkan
def test_tensors_in_and_out():
    x, w = torch.randn(2, 4, 9), torch.randn(3, 4, 2)
    out = vkconvt.conv1d(x, w, stride=2)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert_close(out.numpy(), F.conv1d(x.double(), w.double(), stride=2).numpy())


@needs_vulkan
@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
def test_device_arrays_and_one_submission(algorithm):
    """A DeviceArray x gives a DeviceArray back on its device; a call whose problem fits one piece is
    one queue submission."""
    case = Case1d(n=2, c_in=8, c_out=6, l=50, k=3, stride=2, padding=1, bias=True)
    x, w, b = case.inputs()
    xd = vkconvt.asarray(x)
    out = vkconvt.conv1d(xd, w, b, *case.hyper(), algorithm=algorithm)
    assert isinstance(out, vkconvt.DeviceArray)
    assert_close(out.numpy(), want(case, x, w, b))
    vkconvt.conv1d(x, w, b, *case.hyper(), algorithm=algorithm)          # the recording exists
    before = vkconvt.stats(reset=False)
    vkconvt.conv1d(x, w, b, *case.hyper(), algorithm=algorithm)
    after = vkconvt.stats(reset=False)
    (dev,) = after
    assert after[dev]["submissions"] - before[dev]["submissions"] == 1
    pending = vkconvt.conv1d(x, w, b, *case.hyper(), algorithm=algorithm, wait=False)
    assert isinstance(pending, vkconvt.Pending)
    assert_close(pending.result(), want(case, x, w, b))


@needs_vulkan
def test_gemm_chunks_under_the_workspace_budget():
    """A small budget cuts the gemm path's output into chunks (and pieces): the workspace stays
    within it, explain() says so, the result is unchanged; a budget below one column is refused."""
    case = Case1d(n=2, c_in=16, c_out=12, l=300, k=5, stride=1, padding=2, bias=True)
    x, w, b = case.inputs()
    budget = 16 << 10
    plan = vkconvt.plan_conv1d(x.shape, w.shape, *case.hyper(), bias=True, algorithm="gemm", backend="vulkan",
                               max_workspace_bytes=budget)
    assert plan.workspace_bytes["gemm"] <= budget < plan.unchunked_workspace_bytes["gemm"]
    assert "length chunk" in plan.explain() and plan.schedule.dispatch_count > 3
    out = vkconvt.conv1d(x, w, b, *case.hyper(), algorithm="gemm", max_workspace_bytes=budget)
    assert_close(out, want(case, x, w, b))
    with pytest.raises(vkconvt.WorkspaceTooSmall, match="gemm.*workspace"):
        vkconvt.conv1d(x, w, b, *case.hyper(), algorithm="gemm", max_workspace_bytes=16)
    auto = vkconvt.plan_conv1d(x.shape, w.shape, *case.hyper(), backend="vulkan", max_workspace_bytes=16)
    assert auto.algorithm == "direct" and "gemm" in auto.infeasible


@needs_vulkan
@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
def test_pieces_under_a_small_buffer_limit(algorithm):
    """Buffers cut to 2 KiB: batch, channel, input-channel (host-added) and window pieces, with the
    output activation applied on the host where the kernels cannot write final values."""
    case = Case1d(n=2, c_in=24, c_out=20, l=60, k=7, stride=2, padding=3, dilation=2, groups=2, bias=True)
    x, w, b = case.inputs()
    with vkconvt.settings.override(max_buffer_bytes=2048):
        plan = vkconvt.plan_conv1d(x.shape, w.shape, *case.hyper(), bias=True, algorithm=algorithm, backend="vulkan")
        assert plan.schedule.pieces > 4
        out = vkconvt.conv1d(x, w, b, *case.hyper(), algorithm=algorithm, activation="tanh")
    y = F.conv1d(*(torch.from_numpy(a).double() for a in (x, w, b)), *case.hyper())
    assert_close(out, torch.tanh(y).numpy())


def test_explain_names_the_op_and_its_kernels():
    text = vkconvt.plan_conv1d((1, 64, 500), (32, 64, 7), padding=3, backend="numpy").explain()
    assert text.startswith("conv1d N1_Ci64_Co32_L500_K7_s1_p3_d1_g1_Lo500") and "backend numpy" in text


# ---------------------------------------------------------------- folding (device-free)
def triples(l_in, k, s, d, p, t0, t1):
    """Every (t, k, m) with m = t*s - p + k*d inside the input, for outputs [t0, t1)."""
    return {(t, kk, t * s - p + kk * d) for t in range(t0, t1) for kk in range(k) if 0 <= t * s - p + kk * d < l_in}


@pytest.mark.parametrize("seed", range(4))
def test_fold_is_exact(seed):
    """A folded window keeps exactly the (output, tap, input) triples that land, in its local form."""
    rnd = random.Random(seed)
    for _ in range(300):
        l_in, k, s, d = rnd.randint(1, 30), rnd.randint(1, 9), rnd.randint(1, 7), rnd.randint(1, 5)
        p = rnd.randint(0, 25)
        l_out = (l_in + 2 * p - d * (k - 1) - 1) // s + 1
        if l_out < 1:
            continue
        t0 = rnd.randrange(l_out)
        t1 = rnd.randint(t0 + 1, l_out)
        f = k1.fold_conv1d(l_in, k, s, d, p, t0, t1)
        got = {(t0 + i, f.kb + q, f.lb + i * f.s + q * f.d - f.pad) for i in range(t1 - t0) for q in range(f.kw)
               if 0 <= i * f.s + q * f.d - f.pad < f.lw}
        assert got == triples(l_in, k, s, d, p, t0, t1), (l_in, k, s, d, p, t0, t1, f)
        assert f.pad >= 0 and 0 <= f.lb and f.lb + f.lw <= l_in and f.kb + f.kw <= k


HUGE = [c for c in CONV1D_CASES if c.huge] + [Case1d(l=5, k=2, stride=1 << 40, padding=1 << 40)]


@pytest.mark.parametrize("case", HUGE, ids=[c.id for c in HUGE])
def test_windows_fit_32_bits(case):
    """Huge strides, paddings and dilations: every window's indices fit int32 and the windows tile
    the output."""
    wins = k1.conv1d_windows(case.l, case.k, case.stride, case.dilation, case.padding, case.l_out)
    assert wins[0][0] == 0 and wins[-1][1] == case.l_out
    assert all(a[1] == b[0] for a, b in zip(wins, wins[1:]))
    for t0, t1, f in wins:
        assert k1.index_bound(t1 - t0, f) < k1.INT_LIMIT and abs(f.pad) < k1.INT_LIMIT


# ---------------------------------------------------------------- bad arguments
ERRORS = [
    (dict(x=np.ones((2, 3, 4, 5))), ValueError, r"x must have shape \(N, C_in, L\)"),
    (dict(w=np.ones((4, 3))), ValueError, r"weight must have shape \(C_out, C_in/groups, K\)"),
    (dict(w=np.ones((4, 2, 3))), ValueError, r"weight.shape\[1\] \* groups must equal the input channels C_in=3"),
    (dict(groups=2), ValueError, r"groups=2 must divide"),
    (dict(w=np.ones((4, 3, 30))), ValueError, r"shorter than the dilated kernel 30"),
    (dict(padding="full"), ValueError, r"padding must be an int, 'valid' or 'same'"),
    (dict(padding="same", stride=2), ValueError, r"'same' is not supported for strided"),
    (dict(padding=-1), ValueError, r"padding must be >= 0"),
    (dict(stride=0), ValueError, r"stride must be >= 1"),
    (dict(dilation=1.5), TypeError, r"dilation must be an int"),
    (dict(b=np.ones(5)), ValueError, r"bias must have shape \(C_out,\) = \(4,\)"),
    (dict(x=np.ones((2, 3, 0))), ValueError, r"x has an empty dimension"),
    (dict(x=np.array([["a"]])), TypeError, r"x must have a real numeric dtype"),
    (dict(algorithm="fft"), ValueError, r"algorithm must be one of"),
    (dict(activation="gelu"), ValueError, r"activation must be one of"),
    (dict(storage="float64", backend="vulkan"), ValueError, r"float64.*NumPy backend only"),
]


@pytest.mark.parametrize("bad,exc,match", ERRORS, ids=[m for _, _, m in ERRORS])
def test_bad_arguments(bad, exc, match):
    args = dict(x=np.ones((2, 3, 10), np.float32), w=np.ones((4, 3, 3), np.float32), b=None, stride=1, padding=0,
                dilation=1, groups=1, backend="numpy")
    args.update(bad)
    x, w, b = args.pop("x"), args.pop("w"), args.pop("b")
    with pytest.raises(exc, match=match):
        vkconvt.conv1d(x, w, b, **args)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("vulkan", marks=needs_vulkan)])
def test_an_empty_batch_is_pytorchs_empty_result(backend):
    x, w = np.ones((0, 4, 9), np.float32), np.ones((3, 4, 2), np.float32)
    out = vkconvt.conv1d(x, w, stride=2, backend=backend)
    assert out.shape == tuple(F.conv1d(torch.from_numpy(x), torch.from_numpy(w), stride=2).shape) == (0, 3, 4)
    assert vkconvt.conv1d(x.astype(np.float16), w.astype(np.float16), backend=backend).dtype == np.float16
    with pytest.raises(ValueError, match="weight.shape\\[1\\] \\* groups must equal"):
        vkconvt.conv1d(x, np.ones((3, 5, 2), np.float32), backend=backend)       # checked as any call
    gx, gw, gb = vkconvt.conv_transpose1d_backward(np.ones((0, 6, 10)), x, np.ones((4, 6, 2)), backend=backend)
    assert gx.shape == (0, 4, 9) and not gw.any() and gw.shape == (4, 6, 2) and gb.shape == (6,) and not gb.any()
    with pytest.raises(ValueError, match="grad_out must have the shape"):
        vkconvt.conv_transpose1d_backward(np.ones((0, 6, 11)), x, np.ones((4, 6, 2)), backend=backend)


def test_reference_is_the_definition():
    """The NumPy reference's l_out argument: fewer or more outputs than PyTorch's length read zeros."""
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((1, 2, 9)), rng.standard_normal((3, 2, 4))
    for l_out in (3, 6, 11):
        np.testing.assert_allclose(reference.conv1d_direct(x, w, None, 1, 1, 1, 1, l_out=l_out),
                                   brute(x, w, None, 1, 1, 1, 1, l_out=l_out), atol=1e-12)
