"""The backward pass of conv_transpose1d against PyTorch's autograd: vkconvt.conv_transpose1d_backward
over the case table (both backends, both algorithms, every conv1d and weight-gradient kernel forced),
output masks, the fused input activation, float16, the workspace budget and the buffer limit,
non-finite gradients, bad input; vkconvt.torch under autograd: gradcheck in float64 on the NumPy
backend, float32 gradients of modules (weight norm and parametrizations too), the training check
(a reduced HiFi-GAN V1 generator trained a few steps gives PyTorch's losses), double backward and
devices refused clearly."""
import copy
import warnings

import numpy as np
import pytest

import vkconvt
from vkconvt import kernels
from cases import CASE_IDS, CASES, TOL, Case, assert_close, forced, kernels_used, variant_params
from conftest import needs_vulkan

torch = pytest.importorskip("torch", reason="PyTorch (CPU) is the oracle")
F = torch.nn.functional
import vkconvt.torch as vt  # noqa: E402
from vkconvt import torch_models  # noqa: E402

VARIANTS = [p for p in variant_params((("conv1d", "direct"), ("conv1d_grad_weight", "direct")))
            if p.values[1] != "auto" or p.values[0] == "vulkan"]


def torch_grads(case, x, w, b, go, slope=None):
    """dL/dx, dL/dw, dL/db of L = sum(go * conv_transpose1d(act(x), w, b)) by PyTorch in float64."""
    tx, tw = (torch.from_numpy(a).double().requires_grad_() for a in (x, w))
    tb = None if b is None else torch.from_numpy(b).double().requires_grad_()
    xa = tx if slope is None else F.leaky_relu(tx, slope)
    y = F.conv_transpose1d(xa, tw, tb, **case.kwargs())
    y.backward(torch.from_numpy(go).double())
    return tx.grad.numpy(), tw.grad.numpy(), None if tb is None else tb.grad.numpy()


def grad_out(case, seed=7):
    x, w, _ = case.inputs()
    shape = F.conv_transpose1d(torch.from_numpy(x), torch.from_numpy(w), **case.kwargs()).shape
    return np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("backend,algorithm,kernel", VARIANTS)
def test_backward_matches_torch(case, backend, algorithm, kernel):
    x, w, b = case.inputs()
    go = grad_out(case)
    with forced(kernel), vkconvt.trace() as runs:
        gx, gw, gb = vkconvt.conv_transpose1d_backward(go, x, w, **case.kwargs(), backend=backend,
                                                       algorithm=algorithm)
    if kernel is not None:
        op = kernels.KERNELS[kernel].op
        assert {k for k in kernels_used(runs) if kernels.KERNELS[k].op == op} <= {kernel, kernels.FALLBACK[op]}
    assert gx.dtype == gw.dtype == gb.dtype == np.float32 and gx.shape == x.shape and gw.shape == w.shape
    want = torch_grads(case, x, w, b, go)
    assert_close(gx, want[0])
    assert_close(gw, want[1])
    if b is not None:
        assert_close(gb, want[2])


@pytest.mark.parametrize("backend", ["numpy", pytest.param("vulkan", marks=needs_vulkan)])
def test_output_mask_computes_only_what_is_asked(backend):
    case = Case(n=2, c_in=4, c_out=6, l=13, k=3, stride=2, padding=1, output_padding=1, bias=True)
    x, w, b = case.inputs()
    go = grad_out(case)
    want = torch_grads(case, x, w, b, go)
    for mask in [(True, False, False), (False, True, False), (False, False, True), (False, True, True)]:
        with vkconvt.trace() as runs:
            got = vkconvt.conv_transpose1d_backward(go, x, w, **case.kwargs(), output_mask=mask, backend=backend)
        assert [g is not None for g in got] == list(mask)
        assert [name for name, _, _ in runs] == [op for op, m in zip(("conv1d", "conv_grad_weight"), mask) if m]
        for g, ref in zip(got, want):
            if g is not None:
                assert_close(g, ref)


