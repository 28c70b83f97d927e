"""The NumPy reference math every other backend is checked against (the `numpy` backend runs it).

    conv_transpose1d_direct / _gemm  the transposed convolution (col2im_1d: its gemm half)
    conv1d_direct / conv1d_gemm      out[n, g*cog + o, t] = bias[g*cog + o]
                                         + sum_{ci < cig, k < K} w[g*cog + o, ci, k] * x[n, g*cig + ci, t*s - p + k*d]
                                     (x is 0 outside [0, L); PyTorch's F.conv1d with zero padding)
    im2col_1d                        col[n, c*K + k, t] = x[n, c, t*s - p + k*d]  (0 outside [0, L))
    conv_transpose1d_grad_weight     gw[g*cig + ci, co, k] = sum_{n, l} x[n, g*cig + ci, l]
                                         * grad_out[n, g*cog + co, l*s - p + k*d]  (terms inside [0, L_out) only)
    grad_bias                        sum of grad_out over batch and length

The grad_input of a transposed convolution is conv1d(grad_out, w, stride, padding, dilation,
groups): a transposed conv's weight (C_in, C_out/g, K) is a conv1d weight (out_ch, in_ch/g, K).

Every form is vectorised: a Python loop over the shorter of "taps that reach an input" and "outputs
(or input positions) that a tap reaches", each step one batched matrix product over strided
slices, so a long kernel over a short input costs its FLOPs, not K steps. Index arithmetic is
Python integers: any padding, stride or dilation is exact (no padded copies). Results are float64
for float64 inputs (storage="float64": gradcheck's precision), float32 otherwise.
"""
import numpy as np

from .params import check_host_memory, output_length


