"""float16 storage: the case table in float16 over every backend, algorithm and kernel variant
(the *_f16 twins), against the NumPy reference (float16 inputs computed in float32, rounded once)
and, for the reference, against PyTorch float64 on the float16-rounded inputs; storage="float16"
on float32 calls; the halved workspace in the package's own accounting; the layer, the PyTorch
integration (half tensors, model.half()) and bad arguments. Tolerances: cases.TOL."""
import numpy as np
import pytest

import vkconvt
from vkconvt import backends, kernels
from cases import CASE_IDS, CASES, TOL, Case, assert_close, forced, kernels_used, variant_params
from conftest import needs_vulkan

torch = pytest.importorskip("torch", reason="PyTorch (CPU) is the independent oracle for the reference")
F16 = np.float16


def half_inputs(case, seed=0):
    x, w, b = case.inputs(seed)
    return x.astype(F16), w.astype(F16), None if b is None else b.astype(F16)


def torch_half_ref(case, x, w, b):
    """PyTorch in float64 on the float16 values, rounded once to float16."""
    t = lambda a: None if a is None else torch.from_numpy(a.astype(np.float64))  # noqa: E731
    return torch.nn.functional.conv_transpose1d(t(x), t(w), t(b), **case.kwargs()).numpy().astype(F16)


@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reference_matches_torch(case, algorithm):
    x, w, b = half_inputs(case)
    out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algorithm, backend="numpy")
    assert out.dtype == F16
    # both round the same float32-exact sums once: at most one float16 ulp apart
    assert_close(out, torch_half_ref(case, x, w, b), tol=TOL["float16"])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("backend,algorithm,kernel", variant_params())
def test_conv_transpose_1d_float16(case, backend, algorithm, kernel):
    x, w, b = half_inputs(case)
    ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm="direct", backend="numpy")
    with forced(kernel), vkconvt.trace() as runs:
        out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algorithm, backend=backend)
    if backend == "vulkan":
        used = kernels_used(runs)
        # the float16 twins, then (one piece) the output rounded on the device
        assert all(kernels.KERNELS[k].storage == "float16" for k in used - {"to_float16"}), used
        sched = runs[-1][2]
        assert ("to_float16" in used) == bool(sched.info.get("out_half")) == (len(sched.steps) == 1), used
        if kernel is not None:
            op = kernels.KERNELS[kernel].op
            assert used <= {kernel + "_f16", kernels.fallback(op, "float16"), "col2im_1d_f16", "to_float16"}, used
    assert out.dtype == F16
    assert_close(out, ref, tol=TOL["float16"])
    assert_close(out, torch_half_ref(case, x, w, b), tol=TOL["float16"])


SMALL = [c for c in CASES if c.l < 1000 and c.k < 1000]


@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
@pytest.mark.parametrize("backend", ["numpy", pytest.param("vulkan", marks=needs_vulkan)])
@pytest.mark.parametrize("case", SMALL, ids=[c.id for c in SMALL])
def test_float16_storage_of_a_float32_call(case, backend, algorithm):
    """storage='float16' on float32 arrays: the result stays float32 (not rounded), equal to the
    float16 call's before its final rounding, within TOL of the float32 result."""
    x, w, b = case.inputs()
    out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algorithm, backend=backend, storage="float16")
    assert out.dtype == np.float32
    assert_close(out, vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy"), tol=TOL["float16"])
    exact = vkconvt.conv_transpose1d(x.astype(F16).astype(np.float32), w.astype(F16).astype(np.float32), b,
                                     **case.kwargs(), backend="numpy")
    assert_close(out, exact, tol=TOL["float16"] if algorithm == "gemm" and backend == "vulkan" else TOL["float32"])


@pytest.mark.parametrize("budget", [None, 1 << 12])
def test_float16_columns_halve_the_workspace(budget):
    """The package's own accounting: a float16-column gemm needs half the float32 workspace,
    unchunked, chunked to a budget, in the plan and in explain()."""
    shape = dict(x_shape=(2, 64, 300), weight_shape=(64, 32, 16), stride=8, padding=4)
    f32 = vkconvt.workspace_bytes(**shape, max_workspace_bytes=budget)
    f16 = vkconvt.workspace_bytes(**shape, max_workspace_bytes=budget, storage="float16")
    assert f16["direct"] == f32["direct"] == 0
    if budget is None:
        assert f32["gemm"] == 32 * 16 * 2 * 300 * 4 and 2 * f16["gemm"] == f32["gemm"]
    else:
        # chunked to the same budget: columns of half the bytes, at least as long a chunk
        assert 0 < f16["gemm"] <= budget and 0 < f32["gemm"] <= budget


@needs_vulkan
def test_float16_workspace_on_the_device():
    """The plan's workspace and the device's own count of workspace bytes, float16 against float32."""
    be = backends.get("vulkan")
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 64, 300)).astype(np.float32), rng.standard_normal((64, 32, 16)).astype(np.float32)
    held = {}
    for storage in ("float32", "float16"):
        be.dev.clear()
        plan = vkconvt.plan(x.shape, w.shape, stride=8, padding=4, algorithm="gemm", backend="vulkan",
                            storage=storage)
        vkconvt.conv_transpose1d(x, w, stride=8, padding=4, algorithm="gemm", backend="vulkan", storage=storage)
        held[storage] = (plan.workspace_bytes["gemm"], be.dev.workspace_bytes, plan.explain())
    assert held["float16"][0] * 2 == held["float32"][0]
    assert held["float16"][1] * 2 <= held["float32"][1] + 4096       # pooled size classes round up
    assert "float16 storage" in held["float16"][2] and "float16 storage" not in held["float32"][2]