@pytest.mark.parametrize("backend,algorithm", [("numpy", "direct"), pytest.param("vulkan", "direct", marks=needs_vulkan),
                                               pytest.param("vulkan", "gemm", marks=needs_vulkan)])
def test_input_activation_chain_rule(backend, algorithm):
    """input_activation='leaky_relu': x is before the activation; grad_input carries its derivative,
    grad_weight uses the activated x."""
    case = Case(n=2, c_in=8, c_out=6, l=20, k=4, stride=2, padding=1, bias=True)
    x, w, b = case.inputs()
    x[0, 0, :4] = 0.0                                        # the derivative at 0 is the slope, as PyTorch's
    go = grad_out(case)
    got = vkconvt.conv_transpose1d_backward(go, x, w, **case.kwargs(), input_activation="leaky_relu",
                                            input_negative_slope=0.2, backend=backend, algorithm=algorithm)
    for g, ref in zip(got, torch_grads(case, x, w, b, go, slope=0.2)):
        assert_close(g, ref)


@pytest.mark.parametrize("case", CASES[1:12:2], ids=CASE_IDS[1:12:2])
@pytest.mark.parametrize("backend,algorithm", [("numpy", "direct"), pytest.param("vulkan", "direct", marks=needs_vulkan),
                                               pytest.param("vulkan", "gemm", marks=needs_vulkan)])
def test_float16_storage(case, backend, algorithm):
    x, w, b = case.inputs()
    x16, w16 = x.astype(np.float16), w.astype(np.float16)
    go16 = grad_out(case).astype(np.float16)
    got = vkconvt.conv_transpose1d_backward(go16, x16, w16, **case.kwargs(), backend=backend, algorithm=algorithm)
    assert got[0].dtype == got[1].dtype == np.float16
    want = torch_grads(case, *(a.astype(np.float32) for a in (x16, w16)), b, go16.astype(np.float32))
    for g, ref in zip(got[:2], want[:2]):
        assert_close(g, ref, TOL["float16"])


@needs_vulkan
@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
def test_weight_gradient_under_the_buffer_limit(algorithm):
    """One submission normally; a small buffer limit cuts batch, channel and window pieces that
    accumulate on the device, with one download per channel piece."""
    case = Case(n=3, c_in=16, c_out=12, l=200, k=8, stride=4, padding=2, groups=2, bias=True)
    x, w, b = case.inputs()
    go = grad_out(case)
    want = torch_grads(case, x, w, b, go)[1]
    kw = dict(**case.kwargs(), output_mask=(False, True, False), algorithm=algorithm)
    with vkconvt.trace() as runs:
        assert_close(vkconvt.conv_transpose1d_backward(go, x, w, **kw)[1], want)
    assert runs[-1][2].submissions() == 1
    with vkconvt.settings.override(max_buffer_bytes=4096), vkconvt.trace() as runs:
        got = vkconvt.conv_transpose1d_backward(go, x, w, **kw)[1]
    assert_close(got, want)
    sched = runs[-1][2]
    assert sched.notes["accumulating steps"] > 2
    assert 1 < sum(1 for st in sched.steps if st.downloads) < len(sched.steps)


