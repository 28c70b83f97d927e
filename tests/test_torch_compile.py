"""Converted models under PyTorch's graph tools (issue 23): torch.compile (eager, aot_eager and
inductor backends, fullgraph), torch.jit.trace and torch.export each record the registered op
vkconvt::conv_transpose1d and give the unconverted model's results; torch.jit.script is refused
with a message that says what to use. The op itself: fake shapes, vkconvt's checks, its autograd.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import test_torch as tt  # noqa: E402  (the models and tolerances of the eager tests)
import vkconvt.torch as vt  # noqa: E402
from vkconvt.torch import _op  # noqa: E402

OP = "vkconvt.conv_transpose1d"


def converted(name, backend=None):
    model, x = tt.make(name)
    with torch.no_grad():
        ref = model(x)
    conv = vt.convert(model, backend=backend)
    return model, conv, x, ref


def recording_backend(graphs):
    """A torch.compile backend that keeps the FX graphs dynamo hands it, then runs them as they are."""
    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    return backend


def fresh_kept_layers(model):
    for m in tt.conv_layers(model).values():
        m._vkconvt.layers.clear()


def all_layers_ran(model):
    return all(m._vkconvt.layers for m in tt.conv_layers(model).values())


# ---------------------------------------------------------------- torch.compile
@pytest.mark.parametrize("name", tt.MODELS)
def test_compile_fullgraph_records_the_op(name):
    model, conv, x, ref = converted(name)
    graphs = []
    compiled = torch.compile(conv, backend=recording_backend(graphs), fullgraph=True)
    fresh_kept_layers(conv)
    with torch.no_grad():
        out = compiled(x)
    assert len(graphs) == 1 and graphs[0].code.count(OP) == len(tt.conv_layers(conv))
    assert all_layers_ran(conv)                     # the op ran on each layer's kept device weights
    assert out.shape == ref.shape and tt.nmse(out, ref) <= tt.MODEL_TOL


@pytest.mark.parametrize("compiler", ["eager", "aot_eager"])
@pytest.mark.parametrize("name", ["hifigan_style", "encodec_style"])
def test_compile_backends(name, compiler):
    model, conv, x, ref = converted(name)
    compiled = torch.compile(conv, backend=compiler, fullgraph=True)
    with torch.inference_mode():
        assert tt.nmse(compiled(x), ref) <= tt.MODEL_TOL
        x2 = torch.randn(1, x.shape[1], 23)         # another length: recompiled with symbolic shapes
        out2, ref2 = compiled(x2), model(x2)
    assert out2.shape == ref2.shape and tt.nmse(out2, ref2) <= tt.MODEL_TOL


def test_compile_inductor():
    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose1d(6, 4, 4, stride=2, padding=1), nn.Tanh(),
                          nn.ConvTranspose1d(4, 3, 3, stride=3, groups=1)).eval()
    x = torch.randn(2, 6, 9)
    conv = vt.convert(model)
    compiled = torch.compile(conv, fullgraph=True)          # inductor, the default
    with torch.no_grad():
        out, ref = compiled(x), model(x)
    assert out.shape == ref.shape and tt.nmse(out, ref) <= tt.MODEL_TOL


def test_compiled_layers_keep_and_refresh_their_device_weights():
    model, conv, x, _ = converted("hifigan_style")
    compiled = torch.compile(conv, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        compiled(x)
        held = {n: dict(m._vkconvt.layers) for n, m in tt.conv_layers(conv).items()}
        compiled(x)
        assert {n: dict(m._vkconvt.layers) for n, m in tt.conv_layers(conv).items()} == held    # reused
        for m in (model, conv):
            m.ups[0].weight_g.mul_(-2)                  # weight norm recomputes the effective weight
        assert tt.nmse(compiled(x), model(x)) <= tt.MODEL_TOL
    assert conv.ups[0]._vkconvt.layers != held["ups.0"]


def test_dropin_with_fused_snake_compiles_and_exports():
    torch.manual_seed(0)
    alpha = torch.rand(4) + 0.5
    m = vt.ConvTranspose1d(6, 4, 4, stride=2, padding=1, activation="snake", alpha=alpha)
    x = torch.randn(2, 6, 9)
    with torch.no_grad():
        y = nn.functional.conv_transpose1d(x, m.weight, m.bias, stride=2, padding=1)
        ref = y + torch.sin(alpha[:, None] * y) ** 2 / alpha[:, None]
        assert tt.nmse(m(x), ref) <= tt.LAYER_TOL
        assert tt.nmse(torch.compile(m, backend="aot_eager", fullgraph=True)(x), ref) <= tt.LAYER_TOL
        ep = torch.export.export(m, (x,))
        assert tt.nmse(ep.module()(x), ref) <= tt.LAYER_TOL
    assert list(m.state_dict()) == ["weight", "bias"]         # alpha is a non-persistent buffer


def test_compile_in_grad_mode_gives_pytorchs_gradients():
    """aot_eager traces the op's registered backward: the gradients of the unconverted model."""
    model, conv, x, _ = converted("depthwise")
    xr, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    model(xr).square().sum().backward()
    torch.compile(conv, backend="aot_eager")(xc).square().sum().backward()
    assert tt.nmse(xc.grad, xr.grad) <= tt.LAYER_TOL
    for (name, p), q in zip(model.named_parameters(), conv.parameters()):
        assert q.grad is not None and tt.nmse(q.grad, p.grad) <= tt.LAYER_TOL, name


