"""The public ops: validate, choose the algorithm, hand to a backend.

    conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                     *, algorithm="auto", backend=None, device=None)
    matmul(a, b)
    col2im_1d(col, stride=1, padding=0, dilation=1, output_padding=0, bias=None)

All return NumPy float32 arrays and accept anything np.asarray takes.
"""
import numpy as np

from . import backends
from .params import as_float32, as_int, check_algorithm, check_conv_args, check_hyper, output_length


def _backend(backend, device):
    return backends.get(backend, device=device)


def choose_algorithm(p, algorithm, be):
    """'auto': gemm when there are many input channels per group and the column buffer is modest,
    else direct (no workspace). The planner (issue 6) refines this with a cost model."""
    if algorithm != "auto":
        return algorithm
    if getattr(be, "name", "") == "numpy":
        return "direct"
    if p.cig >= 16 and p.gemm_column_bytes() <= (256 << 20):
        return "gemm"
    return "direct"


def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", backend=None, device=None):
    """PyTorch's torch.nn.functional.conv_transpose1d.

    x: (N, C_in, L) or unbatched (C_in, L); weight: (C_in, C_out/groups, K); bias: (C_out,) or None.
    Returns (N, C_out, L_out) (or (C_out, L_out) for unbatched x) with
    L_out = (L-1)*stride - 2*padding + dilation*(K-1) + output_padding + 1.
    algorithm: "auto", "direct" (no workspace) or "gemm" (matmul + col2im_1d, a column buffer of
    C_out*K*N*L floats, split into chunks to fit the device).
    """
    check_algorithm(algorithm)
    x, weight, bias, p, batched = check_conv_args(x, weight, bias, stride, padding, output_padding, groups,
                                                  dilation)
    be = _backend(backend, device)
    algo = choose_algorithm(p, algorithm, be)
    out = be.conv_transpose1d(x, weight, bias, p, algo)
    return out if batched else out[0]


def matmul(a, b, *, backend=None, device=None):
    """a (M, K) or (B, M, K) times b (K, N) or (B, K, N) -> float32; a 2-D operand is broadcast
    over the other's batch."""
    a = as_float32("a", a)
    b = as_float32("b", b)
    if a.ndim not in (2, 3):
        raise ValueError(f"a must be 2-D (M, K) or 3-D (B, M, K); got shape {a.shape}")
    if b.ndim not in (2, 3):
        raise ValueError(f"b must be 2-D (K, N) or 3-D (B, K, N); got shape {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"inner dimensions differ: a has shape {a.shape}, b has shape {b.shape}")
    if a.ndim == 3 and b.ndim == 3 and a.shape[0] != b.shape[0]:
        raise ValueError(f"batch sizes differ: a has shape {a.shape}, b has shape {b.shape}")
    for nm, arr in (("a", a), ("b", b)):
        if 0 in arr.shape:
            raise ValueError(f"{nm} has an empty dimension: shape {arr.shape}")
    return _backend(backend, device).matmul(a, b)


def col2im_1d(col, stride=1, padding=0, dilation=1, output_padding=0, bias=None, *, backend=None, device=None):
    """The second half of the gemm algorithm, as a public op.

    col: (N, C, K, L_in) (or (C, K, L_in)): col[n, c, k, l] is what input position l contributes
    through kernel tap k to output channel c; it lands on output position
    t = l*stride - padding + k*dilation, and out[n, c, t] is the sum of everything landing on t
    (plus bias[c]). Returns (N, C, L_out) with L_out = (L_in-1)*stride - 2*padding +
    dilation*(K-1) + output_padding + 1.
    """
    col = as_float32("col", col)
    stride, padding, output_padding, dilation, _ = check_hyper(stride, padding, output_padding, dilation, 1)
    if col.ndim not in (3, 4):
        raise ValueError(f"col must have shape (N, C, K, L) or (C, K, L); got shape {col.shape}")
    batched = col.ndim == 4
    col4 = col if batched else col[None]
    if 0 in col4.shape:
        raise ValueError(f"col has an empty dimension: shape {col.shape}")
    n, c, k, l_in = col4.shape
    l_out = output_length(l_in, k, stride, padding, output_padding, dilation)
    if l_out <= 0:
        raise ValueError(f"output length {l_out} must be positive (L={l_in}, K={k}, stride={stride}, "
                         f"padding={padding}, dilation={dilation}, output_padding={output_padding})")
    if bias is not None:
        bias = as_float32("bias", bias)
        if bias.shape != (c,):
            raise ValueError(f"bias must have shape (C,) = ({c},); got shape {bias.shape}")
    out = _backend(backend, device).col2im_1d(col4, stride, padding, dilation, output_padding, bias)
    return out if batched else out[0]