@needs_vulkan
def test_weight_gradient_gemm_chunks_under_the_budget():
    """A budget below one channel's columns: the gemm route cuts the positions into chunks (each
    copies its x columns, im2col's grad_out, multiplies and adds into gw on the device); a budget
    below one position is refused, and auto then takes direct."""
    case = Case(n=2, c_in=1, c_out=1, l=600, k=8, stride=4, padding=2)
    x, w, b = case.inputs()
    go = grad_out(case)
    kw = dict(**case.kwargs(), output_mask=(False, True, False))
    with vkconvt.trace() as runs:
        got = vkconvt.conv_transpose1d_backward(go, x, w, **kw, algorithm="gemm", max_workspace_bytes=4096)[1]
    assert_close(got, torch_grads(case, x, w, b, go)[1])
    sched = runs[-1][2]
    assert sched.workspace_bytes <= 4096 and sched.notes["length chunk"] < case.l
    assert sum(d.binds[-1] == "xa" for st in sched.steps for d in st.dispatches) > 2
    with pytest.raises(vkconvt.WorkspaceTooSmall, match="gemm.*workspace"):
        vkconvt.conv_transpose1d_backward(go, x, w, **kw, algorithm="gemm", max_workspace_bytes=64)
    with vkconvt.trace() as runs:
        vkconvt.conv_transpose1d_backward(go, x, w, **kw, max_workspace_bytes=64)
    assert runs[-1][2].algorithm == "direct"


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("backend,algorithm", [("numpy", "direct"), pytest.param("vulkan", "direct", marks=needs_vulkan),
                                               pytest.param("vulkan", "gemm", marks=needs_vulkan)])
def test_non_finite_gradients_propagate_as_in_pytorch(bad, backend, algorithm):
    case = Case(n=2, c_in=4, c_out=6, l=13, k=3, stride=2, padding=1, output_padding=1, bias=True)
    x, w, b = case.inputs()
    go = grad_out(case)
    go[0, 1, 5], go[1, 3, 0], go[1, 2, -1] = bad, bad, -bad
    got = vkconvt.conv_transpose1d_backward(go, x, w, **case.kwargs(), backend=backend, algorithm=algorithm)
    with np.errstate(invalid="ignore"):
        want = torch_grads(case, x, w, b, go)
    for g, ref in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(ref))
        np.testing.assert_array_equal(np.isposinf(g), np.isposinf(ref))
        np.testing.assert_array_equal(np.isneginf(g), np.isneginf(ref))
        assert_close(g[np.isfinite(ref)], ref[np.isfinite(ref)])


def test_unbatched_and_tensors():
    x, w = torch.randn(4, 9), torch.randn(4, 3, 5)
    go = torch.randn(3, 19)
    gx, gw, gb = vkconvt.conv_transpose1d_backward(go, x, w, stride=2, padding=1, backend="numpy")
    assert all(isinstance(g, torch.Tensor) for g in (gx, gw, gb)) and gx.shape == x.shape and gb.shape == (3,)
    tx, tw = x.double().requires_grad_(), w.double().requires_grad_()
    F.conv_transpose1d(tx, tw, stride=2, padding=1).backward(go.double())
    assert_close(gx.numpy(), tx.grad.numpy())
    assert_close(gw.numpy(), tw.grad.numpy())


BAD = [
    (dict(go=np.ones((2, 6, 26))), ValueError, r"grad_out must have the shape of conv_transpose1d's output, \(2, 6, 27\)"),
    (dict(go=np.ones((6, 27))), ValueError, r"grad_out must have the shape"),
    (dict(go=np.full((2, 6, 27), "a")), TypeError, r"grad_out must have a real numeric dtype"),
    (dict(go=np.ones((2, 6, 27), np.complex64)), TypeError, r"grad_out must have a real numeric dtype"),
    (dict(output_mask=(True, True)), TypeError, r"output_mask must be 3 bools"),
    (dict(output_mask="all"), TypeError, r"output_mask must be 3 bools"),
    (dict(w=np.ones((5, 6, 3))), ValueError, r"weight.shape\[0\] must equal the input channels C_in=4"),
    (dict(input_activation="tanh"), ValueError, r"input_activation must be one of leaky_relu"),
    (dict(storage="float64", backend="vulkan"), ValueError, r"float64.*NumPy backend only"),
]


@pytest.mark.parametrize("bad,exc,match", BAD, ids=[m[:40] for _, _, m in BAD])
def test_bad_input(bad, exc, match):
    args = dict(go=np.ones((2, 6, 27), np.float32), x=np.ones((2, 4, 13), np.float32), w=np.ones((4, 6, 3), np.float32),
                stride=2, padding=0, output_padding=0, backend="numpy")
    args.update(bad)
    go, x, w = args.pop("go"), args.pop("x"), args.pop("w")
    with pytest.raises(exc, match=match):
        vkconvt.conv_transpose1d_backward(go, x, w, **args)


