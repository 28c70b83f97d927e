"""Execution on the device, as a discrete GPU wants it: one queue submission and one fence wait per
call on every path of the case table, in both memory modes (host-visible buffers, and device-local
buffers with staging copies recorded in the call's command buffer); device-resident arrays that
move only what a chain needs; calls that do not wait; the counters that prove it (vkconvt.stats)."""
import gc
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vkconvt
from vkconvt import backends
from cases import CASE_IDS, CASES, assert_close
from conftest import needs_vulkan

pytestmark = needs_vulkan
MODES = ("host", "device")
HERE = os.path.dirname(os.path.abspath(__file__))


def dev():
    return backends.get("vulkan").dev


def counted(fn):
    """(result, counter deltas) of fn()."""
    before = dict(dev().counters)
    out = fn()
    return out, {k: v - before[k] for k, v in dev().counters.items()}


@pytest.mark.parametrize("memory", MODES)
@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_one_submission_per_call(case, algorithm, memory):
    x, w, b = case.inputs()
    ref = vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), backend="numpy")
    with vkconvt.settings.override(memory=memory), vkconvt.trace() as runs:
        call = lambda: vkconvt.conv_transpose1d(x, w, b, **case.kwargs(), algorithm=algorithm, backend="vulkan")  # noqa: E731
        call()                                       # records; the repeated call replays
        out, n = counted(call)
    assert_close(out, ref)
    sched = runs[-1][2]
    assert n["submissions"] == n["fence_waits"] == sched.submissions()
    if len(sched.steps) == 1:
        assert n["submissions"] == 1 and n["dispatches"] == len(sched.steps[0].dispatches)
    # folding moves only the inputs and outputs the taps reach (a large padding trims x, gaps of a stride the output)
    assert n["bytes_down"] > 0 and n["bytes_up"] > 0
    assert n["recordings"] == 0, "a repeated call must replay its recording"


@pytest.mark.parametrize("memory", MODES)
def test_matmul_and_col2im_one_submission(memory):
    rng = np.random.default_rng(0)
    a, m = rng.standard_normal((3, 20, 30)).astype(np.float32), rng.standard_normal((30, 17)).astype(np.float32)
    col = rng.standard_normal((2, 3, 4, 10)).astype(np.float32)
    with vkconvt.settings.override(memory=memory):
        out, n = counted(lambda: vkconvt.matmul(a, m))
        assert_close(out, a.astype(np.float64) @ m)
        assert n["submissions"] == n["fence_waits"] == 1
        out, n = counted(lambda: vkconvt.col2im_1d(col, 2, 1))
        assert_close(out, vkconvt.col2im_1d(col, 2, 1, backend="numpy"))
        assert n["submissions"] == n["fence_waits"] == 1


