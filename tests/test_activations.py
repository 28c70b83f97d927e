"""Fused activations: the case table with each output activation (random per-channel Snake
parameters) and the input leaky ReLU, over every backend, algorithm and kernel variant, against the
NumPy reference and, on the reference, against PyTorch (F.leaky_relu, torch.tanh and the Snake
formulas written in torch here); the paths where the host applies the activation (input-channel
chunks, column chunks, empty windows); the layer and the PyTorch module; bad arguments."""
import contextlib

import numpy as np
import pytest

import vkconvt
from vkconvt import backends
from cases import CASES, CASE_IDS, Case, assert_close, forced, variant_params
from conftest import needs_vulkan

torch = pytest.importorskip("torch", reason="PyTorch (CPU) is the independent oracle")
ACTS = ["relu", "leaky_relu", "tanh", "snake", "snakebeta"]


def act_kwargs(act, c_out, seed=0):
    rng = np.random.default_rng(seed)
    kw = dict(activation=act, input_activation="leaky_relu", input_negative_slope=0.1)
    if act == "leaky_relu":
        kw["negative_slope"] = 0.2
    if act in ("snake", "snakebeta"):
        kw["alpha"] = rng.uniform(0.2, 2.0, c_out).astype(np.float32)
    if act == "snakebeta":
        kw.update(beta=rng.uniform(-0.5, 0.5, c_out).astype(np.float32), alpha_logscale=True)
    return kw


def torch_ref(case, x, w, b, kw):
    t = lambda a: None if a is None else torch.from_numpy(np.asarray(a)).double()  # noqa: E731
    y = torch.nn.functional.conv_transpose1d(torch.nn.functional.leaky_relu(t(x), kw["input_negative_slope"]),
                                             t(w), t(b), **case.kwargs())
    act = kw["activation"]
    shape = (1, -1, 1) if y.dim() == 3 else (-1, 1)
    if act == "relu":
        return torch.relu(y).numpy()
    if act == "leaky_relu":
        return torch.nn.functional.leaky_relu(y, kw["negative_slope"]).numpy()
    if act == "tanh":
        return torch.tanh(y).numpy()
    alpha = t(kw["alpha"]).reshape(shape)
    if act == "snake":
        return (y + torch.sin(alpha * y) ** 2 / (alpha + 1e-9)).numpy()
    alpha, beta = torch.exp(alpha), torch.exp(t(kw["beta"]).reshape(shape))        # alpha_logscale
    return (y + torch.sin(alpha * y) ** 2 / (beta + 1e-9)).numpy()


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reference_matches_torch(case, act):
    x, w, b = case.inputs()
    kw = act_kwargs(act, case.c_out)
    out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy", **kw)
    assert_close(out, torch_ref(case, x, w, b, kw), tol=1e-10)


SMALL = [c for c in CASES if c.l < 1000 and c.k < 1000]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("case", SMALL, ids=[c.id for c in SMALL])
@pytest.mark.parametrize("backend,algorithm,kernel", [p for p in variant_params() if p.values[0] == "vulkan"])
def test_every_variant(case, act, backend, algorithm, kernel):
    x, w, b = case.inputs()
    kw = act_kwargs(act, case.c_out, seed=case.l)
    ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy", **kw)
    with forced(kernel):
        out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algorithm, backend=backend, **kw)
    assert_close(out, ref)


@needs_vulkan
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("how", ["input-channel chunks", "column chunks", "empty windows"])
def test_where_the_host_applies_the_activation(how, act):
    """Pieces that add up on the host (input-channel chunks), gemm column chunks and windows no input
    reaches cannot fuse the activation into a kernel: the host applies it, and the answer is the same."""
    case = {"input-channel chunks": Case(n=2, c_in=64, c_out=6, l=30, k=8, stride=4, padding=1, bias=True),
            "column chunks": Case(c_in=8, c_out=6, l=300, k=7, stride=3, padding=2, bias=True),
            "empty windows": Case(c_in=2, c_out=3, l=3, k=2, stride=4096, bias=True)}[how]
    x, w, b = case.inputs()
    kw = act_kwargs(act, case.c_out)
    ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy", **kw)
    # chunks of input channels, or many output windows
    limit = vkconvt.settings.override(max_buffer_bytes=1024) if how != "column chunks" else contextlib.nullcontext()
    budget = 4096 if how == "column chunks" else None
    algorithm = "direct" if how != "column chunks" else "gemm"
    with limit, vkconvt.trace() as runs:
        out = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algorithm, backend="vulkan",
                                       max_workspace_bytes=budget, **kw)
    assert not runs[-1][2].info["fused"]
    assert_close(out, ref)


@pytest.mark.parametrize("backend", ["numpy"] + ([] if backends.vulkan_reason() else ["vulkan"]))
def test_layer_and_torch_module(backend):
    case = Case(n=2, c_in=6, c_out=4, l=30, k=5, stride=3, padding=2, groups=2, bias=True)
    x, w, b = case.inputs()
    kw = act_kwargs("snakebeta", case.c_out)
    ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy", **kw)
    layer = vkconvt.ConvTranspose1d(w, b, **case.kwargs(), backend=backend, **kw)
    assert_close(layer(x), ref)
    assert_close(layer(x), ref)                   # the call cache
    import vkconvt.torch as vt
    m = vt.ConvTranspose1d(6, 4, 5, stride=3, padding=2, groups=2, backend=backend, **kw)
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(w))
        m.bias.copy_(torch.from_numpy(b))
    with torch.inference_mode():
        assert_close(m(torch.from_numpy(x)).numpy(), ref)


ERRORS = [
    (dict(activation="gelu"), r"activation must be one of relu, leaky_relu, tanh, snake, snakebeta or None; got 'gelu'"),
    (dict(activation="leaky_relu", negative_slope=float("nan")), r"negative_slope must be a finite number, got nan"),
    (dict(activation="snake"), r"alpha must have shape \(C_out,\) = \(3,\); got nothing"),
    (dict(activation="snake", alpha=np.ones(4)), r"alpha must have shape \(C_out,\) = \(3,\); got shape \(4,\)"),
    (dict(activation="snakebeta", alpha=np.ones(3)), r"beta must have shape \(C_out,\) = \(3,\); got nothing"),
    (dict(activation="snake", alpha=[1.0, np.inf, 1.0]), r"alpha must be finite"),
    (dict(activation="relu", alpha=np.ones(3)), r"alpha is only used by activation='snake' or 'snakebeta'"),
    (dict(input_activation="relu"), r"input_activation must be one of leaky_relu or None; got 'relu'"),
    (dict(input_activation="leaky_relu", input_negative_slope="x"), r"input_negative_slope must be a finite number"),
]


@pytest.mark.parametrize("kw,pattern", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_bad_activation_arguments(kw, pattern):
    x, w = np.ones((1, 4, 10), np.float32), np.ones((4, 3, 5), np.float32)
    with pytest.raises(ValueError, match=pattern):
        vkconvt.conv_transpose1d(x, w, **kw)
    with pytest.raises(ValueError, match=pattern):
        vkconvt.ConvTranspose1d(w, **kw)