@needs_vulkan
def test_device_array_grad_out_is_refused():
    with pytest.raises(TypeError, match="grad_out is a DeviceArray"):
        vkconvt.conv_transpose1d_backward(vkconvt.asarray(np.ones((1, 2, 5), np.float32)), np.ones((1, 2, 5)),
                                          np.ones((2, 2, 1)))


# ---------------------------------------------------------------- vkconvt.torch under autograd
GRADCHECK = [dict(stride=2, padding=1), dict(stride=3, padding=2, output_padding=1, dilation=2),
             dict(stride=2, groups=2), dict(stride=1, padding=0, dilation=3)]


@pytest.mark.parametrize("hyper", GRADCHECK, ids=lambda h: "_".join(f"{k[0]}{v}" for k, v in h.items()))
def test_gradcheck_float64_numpy(hyper):
    g = hyper.get("groups", 1)
    x = torch.randn(2, 4, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 6 // g, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: vt.conv_transpose1d(*a, **hyper, backend="numpy"), (x, w, b))
    assert torch.autograd.gradcheck(lambda a, c: vt.conv_transpose1d(a, c, None, **hyper, backend="numpy"),
                                    (x[0].detach().requires_grad_(), w))        # unbatched, no bias


@pytest.mark.parametrize("act", [dict(activation="leaky_relu", negative_slope=0.3, input_activation="leaky_relu"),
                                 dict(activation="tanh"), dict(activation="snake", alpha=np.linspace(0.3, 1.2, 6)),
                                 dict(activation="snakebeta", alpha=np.linspace(0.3, 1.2, 6), beta=np.ones(6) * 0.7,
                                      alpha_logscale=True)],
                         ids=["leaky_in_out", "tanh", "snake", "snakebeta"])
def test_gradcheck_fused_activations(act):
    """The Function keeps the input activation fused (its derivative in the backward); PyTorch applies
    and differentiates the output activation."""
    m = vt.ConvTranspose1d(4, 6, 3, stride=2, padding=1, dtype=torch.float64, backend="numpy", **act)
    x = torch.randn(2, 4, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w, b: torch.func.functional_call(m, {"weight": w, "bias": b}, (a,)),
                                    (x, m.weight.detach().requires_grad_(), m.bias.detach().requires_grad_()))


def module_grads(model, x, seed=3):
    y = model(x)
    target = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    loss = (y - target).square().mean()
    model.zero_grad()
    x.grad = None
    loss.backward()
    return loss.item(), x.grad.clone(), {n: p.grad.clone() for n, p in model.named_parameters()}


@needs_vulkan
@pytest.mark.parametrize("case", CASES[1:], ids=CASE_IDS[1:])
def test_module_gradients_match_torch_float32(case):
    torch.manual_seed(0)
    ref = torch.nn.ConvTranspose1d(case.c_in, case.c_out, case.k, case.stride, case.padding, case.output_padding,
                                   case.groups, case.bias, case.dilation)
    x = torch.randn((case.c_in, case.l) if case.unbatched else (case.n, case.c_in, case.l), requires_grad=True)
    want = module_grads(ref, x)
    got = module_grads(vt.convert(ref), x)
    assert got[0] == pytest.approx(want[0], rel=1e-5)
    assert_close(got[1].numpy(), want[1].double().numpy())
    for name, g in want[2].items():
        assert_close(got[2][name].numpy(), g.double().numpy())


@needs_vulkan
@pytest.mark.parametrize("norm", ["hooks", "parametrizations"])
def test_weight_norm_gradients(norm):
    """PyTorch composes the weight-norm step: vkconvt computes dL/dweight, the norm's g and v get theirs."""
    torch.manual_seed(1)
    conv = torch.nn.ConvTranspose1d(16, 8, 8, stride=4, padding=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = (torch.nn.utils.parametrizations.weight_norm(conv) if norm == "parametrizations"
               else torch.nn.utils.weight_norm(conv))
    x = torch.randn(2, 16, 30, requires_grad=True)
    want = module_grads(ref, x)
    got = module_grads(vt.convert(ref), x)
    assert set(got[2]) == set(want[2]) and len(want[2]) == 3
    for name, g in want[2].items():
        assert_close(got[2][name].numpy(), g.double().numpy())


@needs_vulkan
def test_training_matches_pytorch():
    """A reduced HiFi-GAN V1 generator (weight-normed ConvTranspose1d ups, leaky ReLU before each),
    converted, trained 4 SGD steps against its PyTorch twin from the same weights: the same losses
    (float32 tolerance), and weights that stay together."""
    torch.manual_seed(0)
    config = dict(resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], upsample_rates=[8, 2],
                  upsample_kernel_sizes=[16, 4], upsample_initial_channel=32, num_mels=20)
    ref = torch_models.Generator(**config)
    model = vt.convert(ref, backend="vulkan")
    mel = torch.randn(2, 20, 12)
    target = torch.randn(2, 1, 12 * 16) * 0.1
    losses = {}
    for name, m in (("torch", ref), ("vkconvt", model)):
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        losses[name] = []
        with vkconvt.trace() as runs:
            for _ in range(4):
                opt.zero_grad()
                loss = F.l1_loss(m(mel), target)
                loss.backward()
                opt.step()
                losses[name].append(loss.item())
        if name == "vkconvt":
            ops = {op for op, _, _ in runs}
            assert ops == {"conv_transpose1d", "conv1d", "conv_grad_weight"}, ops
    np.testing.assert_allclose(losses["vkconvt"], losses["torch"], rtol=1e-4)
    assert losses["torch"][-1] < losses["torch"][0]
    for (n, p), q in zip(ref.named_parameters(), model.parameters()):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), atol=1e-4, err_msg=n)


