"""PyTorch timed in a process of its own.

Beside a spinning Vulkan driver or another library's worker threads, PyTorch CPU ran 2-6x slower
on these machines (../shared/NOTES.md), which would flatter every ratio against it. So the
benchmark hands PyTorch's cases to a worker process (started once, 'spawn': it imports neither
vkconvt's device nor anything that spins) and waits, idle, for its timings and its output, which
the main process checks against the NumPy reference like any other.
"""
import multiprocessing as mp
import time

OPS = ("conv_transpose1d", "conv_transpose1d_backward", "matmul", "activations")


def _activation_passes(torch):
    """The passes a fused layer saves, as separate PyTorch ops: leaky ReLU over the input x and
    Snake (x + sin^2(alpha x)/alpha, per channel) over the layer's output y; returns Snake's."""
    def passes(x, y, alpha, slope):
        torch.nn.functional.leaky_relu(x, slope)
        a = alpha.reshape(1, -1, 1)
        return y + torch.sin(a * y) ** 2 / (a + 1e-9)
    return passes


def _convolution_backward(torch):
    """conv_transpose1d's gradients as autograd computes them (aten.convolution_backward), joined
    into one flat tensor: grad_input, grad_weight, then grad_bias when there is a bias."""
    def backward(go, x, w, b, stride, padding, output_padding, groups, dilation):
        grads = torch.ops.aten.convolution_backward(go, x, w, None if b is None else [b.shape[0]], [stride], [padding],
                                                    [dilation], True, [output_padding], groups, [True, True, b is not None])
        return torch.cat([g.reshape(-1) for g in grads if g is not None])
    return backward


def _serve(conn, threads):
    import torch
    from vkconvt import timing
    if threads:
        torch.set_num_threads(threads)
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    conn.send({"torch": torch.__version__, "threads": torch.get_num_threads(), "cuda": cuda})
    while True:
        msg = conn.recv()
        if msg is None:
            return
        op, device, tf32, arrays, hyper, budget, max_runs = msg
        try:
            if device == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            fn = {"conv_transpose1d": torch.nn.functional.conv_transpose1d, "matmul": torch.matmul,
                  "activations": _activation_passes(torch),
                  "conv_transpose1d_backward": _convolution_backward(torch)}[op]
            ts = [None if a is None else torch.from_numpy(a).to(device) for a in arrays]

            def run():
                with torch.no_grad():
                    out = fn(*ts, *hyper)
                sync()
                return out
            t0 = time.perf_counter()
            out = run().cpu().numpy()
            first = time.perf_counter() - t0
            (times,) = timing.interleaved([run], budget, 3, max_runs, slow_s=first)
            conn.send(("ok", out, times, first))
        except Exception as exc:  # a failing case must not stop the worker
            conn.send(("error", f"{type(exc).__name__}: {exc}", None, None))


class TorchProcess:
    """A PyTorch worker: run(op, device, tf32, arrays, hyper, budget, max_runs) ->
    (status, output or error, times, first call seconds)."""

    def __init__(self, threads=None):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, threads), daemon=True)
        self.proc.start()
        self.info = self.conn.recv()

    def run(self, *msg):
        self.conn.send(msg)
        return self.conn.recv()

    def close(self):
        try:
            self.conn.send(None)
            self.proc.join(10)
        except OSError:           # the worker is gone already
            pass
        finally:
            if self.proc.is_alive():
                self.proc.kill()


def start(threads=None):
    """A worker, or None with the reason when PyTorch cannot be imported here."""
    try:
        import importlib.util
        if importlib.util.find_spec("torch") is None:
            return None, "PyTorch is not installed"
        return TorchProcess(threads), None
    except Exception as exc:  # a worker that cannot start leaves the torch rows out
        return None, f"{type(exc).__name__}: {exc}"
