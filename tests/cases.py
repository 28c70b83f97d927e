"""The case tables, run over every backend and algorithm: CASES (conv_transpose1d; its backward
too) and CONV1D_CASES (conv1d; the kit's table, with offsets beyond 32 bits).

Each case: shapes and hyper-parameters; its id names only what differs from the defaults, e.g.
L13_K3_s2. Test ids read conv_transpose_1d[<backend>-<algorithm>-<case id>].
"""
import contextlib
from dataclasses import dataclass

import numpy as np
import pytest

import vkconvt
from vkconvt import backends, kernels
from vkconvt.metrics import nmse


@dataclass(frozen=True)
class Case:
    n: int = 1
    c_in: int = 1
    c_out: int = 1
    l: int = 1
    k: int = 1
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    dilation: int = 1
    groups: int = 1
    bias: bool = False
    unbatched: bool = False

    @property
    def id(self):
        parts = [f"N{self.n}" if self.n != 1 else "", f"Ci{self.c_in}" if self.c_in != 1 else "",
                 f"Co{self.c_out}" if self.c_out != 1 else "", f"L{self.l}", f"K{self.k}",
                 f"s{self.stride}" if self.stride != 1 else "", f"p{self.padding}" if self.padding else "",
                 f"op{self.output_padding}" if self.output_padding else "",
                 f"d{self.dilation}" if self.dilation != 1 else "", f"g{self.groups}" if self.groups != 1 else "",
                 "bias" if self.bias else "", "unbatched" if self.unbatched else ""]
        return "_".join(p for p in parts if p)

    def inputs(self, seed=0):
        rng = np.random.default_rng(seed)
        shape = (self.c_in, self.l) if self.unbatched else (self.n, self.c_in, self.l)
        x = rng.standard_normal(shape).astype(np.float32)
        w = rng.standard_normal((self.c_in, self.c_out // self.groups, self.k)).astype(np.float32)
        b = rng.standard_normal(self.c_out).astype(np.float32) if self.bias else None
        return x, w, b

    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    groups=self.groups, dilation=self.dilation)


CASES = [
    Case(),                                                            # 1x1x1, K=1
    Case(c_in=4, c_out=6, l=13, k=3, stride=2),
    Case(n=2, c_in=4, c_out=6, l=13, k=3, stride=2, padding=1, output_padding=1, bias=True),
    Case(c_in=2, c_out=3, l=20, k=5, stride=3, padding=7),             # padding beyond K
    Case(c_in=3, c_out=2, l=30, k=3, stride=2, padding=20),            # padding far beyond K
    Case(n=3, c_in=2, c_out=3, l=11, k=4, stride=2, padding=2, output_padding=2, dilation=3),
    Case(c_in=3, c_out=4, l=40, k=7, padding=9, dilation=3),
    Case(c_in=3, c_out=2, l=19, k=5, stride=3, padding=3, output_padding=1, dilation=2),   # gcd(s,d)=1
    Case(c_in=2, c_out=2, l=15, k=6, stride=4, padding=1, output_padding=1, dilation=2),   # gcd(s,d)=2
    Case(c_in=2, c_out=3, l=50, k=1, stride=4, output_padding=3),      # gaps: stride > reach of K
    Case(c_in=4, c_out=6, l=17, k=3, stride=2, padding=1, groups=2, bias=True),
    Case(n=2, c_in=8, c_out=8, l=25, k=4, stride=2, padding=1, groups=8, bias=True),      # depthwise
    Case(c_in=4, c_out=8, l=10, k=3, groups=4),                        # depthwise, multiplier 2
    Case(c_in=1, c_out=1, l=1, k=1337, stride=3),                      # ggml extremes
    Case(c_in=1, c_out=2, l=7, k=1337, stride=3, padding=5),
    Case(n=3, c_in=1, c_out=5, l=33, k=9, stride=4, padding=2, output_padding=3, bias=True),
    Case(c_in=2, c_out=4, l=4000, k=7, padding=3, dilation=2),         # L in the thousands
    Case(n=2, c_in=256, c_out=32, l=64, k=8, stride=4, padding=2, bias=True),           # many input channels
    Case(c_in=64, c_out=64, l=100, k=16, stride=8, padding=4, groups=2, bias=True),     # HiFi-GAN-like
    Case(c_in=5, c_out=3, l=9, k=3, stride=2, padding=1, bias=True, unbatched=True),
]
CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS), "case ids must be unique"


