"""The Vulkan backend's standalone ops, matmul and col2im_1d: their schedules (schedule_ops.py)
recorded and run through the backend's machinery (VulkanBackend.execute)."""
import numpy as np

from .. import schedule_ops


def matmul(be, a, b):
    """a (Ba, M, K) or (M, K); b (Bb, K, N) or (K, N); float32 contiguous. Batches broadcast."""
    a3 = a if a.ndim == 3 else a[None]
    b3 = b if b.ndim == 3 else b[None]
    batch, (m, kdim), ncols = max(a3.shape[0], b3.shape[0]), a3.shape[1:], b3.shape[2]
    out = np.empty((batch, m, ncols), dtype=np.float32)
    key = ("matmul", a3.shape[0], b3.shape[0], m, kdim, ncols, be.max_buffer_bytes, tuple(be.choice["matmul"]))

    def put(t, st, sched):
        pc, loc = st.piece, st.dispatches[0].local
        a_rows = a3[slice(pc.b0, pc.b1) if a3.shape[0] > 1 else slice(0, 1), pc.r0:pc.r1]
        b_cols = b3[slice(pc.b0, pc.b1) if b3.shape[0] > 1 else slice(0, 1), :, pc.c0:pc.c1]
        be.upload(t["a"], a_rows, layout=(0, loc.lda))          # rows padded to the kernel's alignment
        be.upload(t["b"], b_cols, layout=(0, loc.ldb))
        return True

    def get(t, st):
        pc, loc = st.piece, st.dispatches[0].local
        c = be.download(t["c"], (pc.b1 - pc.b0, pc.r1 - pc.r0, loc.ldc))
        out[pc.b0:pc.b1, pc.r0:pc.r1, pc.c0:pc.c1] = c[..., :pc.c1 - pc.c0]

    be.execute(key, lambda: schedule_ops.schedule_matmul(a3.shape[0], b3.shape[0], m, kdim, ncols, be.limits(),
                                                        be.choice),
                  lambda sched: {k: be.pooled("mm_" + k, v) for k, v in sched.floats.items()},
                  lambda t: {"matmul": [t["a"], t["b"], t["c"]]}, put, get)
    return out if (a.ndim == 3 or b.ndim == 3) else out[0]

def col2im_1d(be, col, stride, padding, dilation, output_padding, bias):
    """col (N, C, K, L) -> (N, C, L_out): the shader alone, as a public op."""
    n, c, k, l_in = col.shape
    l_out = (l_in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1
    out = np.zeros((n, c, l_out), dtype=np.float32)
    key = ("col2im_1d", n, c, k, l_in, stride, padding, dilation, l_out, bias is not None, be.max_buffer_bytes,
           tuple(be.choice["col2im_1d"]))

    def buffers(sched):
        return {"col": be.pooled("c2i_col", sched.floats["col"]), "out": be.pooled("c2i_out", sched.floats["out"]),
                "bias": be.pooled("c2i_bias", c) if bias is not None else be.dev.dummy()}

    def put(t, st, sched):
        pc, f = st.piece, st.piece.fold
        if not st.dispatches:
            if bias is not None:
                out[pc.n0:pc.n1, pc.c0:pc.c1, pc.t0:pc.t1] = bias[pc.c0:pc.c1, None][None]
            return False
        be.upload(t["col"], col[pc.n0:pc.n1, pc.c0:pc.c1, f.kb:f.kb + f.kw, f.lb:f.lb + f.lw])
        if bias is not None:
            be.upload(t["bias"], bias[pc.c0:pc.c1])
        return True

    def get(t, st):
        pc = st.piece
        out[pc.n0:pc.n1, pc.c0:pc.c1, pc.t0:pc.t1] = be.download(t["out"], (pc.n1 - pc.n0, pc.c1 - pc.c0, pc.t1 - pc.t0))

    be.execute(key, lambda: schedule_ops.schedule_col2im(n, c, k, l_in, l_out, stride, padding, dilation,
                                                        bias is not None, be.limits(), be.choice),
                  buffers, lambda t: {"col2im_1d": [t["col"], t["bias"], t["out"]]}, put, get)
    return out
