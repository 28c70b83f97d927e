"""Nothing hangs, nothing leaks, nothing lies: extreme values, non-finite weights, damaged SPIR-V,
fork, interrupts, bad cache files and unclear errors (the reproducers of the reliability sweep).
Probes that could hang run in a subprocess with a time limit."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vkconvt
from vkconvt import backends, costmodel, params
from cases import assert_close
from conftest import needs_vulkan

HERE = os.path.dirname(os.path.abspath(__file__))
ALL = ["numpy"] + (["vulkan"] if backends.vulkan_reason() is None else [])


def run_py(code, timeout=120, **env):
    e = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=e,
                          timeout=timeout)


def torch_conv(x, w, **kw):
    torch = pytest.importorskip("torch")
    return torch.nn.functional.conv_transpose1d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), **kw).numpy()


# ------------------------------------------------------------------------------ exact answers
HUGE = [(2 ** 31, "pad=dil=2**31"), (2 ** 31 + 5, "2**31+5"), (3 * 2 ** 30, "3*2**30"), (2 ** 32 - 1, "2**32-1")]


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("algorithm", ["direct", "gemm", "auto"])
@pytest.mark.parametrize("v", [h[0] for h in HUGE], ids=[h[1] for h in HUGE])
def test_huge_padding_and_dilation_are_exact(v, algorithm, backend):
    x, w = np.array([[[1.5]]], np.float32), np.array([[[2, 3, 5]]], np.float32)
    out = vkconvt.conv_transpose1d(x, w, padding=v, dilation=v, algorithm=algorithm, backend=backend)
    assert out.tolist() == [[[4.5]]]


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
def test_huge_stride_and_padding_are_exact(algorithm, backend):
    out = vkconvt.conv_transpose1d(np.array([[[1, 2, 3]]], np.float32), np.array([[[7]]], np.float32),
                                   stride=2 ** 30, padding=2 ** 30, algorithm=algorithm, backend=backend)
    assert out.tolist() == [[[14.0]]]


@pytest.mark.parametrize("backend", ALL)
def test_col2im_with_huge_padding_is_exact(backend):
    col = np.array([1, 2, 3], np.float32).reshape(1, 1, 3, 1)
    out = vkconvt.col2im_1d(col, stride=1, padding=2 ** 31, dilation=2 ** 31, backend=backend)
    assert out.tolist() == [[[2.0]]]          # only tap 1 lands on the one output


@needs_vulkan
def test_unrepresentable_offsets_are_refused_on_vulkan():
    """Inputs of one output 2**30 apart through stride and dilation together: no folding helps,
    and the answer is a clear refusal naming both (the NumPy backend computes it, with an 8 GiB output)."""
    x, w = np.array([[[1, 2, 3]]], np.float32), np.ones((1, 1, 3), np.float32)
    with pytest.raises(ValueError, match=r"stride=536870912, dilation=536870912 .*32-bit .*backend='numpy'"):
        vkconvt.conv_transpose1d(x, w, stride=2 ** 29, dilation=2 ** 29, backend="vulkan")


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("algorithm", ["direct", "gemm", "auto"])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan], ids=["inf", "-inf", "nan"])
def test_non_finite_weights_propagate_as_in_pytorch(bad, algorithm, backend):
    """A tap that lands on no input is never multiplied: PyTorch gives [inf 1 inf 1 1], not a NaN at the end."""
    x, w = np.ones((1, 1, 2), np.float32), np.array([[[bad, 1, 1]]], np.float32)
    out = vkconvt.conv_transpose1d(x, w, stride=2, algorithm=algorithm, backend=backend)
    np.testing.assert_array_equal(out, torch_conv(x, w, stride=2).astype(np.float32))


# ------------------------------------------------------------------------------ no hang
@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("kw", [dict(stride=2 ** 31), dict(stride=2 ** 32), dict(stride=2 ** 63), dict(stride=2 ** 64),
                                dict(stride=10 ** 30), dict(dilation=2 ** 63), dict(dilation=2 ** 32),
                                dict(stride=2 ** 16, L=2 ** 20)], ids=str)
def test_huge_values_answer_at_once(kw, backend):
    kw = dict(kw)
    L = kw.pop("L", 3)
    code = f"""
        import time, numpy as np, vkconvt
        vkconvt.conv_transpose1d(np.ones((1, 1, 3), np.float32), np.ones((1, 1, 3), np.float32), backend={backend!r})
        t = time.perf_counter()      # the device is up: what follows is this call alone
        try:
            out = vkconvt.conv_transpose1d(np.ones((1, 1, {L}), np.float32), np.ones((1, 1, 3), np.float32),
                                           backend={backend!r}, **{kw!r})
            print("result", out.shape)
        except (ValueError, MemoryError) as exc:
            print("refused", type(exc).__name__, exc)
        print("seconds", time.perf_counter() - t)
    """
    r = run_py(code, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert float(r.stdout.split("seconds")[-1]) < 1.0, r.stdout
    if "refused" in r.stdout:
        assert "bytes" in r.stdout or "stride=" in r.stdout or "dilation=" in r.stdout, r.stdout


def test_explain_with_a_huge_or_zero_stride_answers_at_once():
    for stride, expect in ((4294967296, "out (1, 1, 8589934595)"), (0, "stride must be >= 1, got 0")):
        r = subprocess.run([sys.executable, "-m", "vkconvt", "explain", "--x", "1,1,3", "--w", "1,1,3", "--stride",
                            str(stride)], capture_output=True, text=True, timeout=60)
        assert "Traceback" not in r.stderr, r.stderr
        assert expect in r.stdout + r.stderr


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
def test_long_kernels_cost_their_flops_not_k_squared(algorithm, backend):
    """x (1,1,4), w (1,1,2**20), stride 3: was 22 s (K**2 tap loops); now a fraction of a second."""
    code = f"""
        import time, numpy as np, vkconvt
        x, w = np.ones((1, 1, 4), np.float32), np.ones((1, 1, 2 ** 20), np.float32)
        vkconvt.conv_transpose1d(x, w[:, :, :64], stride=3, algorithm={algorithm!r}, backend={backend!r})
        t = time.perf_counter()
        out = vkconvt.conv_transpose1d(x, w, stride=3, algorithm={algorithm!r}, backend={backend!r})
        print(out.sum(), time.perf_counter() - t)
    """
    r = run_py(code, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    total, seconds = map(float, r.stdout.split())
    assert total == 4 * 2 ** 20
    assert seconds < 20, f"{seconds:.1f} s for a 8 MFLOP problem"


# ------------------------------------------------------------------------------ damaged SPIR-V
@needs_vulkan
@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "delete"])
def test_damaged_spirv_makes_vulkan_unavailable_naming_the_file(damage, tmp_path):
    import shutil
    from vkconvt.vulkan import shaders
    spv = tmp_path / "spv"
    shutil.copytree(shaders.SPV_DIR, spv)
    target = spv / "conv_transpose_1d.spv"
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[:-4])
    elif damage == "flip":
        target.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage == "empty":
        target.write_bytes(b"")
    else:
        target.unlink()
    code = f"""
        import numpy as np
        from vkconvt.vulkan import shaders
        shaders.SPV_DIR, shaders.MANIFEST = {str(spv)!r}, {str(spv / "manifest.json")!r}
        import vkconvt
        row = [r for r in vkconvt.available() if r["name"] == "vulkan"][0]
        print("available", row["available"], row["reason"])
        print(vkconvt.conv_transpose1d(np.ones((1, 1, 2), np.float32), np.ones((1, 1, 3), np.float32)).tolist())
    """
    r = run_py(code)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "available False" in r.stdout and "conv_transpose_1d.spv" in r.stdout, r.stdout
    assert "[[[1.0, 2.0, 2.0, 1.0]]]" in r.stdout          # the NumPy backend serves, never zeros


# ------------------------------------------------------------------------------ fork
@needs_vulkan
@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_a_forked_child_computes(how):
    code = f"""
        import os, multiprocessing as mp, numpy as np, vkconvt
        x, w = np.ones((1, 2, 5), np.float32), np.ones((2, 3, 3), np.float32)
        ref = vkconvt.conv_transpose1d(x, w, stride=2, backend="vulkan")

        def child(_=None):
            return float(np.abs(vkconvt.conv_transpose1d(x, w, stride=2, backend="vulkan") - ref).max())

        if {how!r} == "os.fork":
            pid = os.fork()
            if pid == 0:
                os._exit(0 if child() == 0 else 3)
            _, status = os.waitpid(pid, 0)
            print("child", os.waitstatus_to_exitcode(status))
        else:
            with mp.get_context("fork").Pool(2) as pool:
                print("child", int(max(pool.map(child, range(4)))))
        print("parent", child())
    """
    r = run_py(code, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "child 0" in r.stdout and "parent 0.0" in r.stdout, r.stdout


# ------------------------------------------------------------------------------ memory
def live_bytes(dev):
    """Bytes of the device's live kp tensors, staging copies counted (what allocated_bytes must say)."""
    staged = dev.kp.TensorTypes.device
    return sum(4 * t.size() * (2 if t.tensor_type() == staged else 1) for t, _, _ in dev._live.values())


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@needs_vulkan
def test_soak_many_shapes_bounded_memory_and_exact_accounting():
    """Thousands of calls cycling more shapes than the plan cache holds: RSS stays bounded and the
    package's count of device bytes equals the bytes of its live buffers."""
    be = backends.get("vulkan")
    dev = be.dev
    rng = np.random.default_rng(0)
    shapes = [(1 + i % 2, 3 + i % 5, 16 + i, 2 + i % 4) for i in range(dev.recordings.maxsize + 40)]
    arrays = [(rng.standard_normal((n, c, l)).astype(np.float32), rng.standard_normal((c, 2, k)).astype(np.float32))
              for n, c, l, k in shapes]

    def cycle(calls):
        for i in range(calls):
            x, w = arrays[i % len(arrays)]
            vkconvt.conv_transpose1d(x, w, stride=2, algorithm="gemm" if i % 3 == 0 else "direct", backend="vulkan")
    cycle(1500)
    before = rss()
    cycle(3000)
    grown = rss() - before
    assert dev.allocated_bytes == live_bytes(dev)
    assert grown < 1_500_000, f"RSS grew {grown} bytes over 3000 calls"