# ---------------------------------------------------------------- torch.jit
@pytest.mark.parametrize("name", tt.MODELS)
def test_jit_trace(name):
    model, conv, x, ref = converted(name)
    with torch.no_grad():
        traced = torch.jit.trace(conv, (x,))         # check_trace runs it again and compares
        assert str(traced.inlined_graph).count("vkconvt::conv_transpose1d") == len(tt.conv_layers(conv))
        assert tt.nmse(traced(x), ref) <= tt.MODEL_TOL
        x2 = x.flip(-1).contiguous()                   # same shape, other values
        assert tt.nmse(traced(x2), model(x2)) <= tt.MODEL_TOL


def test_jit_script_is_refused_clearly():
    model = nn.Sequential(nn.ConvTranspose1d(4, 3, 3, stride=2), nn.Tanh())
    conv = vt.convert(model)
    for m in (conv, vt.convert(tt.subclassed()), vt.ConvTranspose1d(4, 3, 3)):
        with pytest.raises(RuntimeError, match=r"torch.jit.script cannot compile a \w+ computed by vkconvt.*"
                                               r"torch.jit.trace.*torch.export.*torch.compile"):
            torch.jit.script(m)
    x = torch.randn(1, 4, 5)
    with torch.no_grad():
        assert torch.equal(torch.jit.script(vt.restore(conv))(x), model(x))     # after restore: PyTorch's own


# ---------------------------------------------------------------- torch.export
@pytest.mark.parametrize("name", tt.MODELS)
def test_export(name):
    model, conv, x, ref = converted(name)
    with torch.no_grad():
        ep = torch.export.export(conv, (x,))
        assert ep.graph_module.code.count(OP) == len(tt.conv_layers(conv))
        assert tt.nmse(ep.module()(x), ref) <= tt.MODEL_TOL