def test_device_mode_keeps_staging_buffers_and_copies_only_bytes_in_use():
    """Device mode: buffers are device-local with a staging copy each (made once, reused), and the
    staged copies move the bytes a call uses, not the (size-classed) buffer."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 16, 37)).astype(np.float32), rng.standard_normal((16, 8, 4)).astype(np.float32)
    d = dev()
    d.clear()
    with vkconvt.settings.override(memory="device"):
        vkconvt.conv_transpose1d(x, w, stride=2, algorithm="direct")
        staged = [k for k in d.pool if k[2] == "staged"]
        assert staged, d.pool.keys()
        before = len(d._live)
        out, n = counted(lambda: vkconvt.conv_transpose1d(x, w, stride=2, algorithm="direct"))
        assert len(d._live) == before, "a call made new buffers"
        assert n["bytes_down"] == 4 * out.size
    kinds = {t.tensor_type() for t, _, _ in d._live.values()}
    assert d.kp.TensorTypes.device in kinds


@pytest.mark.parametrize("memory", MODES)
@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
def test_a_chain_on_device_arrays_moves_only_its_input_and_result(memory, algorithm):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 32, 24)).astype(np.float32)
    layers, ref = [], x
    for c_in, c_out, k, s in ((32, 16, 16, 8), (16, 8, 16, 8), (8, 4, 4, 2)):
        w = (rng.standard_normal((c_in, c_out, k)) / np.sqrt(c_in * k)).astype(np.float32)
        b = rng.standard_normal(c_out).astype(np.float32)
        layers.append(vkconvt.ConvTranspose1d(w, b, stride=s, padding=(k - s) // 2, algorithm=algorithm))
        ref = vkconvt.conv_transpose1d(ref, w, b, stride=s, padding=(k - s) // 2, backend="numpy")
    with vkconvt.settings.override(memory=memory):
        def chain():
            y = vkconvt.asarray(x)
            for layer in layers:
                y = layer(y)
            assert isinstance(y, vkconvt.DeviceArray)
            return y.numpy()
        chain()                                     # weights go up once, recordings are made
        out, n = counted(chain)
    assert_close(out, ref, tol=1e-6)
    assert n["bytes_up"] == x.nbytes and n["bytes_down"] == out.nbytes, n
    assert n["submissions"] == len(layers) + (2 if memory == "device" else 0), n     # + upload and download
    assert n["copies"] == len(layers)              # each layer's input copied into its x buffer on the device


@pytest.mark.parametrize("memory", MODES)
def test_device_arrays_with_float16_activations_matmul_and_unbatched(memory):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 20)).astype(np.float16)
    w = rng.standard_normal((8, 6, 4)).astype(np.float16)
    alpha = rng.uniform(0.5, 1.5, 6).astype(np.float32)
    kw = dict(stride=2, padding=1, activation="snake", alpha=alpha, input_activation="leaky_relu")
    with vkconvt.settings.override(memory=memory):
        y = vkconvt.conv_transpose1d(vkconvt.asarray(x), w, **kw)
        assert isinstance(y, vkconvt.DeviceArray) and y.dtype == np.float16 and y.shape == (2, 6, 40)
        assert_close(y.numpy().astype(np.float32),
                     vkconvt.conv_transpose1d(x, w, backend="numpy", **kw).astype(np.float32), tol=1e-6)
        u = vkconvt.conv_transpose1d(vkconvt.asarray(x[0].astype(np.float32)), w.astype(np.float32), stride=2)
        assert u.shape == (6, 42)
        assert_close(np.asarray(u), vkconvt.conv_transpose1d(x[0].astype(np.float32), w.astype(np.float32), stride=2,
                                                             backend="numpy"))
        a, m = rng.standard_normal((3, 5, 7)).astype(np.float32), rng.standard_normal((7, 4)).astype(np.float32)
        c = vkconvt.matmul(vkconvt.asarray(a), m)
        assert isinstance(c, vkconvt.DeviceArray)
        assert_close(c.numpy(), a.astype(np.float64) @ m)


def test_device_array_input_of_a_split_problem_and_a_result_the_host_finishes():
    """Several pieces read a device array's rows by device copies; results the device cannot keep
    (pieces adding up on the host) come back to the device as a new array."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 64, 30)).astype(np.float32)
    w = rng.standard_normal((64, 6, 8)).astype(np.float32)
    ref = vkconvt.conv_transpose1d(x, w, stride=4, padding=1, backend="numpy")
    with vkconvt.settings.override(max_buffer_bytes=1024), vkconvt.trace() as runs:
        y = vkconvt.conv_transpose1d(vkconvt.asarray(x), w, stride=4, padding=1, algorithm="direct")
    assert len(runs[-1][2].steps) > 1
    assert isinstance(y, vkconvt.DeviceArray)
    assert_close(y.numpy(), ref)


@pytest.mark.parametrize("memory", MODES)
def test_calls_that_do_not_wait(memory):
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((1, 16, 50)).astype(np.float32), rng.standard_normal((16, 8, 6)).astype(np.float32)
    ref = vkconvt.conv_transpose1d(x, w, stride=3, backend="numpy")
    with vkconvt.settings.override(memory=memory):
        pending = vkconvt.conv_transpose1d(x, w, stride=3, wait=False)
        assert isinstance(pending, vkconvt.Pending)
        host_work = np.sin(x).sum()                          # the host works meanwhile
        out = pending.result()
        assert_close(out, ref) and np.isfinite(host_work)
        assert pending.done() and pending.result() is out    # a handle waited twice: the same result
        # a second call before the first is read: the first's result lands, nothing is overwritten
        p1 = vkconvt.conv_transpose1d(x, w, stride=3, wait=False)
        p2 = vkconvt.conv_transpose1d(2 * x, w, stride=3, wait=False)
        assert_close(p2.result(), 2 * ref) and assert_close(p1.result(), ref) is None
        layer = vkconvt.ConvTranspose1d(w, stride=3)
        y = layer(vkconvt.asarray(x), wait=False)            # a device array is ready when read
        assert isinstance(y, vkconvt.DeviceArray)
        assert_close(y.numpy(), ref)
        assert y.ready()