@dataclass(frozen=True)
class Case1d:
    """A conv1d: x (n, c_in, l), w (c_out, c_in/groups, k). Its backward twin is the transposed conv
    with input (n, c_out, l_out), the same weight and the output_padding that gives length l."""
    n: int = 1
    c_in: int = 1
    c_out: int = 1
    l: int = 1
    k: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    bias: bool = False

    @property
    def id(self):
        parts = [f"N{self.n}" if self.n != 1 else "", f"Ci{self.c_in}" if self.c_in != 1 else "",
                 f"Co{self.c_out}" if self.c_out != 1 else "", f"L{self.l}", f"K{self.k}",
                 f"s{self.stride}" if self.stride != 1 else "", f"p{self.padding}" if self.padding else "",
                 f"d{self.dilation}" if self.dilation != 1 else "", f"g{self.groups}" if self.groups != 1 else "",
                 "bias" if self.bias else ""]
        return "_".join(p for p in parts if p)

    @property
    def l_out(self):
        return (self.l + 2 * self.padding - self.dilation * (self.k - 1) - 1) // self.stride + 1

    @property
    def output_padding(self):
        return (self.l + 2 * self.padding - self.dilation * (self.k - 1) - 1) % self.stride

    @property
    def huge(self):
        """Offsets beyond 32 bits: PyTorch would allocate the padding; the references are exact."""
        return max(self.stride, self.padding, self.dilation) >= 1 << 31

    def hyper(self):
        return self.stride, self.padding, self.dilation, self.groups

    def inputs(self, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((self.n, self.c_in, self.l)).astype(np.float32)
        w = rng.standard_normal((self.c_out, self.c_in // self.groups, self.k)).astype(np.float32)
        b = rng.standard_normal(self.c_out).astype(np.float32) if self.bias else None
        return x, w, b


CONV1D_CASES = [
    Case1d(),                                                              # 1x1x1, K=1
    Case1d(c_in=4, c_out=6, l=13, k=3, stride=2),
    Case1d(n=2, c_in=4, c_out=6, l=13, k=3, stride=2, padding=1, bias=True),
    Case1d(c_in=2, c_out=3, l=20, k=5, stride=3, padding=7),               # padding beyond K
    Case1d(c_in=3, c_out=2, l=30, k=3, stride=2, padding=20),              # padding far beyond K
    Case1d(n=3, c_in=2, c_out=3, l=11, k=4, stride=2, padding=2, dilation=3),
    Case1d(c_in=3, c_out=4, l=40, k=7, padding=9, dilation=3),
    Case1d(c_in=3, c_out=2, l=19, k=5, stride=3, padding=3, dilation=2),   # gcd(s, d) = 1
    Case1d(c_in=2, c_out=2, l=15, k=6, stride=4, padding=1, dilation=2),   # gcd(s, d) = 2
    Case1d(c_in=2, c_out=3, l=50, k=1, stride=4),                          # stride beyond the kernel
    Case1d(c_in=4, c_out=6, l=17, k=3, stride=2, padding=1, groups=2, bias=True),
    Case1d(n=2, c_in=8, c_out=8, l=25, k=4, stride=2, padding=1, groups=8, bias=True),   # depthwise
    Case1d(c_in=4, c_out=8, l=10, k=3, groups=4),                          # depthwise, multiplier 2
    Case1d(l=1, k=1337, padding=668),                                      # long K, L=1, one output
    Case1d(c_in=1, c_out=2, l=7, k=1337, stride=3, padding=700),           # long K over few inputs
    Case1d(c_in=3, c_out=2, l=1, k=1),                                     # L=1
    Case1d(c_in=3, c_out=5, l=10, k=4, stride=20),                         # one output
    Case1d(c_in=5, c_out=3, l=8, k=8, bias=True),                          # one output, K = L
    Case1d(c_in=2, c_out=4, l=4000, k=7, padding=3, dilation=2),           # L in the thousands
    Case1d(n=2, c_in=32, c_out=48, l=64, k=8, stride=4, padding=2, bias=True),
    Case1d(c_in=64, c_out=64, l=100, k=16, stride=8, padding=4, groups=2, bias=True),    # HiFi-GAN-like
    Case1d(c_in=24, c_out=20, l=300, k=11, padding=25, dilation=5, bias=True),           # resblock-like
    Case1d(c_in=2, c_out=3, l=7, k=3, stride=3 << 31, padding=3 << 31, dilation=2),      # huge stride
    Case1d(c_in=2, c_out=2, l=9, k=3, padding=1 << 32, dilation=1 << 32),                # huge dilation
]
CONV1D_IDS = [c.id for c in CONV1D_CASES]
assert len(set(CONV1D_IDS)) == len(CONV1D_IDS), "case ids must be unique"

ALGORITHMS = ("direct", "gemm", "auto")
BACKEND_NAMES = ("numpy", "vulkan")


def backend_params():
    """(backend, algorithm) pairs; a backend that cannot start here is skipped with its reason."""
    out = []
    for row in backends.available():
        marks = () if row["available"] else (pytest.mark.skip(reason=f"{row['name']}: {row['reason']}"),)
        for algo in ALGORITHMS:
            out.append(pytest.param(row["name"], algo, id=f"{row['name']}-{algo}", marks=marks))
    return out


def variant_params(kernel_ops=(("conv_transpose_1d", "direct"), ("matmul", "gemm"))):
    """(backend, algorithm, kernel) triples: the NumPy reference, Vulkan with its default choice
    (kernel None), and Vulkan with each kernel variant of each (kernel op, algorithm) forced (the
    conv kernels with 'direct', matmul kernels with 'gemm'); ids read <backend>-<algorithm>[-<kernel>].
    A variant the device cannot run is skipped with the reason."""
    out = []
    reason = backends.vulkan_reason()
    vk_marks = () if reason is None else (pytest.mark.skip(reason=f"vulkan: {reason}"),)
    for algo in ALGORITHMS:
        out.append(pytest.param("numpy", algo, None, id=f"numpy-{algo}"))
        out.append(pytest.param("vulkan", algo, None, id=f"vulkan-{algo}", marks=vk_marks))
    for op, algo in kernel_ops:
        for kern in kernels.variants(op):
            marks = vk_marks
            if reason is None and not backends.get("vulkan").supports(kern):
                marks = (pytest.mark.skip(reason=f"{kern.name}: this device lacks what it needs"),)
            out.append(pytest.param("vulkan", algo, kern.name, id=f"vulkan-{algo}-{kern.name}", marks=marks))
    return out


@contextlib.contextmanager
def forced(kernel):
    """Run `kernel` wherever it can (else the op's portable kernel) inside the block."""
    if kernel is None:
        yield
        return
    with vkconvt.settings.override(kernels={kernels.KERNELS[kernel].op: kernel}):
        yield


def kernels_used(runs):
    """The kernels the schedules of a vkconvt.trace() ran."""
    return {d.kernel for _, _, sched in runs if sched is not None for st in sched.steps for d in st.dispatches}


# Normalised MSE allowed per dtype. float32: accumulation order only. float16 storage: the inputs
# are rounded once (both sides see the same rounded values), the result is rounded once to
# float16 (unit roundoff 2^-11: NMSE about 8e-8), and the gemm algorithm rounds every column
# entry to float16 as well, so 1e-6 (an rms error of 0.1 % of the output's rms) bounds both.
TOL = {"float32": 1e-7, "float16": 1e-6}


def assert_close(out, ref, tol=1e-7):
    assert out.shape == ref.shape, f"shape {out.shape} != reference {ref.shape}"
    assert np.isfinite(out).all(), "output has NaN or inf"
    err = nmse(out.astype(np.float64), ref)
    assert err <= tol, f"normalised MSE {err:.3e} > {tol:.0e}"