@pytest.mark.parametrize("backend", ["numpy", pytest.param("vulkan", marks=needs_vulkan)])
def test_layer_float16(backend):
    """A layer made from float16 weights stores halves; float16 x gives a float16 result, float32 x
    a float32 one (same stored weights)."""
    case = Case(n=2, c_in=16, c_out=8, l=40, k=8, stride=4, padding=2, bias=True)
    x, w, b = half_inputs(case)
    layer = vkconvt.ConvTranspose1d(w, b, **case.kwargs(), backend=backend)
    assert layer.storage == "float16"
    y16 = layer(x)
    y32 = layer(x.astype(np.float32))
    assert y16.dtype == F16 and y32.dtype == np.float32
    assert_close(y16, torch_half_ref(case, x, w, b), tol=TOL["float16"])
    np.testing.assert_array_equal(y16, y32.astype(F16))
    assert vkconvt.ConvTranspose1d(w.astype(np.float32), storage="float16").storage == "float16"
    assert vkconvt.ConvTranspose1d(w.astype(np.float32)).storage == "float32"


def test_bad_storage():
    x, w = np.zeros((1, 2, 3), np.float32), np.zeros((2, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"storage must be one of float32, float16, float64 .*got 'bfloat16'"):
        vkconvt.conv_transpose1d(x, w, storage="bfloat16")
    with pytest.raises(ValueError, match=r"storage must be one of"):
        vkconvt.ConvTranspose1d(w, storage=16)
    with pytest.raises(ValueError, match=r"storage must be one of"):
        vkconvt.plan(x.shape, w.shape, storage="half")


@pytest.mark.parametrize("backend", ["numpy", pytest.param("vulkan", marks=needs_vulkan)])
def test_float16_overflow_is_inf_like_torch(backend):
    """A result beyond float16's range is inf, as PyTorch's float16 result would be."""
    x = np.full((1, 4, 5), 200.0, F16)
    w = np.full((4, 1, 3), 100.0, F16)
    out = vkconvt.conv_transpose1d(x, w, backend=backend)
    assert out.dtype == F16 and np.isinf(out).all()


@pytest.mark.parametrize("backend", ["numpy", pytest.param("vulkan", marks=needs_vulkan)])
def test_torch_half(backend):
    """Half tensors in, half tensors out; model.half() runs its converted layers with float16
    storage and matches PyTorch's float32 model on the rounded weights and input."""
    import vkconvt.torch as vt
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 8, 30), torch.randn(8, 4, 6), torch.randn(8)
    y = vt.conv_transpose1d(x.half(), w.half(), b.half(), stride=3, padding=1, groups=2, backend=backend)
    ref = torch.nn.functional.conv_transpose1d(x.half().double(), w.half().double(), b.half().double(), stride=3,
                                               padding=1, groups=2)
    assert y.dtype == torch.float16
    assert_close(y.double().numpy(), ref.numpy(), tol=TOL["float16"])

    model = torch.nn.Sequential(torch.nn.ConvTranspose1d(8, 6, 8, stride=4, padding=2), torch.nn.Tanh()).eval()
    half = vt.convert(model.half(), backend=backend)
    with torch.inference_mode():
        out = half(x.half())
        ref = model.double()(x.half().double())
    assert out.dtype == torch.float16
    assert_close(out.double().numpy(), ref.numpy(), tol=TOL["float16"])
    layers = list(half[0]._vkconvt.layers.values())
    assert layers and all(la.storage == "float16" for la in layers)


@needs_vulkan
@pytest.mark.parametrize("act", ["leaky_relu", "snake"])
@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
def test_float16_with_fused_activation(act, algorithm):
    case = Case(n=2, c_in=16, c_out=8, l=50, k=8, stride=4, padding=2, bias=True)
    x, w, b = half_inputs(case)
    kw = dict(activation=act, input_activation="leaky_relu")
    if act == "snake":
        kw["alpha"] = np.random.default_rng(3).uniform(0.2, 2.0, case.c_out).astype(np.float32)
    ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy", **kw)
    with vkconvt.trace() as runs:
        out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="vulkan", algorithm=algorithm, **kw)
    assert out.dtype == F16 and runs[-1][2].info["fused"]
    assert_close(out, ref, tol=TOL["float16"])