def _cdiv(a, b):
    return -(-a // b)


def _dtype(*arrays):
    return np.float64 if any(a is not None and a.dtype == np.float64 for a in arrays) else np.float32


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
    out = np.zeros((n, c, l_out), dtype=_dtype(col))
    # the taps that reach the output at all (with a huge padding or dilation, few do)
    for k in range(k_size):
        lo, hi, t0 = tap_span(k, l_in, l_out, stride, padding, dilation)
        if hi > lo:
            out[:, :, t0:t0 + (hi - lo - 1) * stride + 1:stride] += col[:, :, k, lo:hi]
    if bias is not None:
        out += bias[None, :, None]
    return out


def conv_transpose1d_direct(x, weight, bias, p):
    xg = x.reshape(p.n, p.groups, p.cig, p.l_in)
    l_out = p.l_out
    out = np.zeros((p.n, p.c_out, l_out), dtype=_dtype(x, weight))
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


def conv1d_output_length(l_in, k, stride=1, padding=0, dilation=1):
    """PyTorch's L_out = floor((L + 2p - d(K-1) - 1) / s) + 1; a ValueError when it is < 1."""
    l_out = (l_in + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    if l_out < 1:
        raise ValueError(f"conv1d: input length {l_in} with padding {padding} is shorter than the dilated kernel "
                         f"({dilation} * ({k} - 1) + 1): no output")
    return l_out


def _check_groups(c_in, c_out, groups):
    if groups < 1 or c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide C_in={c_in} and C_out={c_out}")


def tap_outputs(k, l_in, l_out, stride, padding, dilation):
    """For tap k: the outputs [lo, hi) whose input t*s - p + k*d lies in [0, l_in), and the input of lo."""
    off = k * dilation - padding
    lo = max(0, _cdiv(-off, stride))
    hi = min(l_out, (l_in - 1 - off) // stride + 1)
    return lo, hi, lo * stride + off


def output_taps(t, l_in, k, stride, padding, dilation):
    """For output t: the taps [lo, hi) whose input t*s - p + k*d lies in [0, l_in), and the input of lo."""
    off = t * stride - padding
    lo = max(0, _cdiv(-off, dilation))
    hi = min(k, (l_in - 1 - off) // dilation + 1)
    return lo, hi, off + lo * dilation


def reach(l_in, k, l_out, stride, padding, dilation):
    """(taps [klo, khi) that reach some input from some output, outputs [tlo, thi) that some tap
    reaches): the loops below walk the shorter range, so taps or outputs that touch nothing cost nothing."""
    klo, khi = max(0, _cdiv(padding - (l_out - 1) * stride, dilation)), min(k, (padding + l_in - 1) // dilation + 1)
    tlo, thi = max(0, _cdiv(padding - (k - 1) * dilation, stride)), min(l_out, (padding + l_in - 1) // stride + 1)
    return (klo, max(klo, khi)), (tlo, max(tlo, thi))


def _span(lo, n, step):
    return slice(lo, lo + (n - 1) * step + 1, step)


def _gather(x, k, stride, padding, dilation, l_out, fill):
    """Call fill(tap slice, out slice) for every (tap range, output range) block where inputs land:
    per tap when taps are fewer, else per output (taps then a strided run of inputs)."""
    l_in = x.shape[-1]
    (klo, khi), (tlo, thi) = reach(l_in, k, l_out, stride, padding, dilation)
    if khi - klo <= thi - tlo:
        for kk in range(klo, khi):
            lo, hi, m0 = tap_outputs(kk, l_in, l_out, stride, padding, dilation)
            if hi > lo:
                fill(slice(kk, kk + 1), slice(lo, hi), x[..., _span(m0, hi - lo, stride)][..., None, :])
    else:
        for t in range(tlo, thi):
            lo, hi, m0 = output_taps(t, l_in, k, stride, padding, dilation)
            if hi > lo:
                fill(slice(lo, hi), slice(t, t + 1), x[..., _span(m0, hi - lo, dilation)][..., :, None])


def conv1d_direct(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, l_out=None):
    """x (N, C_in, L), w (C_out, C_in/groups, K) -> (N, C_out, L_out): direct, no column buffer.
    l_out: the outputs computed (default PyTorch's length; 'same' padding and grad_input ask for others)."""
    n, c_in, l_in = x.shape
    c_out, cig, k = w.shape
    _check_groups(c_in, c_out, groups)
    if cig != c_in // groups:
        raise ValueError(f"weight {w.shape} does not fit C_in={c_in} with groups={groups}")
    l_out = conv1d_output_length(l_in, k, stride, padding, dilation) if l_out is None else l_out
    dt = _dtype(x, w, bias)
    cog = c_out // groups
    xg = x.reshape(n, groups, cig, l_in).astype(dt, copy=False)
    wg = w.reshape(groups, cog, cig, k).astype(dt, copy=False)
    out = np.zeros((n, groups, cog, l_out), dtype=dt)

    def fill(taps, outs, xs):          # xs (N, G, cig, ntaps, nouts)
        nk, nt = xs.shape[-2], xs.shape[-1]
        a = wg[:, :, :, taps].reshape(groups, cog, cig * nk)
        out[..., outs] += np.matmul(a, xs.reshape(n, groups, cig * nk, nt))
    _gather(xg, k, stride, padding, dilation, l_out, fill)
    out = out.reshape(n, c_out, l_out)
    if bias is not None:
        out += bias.astype(dt)[None, :, None]
    return out


def im2col_1d(x, k, stride=1, padding=0, dilation=1, l_out=None):
    """x (N, C, L) -> col (N, C*K, l_out): col[n, c*K + k, t] = x[n, c, t*s - p + k*d], 0 outside [0, L)."""
    n, c, l_in = x.shape
    l_out = conv1d_output_length(l_in, k, stride, padding, dilation) if l_out is None else l_out
    col = np.zeros((n, c, k, l_out), dtype=x.dtype)

    def fill(taps, outs, xs):
        col[:, :, taps, outs] = xs
    _gather(x, k, stride, padding, dilation, l_out, fill)
    return col.reshape(n, c * k, l_out)


def conv1d_gemm(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, l_out=None):
    """The same conv1d as im2col_1d + one batched matmul per group: (G, cog, cig*K) . (N, G, cig*K, L_out)."""
    n, c_in, l_in = x.shape
    c_out, cig, k = w.shape
    _check_groups(c_in, c_out, groups)
    dt = _dtype(x, w, bias)
    check_host_memory("the NumPy gemm column buffer of conv1d", np.dtype(dt).itemsize * n * c_in * k * (
        l_out or conv1d_output_length(l_in, k, stride, padding, dilation)))
    col = im2col_1d(x.astype(dt, copy=False), k, stride, padding, dilation, l_out)
    l_out = col.shape[-1]
    out = np.matmul(w.astype(dt, copy=False).reshape(groups, c_out // groups, cig * k),
                    col.reshape(n, groups, cig * k, l_out)).reshape(n, c_out, l_out)
    if bias is not None:
        out += bias.astype(dt)[None, :, None]
    return out


def conv_transpose1d_grad_weight(x, grad_out, k, stride=1, padding=0, dilation=1, groups=1):
    """x (N, C_in, L), grad_out (N, C_out, L_out) of conv_transpose1d -> grad_w (C_in, C_out/groups, K):
    gw[g*cig + ci, co, k] = sum_{n, l} x[n, g*cig + ci, l] * grad_out[n, g*cog + co, l*s - p + k*d]
    over the positions inside [0, L_out). Per tap (or per input position when those are fewer): one
    batched product over the batch and the positions (the sum over n and l is the contraction)."""
    n, c_in, l_in = x.shape
    _, c_out, l_out = grad_out.shape
    _check_groups(c_in, c_out, groups)
    cig, cog = c_in // groups, c_out // groups
    dt = _dtype(x, grad_out)
    # (G, cig, N, L) and (G, cog, N, L_out): the batch joins the contraction
    xg = x.astype(dt, copy=False).reshape(n, groups, cig, l_in).transpose(1, 2, 0, 3)
    gg = grad_out.astype(dt, copy=False).reshape(n, groups, cog, l_out).transpose(1, 2, 0, 3)
    gw = np.zeros((groups, cig, cog, k), dtype=dt)
    # the roles of conv1d's outputs and inputs: input position l reads grad_out at l*s - p + k*d
    (klo, khi), (llo, lhi) = reach(l_out, k, l_in, stride, padding, dilation)
    if khi - klo <= lhi - llo:
        for kk in range(klo, khi):
            lo, hi, t0 = tap_outputs(kk, l_out, l_in, stride, padding, dilation)
            if hi > lo:
                a = xg[..., lo:hi].reshape(groups, cig, n * (hi - lo))
                b = gg[..., _span(t0, hi - lo, stride)].reshape(groups, cog, n * (hi - lo))
                gw[..., kk] = np.matmul(a, b.transpose(0, 2, 1))
    else:
        for li in range(llo, lhi):
            lo, hi, t0 = output_taps(li, l_out, k, stride, padding, dilation)
            if hi > lo:
                a = xg[..., li]                                            # (G, cig, N)
                b = gg[..., _span(t0, hi - lo, dilation)]                  # (G, cog, N, taps)
                gw[..., lo:hi] += np.matmul(a, b.transpose(0, 2, 1, 3).reshape(groups, n, cog * (hi - lo))
                                            ).reshape(groups, cig, cog, hi - lo)
    return gw.reshape(c_in, cog, k)


def grad_bias(grad_out):
    """(N, C_out, L_out) -> (C_out,): the sum over batch and length."""
    return grad_out.sum(axis=(0, 2), dtype=_dtype(grad_out))


def conv_transpose1d_grad_input(grad_out, w, stride=1, padding=0, dilation=1, groups=1, l_in=None):
    """grad_x of conv_transpose1d = conv1d(grad_out, w, s, p, d, groups); its length is the
    transposed conv's L_in (output_padding only added outputs that no input reaches)."""
    out = conv1d_direct(grad_out, w, None, stride, padding, dilation, groups)
    if l_in is not None and out.shape[-1] != l_in:
        raise ValueError(f"grad_out length {grad_out.shape[-1]} does not come from an input of length {l_in}")
    return out