@needs_vulkan
@pytest.mark.parametrize("where", ["new_tensor", "algorithm", "sequence", "write_rows", "read_rows", "step_io",
                                   "step_sequence"])
def test_an_interrupt_anywhere_leaves_the_accounting_right(where, monkeypatch):
    from vkconvt.vulkan import execute
    be = backends.get("vulkan")
    dev = be.dev
    dev.clear()
    created = []
    real_new = type(dev).new_tensor

    def tracking_new(self, *a, **k):
        t = real_new(self, *a, **k)
        created.append(t)
        return t
    monkeypatch.setattr(type(dev), "new_tensor", tracking_new)
    owner = type(dev) if hasattr(type(dev), where) else execute
    real = getattr(owner, where)
    calls = {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return (tracking_new if where == "new_tensor" else real)(*a, **k)
    monkeypatch.setattr(owner, where, interrupted)
    x, w = np.ones((2, 6, 40), np.float32), np.ones((6, 4, 5), np.float32)
    with pytest.raises(KeyboardInterrupt):
        for algo in ("gemm", "direct", "gemm", "direct"):
            vkconvt.conv_transpose1d(x, w, np.ones(4, np.float32), stride=3, algorithm=algo, backend="vulkan")
            x = x + 1                   # a new call every time: nothing is skipped
    monkeypatch.undo()
    assert dev.allocated_bytes == live_bytes(dev)
    out = vkconvt.conv_transpose1d(x, w, np.ones(4, np.float32), stride=3, algorithm="gemm", backend="vulkan")
    assert_close(out, vkconvt.conv_transpose1d(x, w, np.ones(4, np.float32), stride=3, backend="numpy"))
    dev.clear()
    assert dev.allocated_bytes == 0 and not dev._live
    assert not any(t.is_init() for t in created), "a buffer outlived clear()"


@pytest.mark.parametrize("backend", ALL)
def test_an_output_larger_than_host_memory_is_refused_before_any_work(backend, monkeypatch):
    monkeypatch.setattr(params, "host_memory_bytes", lambda: 1 << 30)
    be = backends.get(backend)
    before = be.dev.allocated_bytes if backend == "vulkan" else 0
    x, w = np.ones((1, 1, 2 ** 20), np.float32), np.ones((1, 1024, 4), np.float32)
    with pytest.raises(MemoryError, match=r"needs 17179869184 bytes .* of host memory, more than the 1073741824"):
        vkconvt.conv_transpose1d(x, w, stride=4, backend=backend)
    if backend == "vulkan":
        assert be.dev.allocated_bytes == before


# ------------------------------------------------------------------------------ untrusted cache files
@needs_vulkan
@pytest.mark.parametrize("content", ["{not json", "[]", "{}", "null", '{"vulkan": {"calls": NaN}, "numpy": {"np_calls": 1}}',
                                     '{"vulkan": {"calls": -1}, "numpy": {"np_calls": 1}}'])
def test_a_bad_tuning_file_is_reported_once_and_ignored(content, tmp_path):
    code = f"""
        import warnings, numpy as np, vkconvt
        from vkconvt import costmodel
        from vkconvt.vulkan import device
        open(costmodel.cache_path(device.resolve_device(None)), "w").write({content!r})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                vkconvt.conv_transpose1d(np.ones((1, 2, 9), np.float32), np.ones((2, 2, 3), np.float32), stride=2)
            pl = vkconvt.plan((1, 64, 100), (64, 32, 8), stride=4)
        print("warnings", len(caught), caught[0].message if caught else "")
        print("predicted", min(pl.predicted_s.values()), pl.model_source)
    """
    r = run_py(code, VKCONVT_CACHE_DIR=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "warnings 1" in r.stdout and "costmodel-" in r.stdout and "ignoring the tuning file" in r.stdout, r.stdout
    predicted = float(r.stdout.split("predicted ")[1].split()[0])
    assert predicted > 0 and "cost_lavapipe.json" in r.stdout or "cost_generic_gpu.json" in r.stdout


def test_costmodel_validate_rejects_nan():
    with pytest.raises(ValueError, match=r"vulkan.calls = nan"):
        costmodel.validate({"vulkan": {"calls": float("nan")}, "numpy": {"np_calls": 1.0}})


# ------------------------------------------------------------------------------ clear errors
ENV_ERRORS = [
    (dict(VKCONVT_MAX_WORKSPACE="infG"), r"VKCONVT_MAX_WORKSPACE must be a byte count like 67108864 or 64M, got 'infG'"),
    (dict(VKCONVT_BACKEND="bogus"), r"VKCONVT_BACKEND='bogus' is not a backend; valid backends: vulkan, numpy, auto"),
]
if backends.vulkan_reason() is None:
    ENV_ERRORS.append((dict(VKCONVT_DEVICE="99"), r"VKCONVT_DEVICE='99' is out of range"))


@pytest.mark.parametrize("env,pattern", ENV_ERRORS, ids=lambda v: str(v)[:40])
def test_bad_environment_variables_are_named(env, pattern):
    r = run_py("import numpy as np, vkconvt\n"
               "vkconvt.conv_transpose1d(np.ones((1, 1, 3), np.float32), np.ones((1, 1, 2), np.float32))\n", **env)
    assert r.returncode != 0 and "Traceback" in r.stderr
    assert pytest.importorskip("re").search(pattern, r.stderr), r.stderr[-1500:]


def test_info_survives_a_bad_backend_variable():
    r = subprocess.run([sys.executable, "-m", "vkconvt", "info"], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, VKCONVT_BACKEND="bogus"))
    assert r.returncode == 0, r.stderr
    assert "VKCONVT_BACKEND='bogus' is not a backend" in r.stdout


def test_backend_auto_in_the_environment_is_accepted():
    r = run_py("import numpy as np, vkconvt\n"
               "print(vkconvt.conv_transpose1d(np.ones((1, 1, 3), np.float32), np.ones((1, 1, 2), np.float32)).tolist())\n",
               VKCONVT_BACKEND="auto")
    assert r.returncode == 0 and "[[[1.0, 2.0, 2.0, 1.0]]]" in r.stdout, r.stderr


@needs_vulkan
def test_tune_with_an_unwritable_cache_says_so_at_once(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    r = subprocess.run([sys.executable, "-m", "vkconvt", "tune", "--quick"], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, VKCONVT_CACHE_DIR=str(blocked / "cache")))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot write to" in r.stderr and "VKCONVT_CACHE_DIR" in r.stderr


@needs_vulkan
def test_a_call_after_the_device_closed_raises_a_clear_error():
    r = run_py("""
        import atexit, numpy as np, vkconvt
        x, w = np.ones((1, 1, 3), np.float32), np.ones((1, 1, 2), np.float32)
        vkconvt.conv_transpose1d(x, w, backend="vulkan")
        def late():   # runs after vkconvt closed its devices (atexit runs last-registered first)
            try:
                vkconvt.conv_transpose1d(x, w, backend="vulkan")
            except RuntimeError as exc:
                print(type(exc).__name__, exc)
        atexit.register(late)
        from vkconvt.vulkan import device
        device._close_all()
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DeviceClosed" in r.stdout and "closed" in r.stdout


def test_col2im_with_a_huge_stride_blames_the_output():
    with pytest.raises(MemoryError, match=r"the output of col2im_1d .* needs \d+ bytes"):
        vkconvt.col2im_1d(np.ones((1, 1, 3, 4), np.float32), stride=2 ** 40)


LAYER_ERRORS = [(dict(backend="bogus"), ValueError, r"unknown backend 'bogus'"),
                (dict(max_workspace_bytes=-1), ValueError, r"max_workspace_bytes must be positive, got -1"),
                (dict(bias=np.float32(1)), ValueError, r"bias must have shape \(C_out,\) = \(3,\); got shape \(\)")]
if backends.vulkan_reason() is None:
    LAYER_ERRORS += [(dict(device=99), ValueError, r"device=99 is out of range"),
                     (dict(device=""), ValueError, r"device='' is empty")]


@pytest.mark.parametrize("kw,exc,pattern", LAYER_ERRORS, ids=lambda v: str(v)[:30])
def test_the_layer_checks_everything_when_made(kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        vkconvt.ConvTranspose1d(np.ones((2, 3, 3), np.float32), **kw)


def test_a_zero_d_bias_is_refused_as_in_pytorch():
    with pytest.raises(ValueError, match=r"bias must have shape \(C_out,\) = \(1,\); got shape \(\)"):
        vkconvt.conv_transpose1d(np.ones((1, 2, 5)), np.ones((2, 1, 3)), np.array(1.0))


def test_a_layer_with_padding_beyond_half_the_kernel():
    layer = vkconvt.ConvTranspose1d(np.ones((2, 3, 3), np.float32), stride=3, padding=2, backend="numpy")
    assert layer(np.ones((1, 2, 5), np.float32)).shape == (1, 3, 11)