def test_an_interrupt_while_a_submission_is_in_flight(monkeypatch):
    """Ctrl-C while waiting for the fence: the device state stays consistent and later calls work."""
    from vkconvt.vulkan import execute
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((1, 8, 20)).astype(np.float32), rng.standard_normal((8, 4, 3)).astype(np.float32)
    ref = vkconvt.conv_transpose1d(x, w, stride=2, backend="numpy")
    pending = vkconvt.conv_transpose1d(x, w, stride=2, wait=False)
    real = execute.Submission.wait

    def interrupted(self):
        real(self)
        raise KeyboardInterrupt
    monkeypatch.setattr(execute.Submission, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pending.result()
    monkeypatch.undo()
    assert dev().in_flight is None
    assert_close(vkconvt.conv_transpose1d(x, w, stride=2), ref)
    assert_close(pending.result(), ref)                      # the interrupted handle still gives its result


def run_py(code, timeout=180):
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_device_arrays_after_close_and_on_another_device():
    r = run_py("""
        import numpy as np, vkconvt
        from vkconvt.vulkan import arrays, device
        a = vkconvt.asarray(np.ones((4, 5), np.float32))
        other = device.Device(a.dev.info)        # a second device (here: a second Manager of the same GPU)
        b = arrays.asarray(other, np.ones((5, 3), np.float32))
        for fn in (lambda: vkconvt.matmul(a, b), lambda: b.check(a.dev)):
            try:
                fn()
            except ValueError as exc:
                print("other:", exc)
        a.dev.close()
        try:
            a.numpy()
        except vkconvt.DeviceClosed as exc:
            print("closed:", exc)
        other.close()
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "other: the DeviceArray arguments live on different Vulkan devices" in r.stdout, r.stdout
    assert "other: a DeviceArray of device" in r.stdout and "was given to a call on" in r.stdout, r.stdout
    assert "closed: this DeviceArray's device" in r.stdout, r.stdout


def test_numpy_backend_refuses_a_device_array_clearly():
    a = vkconvt.asarray(np.ones((1, 2, 5), np.float32))
    with pytest.raises(ValueError, match=r"backend='numpy' cannot take a DeviceArray"):
        vkconvt.conv_transpose1d(a, np.ones((2, 2, 3), np.float32), backend="numpy")
    with pytest.raises(TypeError, match=r"float16 DeviceArray but the call stores float32"):
        vkconvt.conv_transpose1d(vkconvt.asarray(np.ones((1, 2, 5), np.float16)), np.ones((2, 2, 3), np.float32),
                                 storage="float32")


def test_input_device_array_is_left_as_it_was():
    x = np.arange(10, dtype=np.float32).reshape(1, 2, 5)
    a = vkconvt.asarray(x)
    y = vkconvt.conv_transpose1d(a, np.ones((2, 2, 3), np.float32))
    assert y.tensor is not a.tensor
    np.testing.assert_array_equal(a.numpy(), x)


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("memory", MODES)
def test_soak_device_arrays_bounded_memory_and_exact_accounting(memory):
    rng = np.random.default_rng(7)
    ws = [rng.standard_normal((8, 8, 4)).astype(np.float32) for _ in range(3)]
    xs = [rng.standard_normal((1, 8, 10 + i)).astype(np.float32) for i in range(12)]
    d = dev()
    with vkconvt.settings.override(memory=memory):
        def cycle(n):
            for i in range(n):
                y = vkconvt.asarray(xs[i % len(xs)])
                for w in ws:
                    y = vkconvt.conv_transpose1d(y, w, stride=2, padding=1, wait=i % 2 == 0)
                if i % 5 == 0:
                    y.numpy()
        cycle(200)
        gc.collect()
        before = rss()
        cycle(800)
        gc.collect()
    grown = rss() - before
    staged = d.kp.TensorTypes.device
    live = sum(4 * t.size() * (2 if t.tensor_type() == staged else 1) for t, _, _ in d._live.values())
    assert d.allocated_bytes == live
    assert d.array_pool_bytes <= 256 << 20
    assert grown < 3_000_000, f"RSS grew {grown} bytes over 800 chains"
    d.clear()


def test_warmup_makes_the_first_call_at_a_length_record_nothing():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((16, 8, 4)).astype(np.float32)
    layer = vkconvt.ConvTranspose1d(w, stride=2).warmup([40, 57])
    x = rng.standard_normal((1, 16, 57)).astype(np.float32)
    out, n = counted(lambda: layer(x))
    assert n["recordings"] == 0 and n["submissions"] == 1
    assert_close(out, vkconvt.conv_transpose1d(x, w, stride=2, backend="numpy"))
