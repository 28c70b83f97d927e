"""The public ops: validate, choose the algorithm, hand to a backend.

    conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                     *, algorithm="auto", backend=None, device=None)
    matmul(a, b)
    col2im_1d(col, stride=1, padding=0, dilation=1, output_padding=0, bias=None)

All return NumPy float32 arrays and accept anything np.asarray takes.
"""
import numpy as np

from . import backends, planner
from .errors import DeviceOutOfMemory
from .params import as_float32, check_algorithm, check_conv_args, check_hyper, output_length


def _backend(backend, device):
    return backends.get(backend, device=device)


def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", backend=None, device=None, max_workspace_bytes=None):
    """PyTorch's torch.nn.functional.conv_transpose1d.

    x: (N, C_in, L) or unbatched (C_in, L); weight: (C_in, C_out/groups, K); bias: (C_out,) or None.
    Returns (N, C_out, L_out) (or (C_out, L_out) for unbatched x) with
    L_out = (L-1)*stride - 2*padding + dilation*(K-1) + output_padding + 1.
    algorithm: "auto" (the planner's cost model picks), "direct" (no workspace) or "gemm" (matmul +
    col2im_1d; its column buffer is chunked over batch and input length to fit max_workspace_bytes).
    backend: "vulkan", "numpy", "auto" (the planner picks the faster backend) or None (default).
    device: a Vulkan device index or a substring of its name.
    """
    check_algorithm(algorithm)
    x, weight, bias, p, batched = check_conv_args(x, weight, bias, stride, padding, output_padding, groups,
                                                  dilation)
    out = _run_conv(x, weight, bias, p, algorithm, backend, device, max_workspace_bytes)
    return out if batched else out[0]


def _run_conv(x, weight, bias, p, algorithm, backend, device, max_workspace_bytes, weight_token=None, wt=None):
    plan = planner.make_plan(p, algorithm, backend, device, max_workspace_bytes)
    if plan.backend == "numpy":
        return backends.get("numpy").conv_transpose1d(x, weight, bias, p, plan.algorithm)
    be = backends.get("vulkan", device=device)
    # The planned call first; for auto, after running out of device memory, ever smaller column
    # chunks and then the direct algorithm (no workspace).
    attempts = [(plan.algorithm, plan.max_workspace_bytes)]
    if algorithm == "auto":
        cap = plan.max_workspace_bytes // 4
        while plan.algorithm == "gemm" and cap >= 4 * p.k * 64:
            attempts.append(("gemm", cap))
            cap //= 4
        attempts.append(("direct", None))
    for algo, cap in attempts:
        try:
            return be.conv_transpose1d(x, weight, bias, p, algo, col_cap=cap, weight_token=weight_token, wt=wt)
        except DeviceOutOfMemory as exc:
            be.dev.clear()      # give back every cached buffer before anything else
            last = exc
    if algorithm != "auto":
        raise DeviceOutOfMemory(f"conv_transpose1d {p.tag()}: algorithm {plan.algorithm!r} ran out of device "
                                f"memory (workspace budget {plan.max_workspace_bytes} bytes; {last})",
                                last.needed_bytes, plan.max_workspace_bytes) from last
    raise DeviceOutOfMemory(f"conv_transpose1d {p.tag()}: out of device memory even with the direct algorithm "
                            f"({last})", last.needed_bytes, plan.max_workspace_bytes) from last


class ConvTranspose1d:
    """A layer: weights checked once and kept on the device between calls.

        layer = vkconvt.ConvTranspose1d(weight, bias, stride=8, padding=4, device=0)
        y = layer(x)
    """

    def __init__(self, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                 algorithm="auto", backend=None, device=None, max_workspace_bytes=None):
        check_algorithm(algorithm)
        # Own copies: the device keeps these weights, so later edits of the caller's arrays must
        # not make them stale.
        self.weight = as_float32("weight", weight).copy()
        self.bias = None if bias is None else as_float32("bias", bias).copy()
        self.hyper = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                          dilation=dilation)
        # Validate now with a one-sample input of the right channels.
        if self.weight.ndim != 3:
            raise ValueError(f"weight must have shape (C_in, C_out/groups, K); got shape {self.weight.shape}")
        check_conv_args(np.zeros((self.weight.shape[0], 1), np.float32), self.weight, self.bias, **self.hyper)
        self.algorithm, self.backend, self.device = algorithm, backend, device
        self.max_workspace_bytes = max_workspace_bytes
        self._token = object()
        self._wt = None

    def __call__(self, x):
        x, w, b, p, batched = check_conv_args(x, self.weight, self.bias, **self.hyper)
        if self._wt is None:
            self._wt = p.gemm_weight(w)
        out = _run_conv(x, w, b, p, self.algorithm, self.backend, self.device, self.max_workspace_bytes,
                        weight_token=self._token, wt=self._wt)
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