def test_grad_mode_no_longer_raises_and_inference_stays_plain():
    m = vt.convert(torch.nn.ConvTranspose1d(4, 2, 3, stride=2), backend="numpy")
    x = torch.randn(1, 4, 5, requires_grad=True)
    m(x).sum().backward()
    assert x.grad is not None and m.weight.grad is not None and m.bias.grad is not None
    with torch.no_grad():
        y = m(x)
    assert y.grad_fn is None


def test_double_backward_is_refused():
    m = vt.convert(torch.nn.ConvTranspose1d(4, 2, 3), backend="numpy")
    x = torch.randn(1, 4, 5, requires_grad=True)
    with pytest.raises(RuntimeError, match="double backward.*not supported"):
        torch.autograd.grad(m(x).square().sum(), x, create_graph=True)


class _FakeCuda(torch.Tensor):
    """A CPU tensor that reports device cuda:0 (this machine has no CUDA)."""

    @property
    def device(self):
        return torch.device("cuda:0")


def test_models_on_other_devices_are_refused_in_grad_mode():
    """A converted model put on CUDA or the meta device: a clear error in grad mode too, naming the
    tensor and the fix, before anything is computed."""
    m = vt.convert(torch.nn.ConvTranspose1d(4, 2, 3), backend="numpy")
    x = torch.randn(1, 4, 5, requires_grad=True)
    with pytest.raises(ValueError, match=r"input is on device cuda:0; vkconvt takes CPU tensors \(call input.cpu\(\)\)"):
        m(x.as_subclass(_FakeCuda))
    meta = copy.deepcopy(m).to("meta")
    with pytest.raises(ValueError, match=r"weight is on device meta; vkconvt takes CPU tensors \(call weight.cpu\(\)\)"):
        meta(x)
    with pytest.raises(ValueError, match=r"input is on device meta; vkconvt takes CPU tensors"):
        meta(torch.empty(1, 4, 5, device="meta", requires_grad=True))
