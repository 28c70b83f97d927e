"""The NumPy reference math every other backend is checked against (the `numpy` backend runs it).

Both conv_transpose1d algorithms are vectorised. The direct form loops in Python over the shorter of the kernel
taps and the input positions (each step one batched matrix product and one strided slice-add), so
a long kernel over a short input costs as much as its FLOPs, not K steps.
"""
import numpy as np

from .params import check_host_memory, output_length


def tap_span(k, l_in, l_out, stride, padding, dilation):
    """For kernel tap k: the input positions [lo, hi) whose output t = l*stride - padding + k*dilation
    lies in [0, l_out), and the output position of input lo."""
    off = k * dilation - padding
    lo = max(0, -(off // stride))            # ceil(-off / stride)
    hi = min(l_in, (l_out - 1 - off) // stride + 1)
    return lo, hi, lo * stride + off


def col2im_1d(col, stride=1, padding=0, dilation=1, output_padding=0, bias=None):
    """col (N, C, K, L_in) -> out (N, C, L_out): out[n, c, l*stride - padding + k*dilation] += col[n, c, k, l]."""
    n, c, k_size, l_in = col.shape
    l_out = output_length(l_in, k_size, stride, padding, output_padding, dilation)
    out = np.zeros((n, c, l_out), dtype=np.float32)
    # the taps that reach the output at all (with a huge padding or dilation, few do)
    for k in range(k_size):
        lo, hi, t0 = tap_span(k, l_in, l_out, stride, padding, dilation)
        if hi > lo:
            out[:, :, t0:t0 + (hi - lo - 1) * stride + 1:stride] += col[:, :, k, lo:hi]
    if bias is not None:
        out += bias[None, :, None]
    return out


def matmul(a, b):
    return np.matmul(a, b).astype(np.float32, copy=False)


def conv_transpose1d_direct(x, weight, bias, p):
    xg = x.reshape(p.n, p.groups, p.cig, p.l_in)
    l_out = p.l_out
    out = np.zeros((p.n, p.c_out, l_out), dtype=np.float32)
    if p.k <= p.l_in:
        # one batched product per tap, added into the output positions the tap reaches
        wt = np.ascontiguousarray(weight.reshape(p.groups, p.cig, p.cog, p.k).transpose(3, 0, 2, 1))  # (K, G, Cog, Cig)
        for k in range(p.k):
            lo, hi, t0 = tap_span(k, p.l_in, l_out, p.stride, p.padding, p.dilation)
            if hi > lo:
                contrib = np.matmul(wt[k], xg[:, :, :, lo:hi]).reshape(p.n, p.c_out, hi - lo)
                out[:, :, t0:t0 + (hi - lo - 1) * p.stride + 1:p.stride] += contrib
    else:
        # one batched product per input position, added into the outputs its taps reach
        wl = weight.reshape(p.groups, p.cig, p.cog * p.k).transpose(0, 2, 1)             # (G, Cog*K, Cig)
        for l in range(p.l_in):
            lo, hi, t0 = tap_span(0, p.k, l_out, p.dilation, p.padding - l * p.stride, 1)  # taps of input l
            if hi > lo:
                contrib = np.matmul(wl, xg[:, :, :, l:l + 1]).reshape(p.n, p.c_out, p.k)[:, :, lo:hi]
                out[:, :, t0:t0 + (hi - lo - 1) * p.dilation + 1:p.dilation] += contrib
    if bias is not None:
        out += bias[None, :, None]
    return out


def conv_transpose1d_gemm(x, weights, p):
    check_host_memory(f"the NumPy gemm column buffer of conv_transpose1d {p.tag()}", p.gemm_column_bytes(4))
    # A: (G, Cog*K, Cig) . x: (N, G, Cig, L) -> columns (N, G, Cog*K, L) -> col2im.
    a = weights.layout("gemm", p.gemm_weight).reshape(p.groups, p.cog * p.k, p.cig)
    col = np.matmul(a, x.reshape(p.n, p.groups, p.cig, p.l_in)).reshape(p.n, p.c_out, p.k, p.l_in)
    return col2im_1d(col, p.stride, p.padding, p.dilation, p.output_padding, weights.bias)
