"""Folding: the piece-local form of a transposed convolution's (and conv1d's) index arithmetic.

For an output window [t0, t1), only the inputs [lb, lb + lw) and taps [kb, kb + kw) that can reach
it are kept, and the relation t + padding = l*stride + k*dilation becomes i + pad = m*s + q*d in
window-local coordinates (i = t - t0, m = l - lb, q = k - kb, pad = t0 + padding - lb*stride -
kb*dilation, computed exactly with Python's integers). The shaders see only these small numbers,
so huge paddings, strides or dilations (2**31 and beyond) are computed exactly in 32-bit
arithmetic, as long as the windows are cut small enough (window_bounds says how large an index a
window of tw outputs can produce).
"""
from dataclasses import dataclass

from .kernels import cdiv

INT_LIMIT = 1 << 31          # every piece-local index a shader computes stays below this


@dataclass(frozen=True)
class Fold:
    """The inputs [lb, lb + lw) and taps [kb, kb + kw) that reach an output window, and the
    window-local offset pad with local stride s and dilation d (1 where only one input or one tap
    is left, so that a huge stride or dilation never reaches a shader)."""
    lb: int = 0
    lw: int = 0
    kb: int = 0
    kw: int = 0
    pad: int = 0
    s: int = 1
    d: int = 1


def fold_window(l_in, k, stride, dilation, padding, t0, t1):
    """Fold the window [t0, t1) of a transposed convolution; an empty Fold when nothing lands."""
    u0, u1 = t0 + padding, t1 - 1 + padding                   # t + padding = l*stride + k*dilation
    lo, hi = max(0, cdiv(u0 - (k - 1) * dilation, stride)), min(l_in, u1 // stride + 1)
    if hi <= lo:
        return Fold()
    kb, ke = max(0, cdiv(u0 - (hi - 1) * stride, dilation)), min(k, (u1 - lo * stride) // dilation + 1)
    if ke <= kb:
        return Fold()
    lo, hi = max(lo, cdiv(u0 - (ke - 1) * dilation, stride)), min(hi, (u1 - kb * dilation) // stride + 1)
    if hi <= lo:
        return Fold()
    lw, kw = hi - lo, ke - kb
    return Fold(lo, lw, kb, kw, u0 - lo * stride - kb * dilation, stride if lw > 1 else 1,
                dilation if kw > 1 else 1)


def window_bounds(l_in, k, stride, dilation, tw):
    """Upper bounds of (lw, kw, the largest index a shader computes) for any window of tw outputs."""
    # the inputs reaching a window: multiples of stride in an interval of tw - 1 + (k-1)*dilation;
    # the taps: multiples of dilation in an interval of tw - 1 + (lw-1)*stride
    lw = min(l_in, (tw - 1 + (k - 1) * dilation) // stride + 1)
    kw = min(k, (tw - 1 + (lw - 1) * stride) // dilation + 1)
    s, d = (stride if lw > 1 else 1), (dilation if kw > 1 else 1)
    return lw, kw, 2 * tw + 2 * (lw - 1) * s + (kw - 1) * d + s + d


def unrepresentable(what, stride, dilation, padding):
    raise ValueError(f"{what}: stride={stride}, dilation={dilation} and padding={padding} put the inputs of a "
                     f"single output more than 2**31 positions apart, beyond the Vulkan shaders' 32-bit index "
                     f"arithmetic; use backend='numpy' for this problem")


def trimmed(l_in, k, stride, dilation, padding, t0, t1):
    """[(t0, t1, Fold)] covering a window: the outputs its inputs reach, and empty windows before
    and after them (the gaps of a stride much larger than the kernel cost nothing)."""
    f = fold_window(l_in, k, stride, dilation, padding, t0, t1)
    if f.kw == 0:
        return [(t0, t1, f)]
    r0 = t0 + max(0, -f.pad)
    r1 = min(t1, t0 + (f.lw - 1) * f.s + (f.kw - 1) * f.d - f.pad + 1)
    if (r0, r1) == (t0, t1):
        return [(t0, t1, f)]
    live = [(r0, r1, fold_window(l_in, k, stride, dilation, padding, r0, r1))]
    return ([(t0, r0, Fold())] if r0 > t0 else []) + live + ([(r1, t1, Fold())] if r1 < t1 else [])


# ---------------------------------------------------------------------- conv1d (and the weight gradient)
def fold_conv1d(l_in, k, stride, dilation, padding, t0, t1):
    """Fold the output window [t0, t1) of a conv1d, out[t] = sum_k w[k] x[t*stride - padding +
    k*dilation]: its inputs [lb, lb + lw) and taps [kb, kb + kw), with m = i*s + q*d - pad
    window-locally (exact Python integers); an empty Fold when nothing lands. The weight gradient
    folds the same way, x positions in the role of conv1d's outputs."""
    lo, hi = max(0, t0 * stride - padding), min(l_in, (t1 - 1) * stride - padding + (k - 1) * dilation + 1)
    if hi <= lo:
        return Fold()
    kb = max(0, cdiv(lo + padding - (t1 - 1) * stride, dilation))
    ke = min(k, (hi - 1 + padding - t0 * stride) // dilation + 1)
    if ke <= kb:
        return Fold()
    lo = max(lo, t0 * stride - padding + kb * dilation)
    hi = min(hi, (t1 - 1) * stride - padding + (ke - 1) * dilation + 1)
    if hi <= lo:
        return Fold()
    kw = ke - kb
    return Fold(lo, hi - lo, kb, kw, lo + padding - t0 * stride - kb * dilation,
                stride if t1 - t0 > 1 else 1, dilation if kw > 1 else 1)


def index_bound(tw, f):
    """The largest index a shader forms for a folded window of tw outputs (pad <= (tw-1)*s)."""
    return (tw - 1) * f.s + (max(f.kw, 1) - 1) * f.d + f.pad + f.lw + f.s + f.d


def conv1d_windows(l_in, k, stride, dilation, padding, l_out, max_tw=None):
    """[(t0, t1, Fold)] covering [0, l_out): windows of at most max_tw outputs, halved where a
    window's indices would not fit 32 bits (a single output always fits: its reads lie within the
    input). With a stride far beyond the input, most outputs are empty windows (bias only)."""
    out, t0 = [], 0
    tw = max(1, min(max_tw or l_out, l_out))
    while t0 < l_out:
        t1 = min(l_out, t0 + tw)
        f = fold_conv1d(l_in, k, stride, dilation, padding, t0, t1)
        while t1 - t0 > 1 and index_bound(t1 - t0, f) >= INT_LIMIT:
            t1 = t0 + (t1 - t0) // 2
            f = fold_conv1d(l_in, k, stride, dilation, padding, t0, t1)
        out.append((t0, t1, f))
        t0 = t1
    return out