def test_exported_program_runs_in_another_process(tmp_path):
    """Saved, then loaded where the converted model does not exist: the op computes through
    vkconvt.conv_transpose1d (no kept layers to find) and gives the same result."""
    model, conv, x, ref = converted("depthwise")
    with torch.no_grad():
        torch.export.save(torch.export.export(conv, (x,)), tmp_path / "model.pt2")
    torch.save({"x": x, "ref": ref}, tmp_path / "io.pt")
    code = ("import sys, torch, vkconvt.torch\n"
            f"ep = torch.export.load({str(tmp_path / 'model.pt2')!r})\n"
            f"io = torch.load({str(tmp_path / 'io.pt')!r})\n"
            "with torch.no_grad():\n    out = ep.module()(io['x'])\n"
            "print(float(((out - io['ref']) ** 2).mean() / (io['ref'] ** 2).mean()))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert float(r.stdout.strip().splitlines()[-1]) <= tt.MODEL_TOL


def test_export_one_layer():
    torch.manual_seed(0)
    ref = nn.ConvTranspose1d(4, 3, 3, stride=2, padding=1)
    x = torch.randn(1, 4, 7)
    with torch.no_grad():
        for m in (vt.convert(ref), vt.ConvTranspose1d.from_torch(ref)):
            assert tt.nmse(torch.export.export(m, (x,)).module()(x), ref(x)) <= tt.LAYER_TOL


def test_export_checks_shapes_like_eager():
    conv = vt.convert(nn.ConvTranspose1d(4, 3, 3))
    with torch.no_grad(), pytest.raises(ValueError, match=r"weight.shape\[0\] must equal the input channels C_in=5"):
        torch.export.export(conv, (torch.randn(1, 5, 7),))


# ---------------------------------------------------------------- the op itself
def call(x, w, b=None, stride=2, handle=_op.NO_HANDLE, **options):
    return _op.call(x, w, b, stride, 1, 0, 1, 1, _op.op_options(options), handle)


def test_op_fake_and_meta_shapes():
    x, w, b = torch.randn(2, 6, 9), torch.randn(6, 4, 4), torch.randn(4)
    expect = nn.functional.conv_transpose1d(x, w, b, stride=2, padding=1)
    with torch.no_grad():
        y = call(x, w, b, backend="numpy")
        assert y.shape == expect.shape and tt.nmse(y, expect) <= tt.LAYER_TOL
        meta = call(x.to("meta"), w.to("meta"), b.to("meta"))
        assert meta.device.type == "meta" and meta.shape == expect.shape
        assert call(x[0].to("meta"), w.to("meta")).shape == expect.shape[1:]       # unbatched
        assert call(x.half().to("meta"), w.half().to("meta")).dtype == torch.float16
        with pytest.raises(TypeError, match=r"input \(torch.float16\) and weight \(torch.float32\) must have the same"):
            call(x.half().to("meta"), w.to("meta"))
        with pytest.raises(ValueError, match=r"bias must have shape \(C_out,\) = \(4,\)"):
            call(x.to("meta"), w.to("meta"), torch.zeros(5, device="meta"))


def test_op_without_its_module_gives_the_same_result():
    conv = vt.convert(nn.ConvTranspose1d(6, 4, 4, stride=2, padding=1), backend="numpy")
    x = torch.randn(2, 6, 9)
    with torch.no_grad():
        kept = conv(x)
        alone = call(x, conv.weight, conv.bias, backend="numpy")              # no handle: the functional API
        stale = call(x, conv.weight, conv.bias, handle=10 ** 9, backend="numpy")   # a handle nobody owns
    assert torch.equal(kept, alone) and torch.equal(kept, stale)


def test_op_autograd_at_the_call():
    """The op's gradients are PyTorch's; with a fused output activation under autograd it refuses
    (vkconvt.torch's modules apply that activation in PyTorch instead)."""
    x, w = torch.randn(1, 4, 5, requires_grad=True), torch.randn(4, 3, 3, requires_grad=True)
    call(x, w, backend="numpy").square().sum().backward()
    xr, wr = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    nn.functional.conv_transpose1d(xr, wr, stride=2, padding=1).square().sum().backward()
    assert tt.nmse(x.grad, xr.grad) <= tt.LAYER_TOL and tt.nmse(w.grad, wr.grad) <= tt.LAYER_TOL
    with pytest.raises(RuntimeError, match=r"fused output activation 'tanh' has no gradient.*apply that in PyTorch"):
        call(x, w, backend="numpy", activation="tanh")
    with torch.no_grad():
        assert call(x, w, backend="numpy", activation="tanh").shape == (1, 3, 9)


def test_op_options_round_trip():
    opts = _op.op_options(dict(device=0, max_workspace_bytes=1 << 20, alpha=np.ones(3), negative_slope=1))
    cfg = _op._vkconvt_options(opts)
    assert cfg["device"] == 0 and cfg["max_workspace_bytes"] == 1 << 20 and cfg["negative_slope"] == 1.0
    assert isinstance(cfg["alpha"], np.ndarray) and cfg["alpha"].dtype == np.float32
    assert [cfg[k] for k in ("algorithm", "backend", "storage", "activation")] == ["auto", None, None, None]
