"""What every kernel entry is made of: the Kernel record, the piece-local problems, small helpers."""
import collections
import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import numpy as np

DEVICE_CLASSES = ("cpu", "gpu")     # lavapipe/llvmpipe-like devices, and real GPUs


def device_class(info):
    """'cpu' for CPU devices (llvmpipe-like: lanes are SIMD lanes of a CPU), else 'gpu'."""
    return "cpu" if info.type == "cpu" else "gpu"


def device_of(info):
    """The kernels.Device (what a kernel's spec choice may depend on) of a vkinfo.DeviceInfo."""
    return Device(device_class(info), info.max_shared_memory, info.max_workgroup_invocations, info.subgroup_size,
                  info.subgroup_ops)


def cdiv(a, b):
    return -(-a // b)


def round_up(a, b):
    return cdiv(a, b) * b


def phase_constants(s, d):
    """(gcd, kp, dg, dinv): taps of one phase are kp = s/gcd apart, step dg = d/gcd inputs, and
    dinv = dg^-1 mod kp finds a phase's first tap without a search (0 when kp == 1)."""
    g = math.gcd(s, d)
    kp, dg = s // g, d // g
    return g, kp, dg, (pow(dg, -1, kp) if kp > 1 else 0)


@dataclass(frozen=True)
class ConvLocal:
    """out[n, g*cog + o, i] = bias + sum x[n, g*cig + ci, m] * w[g*cig + ci, o, q] over
    i + pad == m*s + q*d  (n < nb, g < G, o < cog, i < tw, m < lw, q < K)."""
    nb: int
    G: int
    cig: int
    cog: int
    lw: int
    tw: int
    K: int
    s: int
    d: int
    pad: int
    has_bias: bool
    act: int = 0               # fused output activation (activations.py) and its slope
    act_slope: float = 0.0
    in_act: int = 0            # input activation on x as it is loaded, and its slope
    in_slope: float = 0.0

    def phase_fields(self):
        g, kp, _, dinv = phase_constants(self.s, self.d)
        return dict(s=self.s, d=self.d, pad=self.pad, kp=kp, gdiv=g, dinv=dinv)

    def act_fields(self):
        return dict(act=self.act, act_slope=self.act_slope, in_act=self.in_act, in_slope=self.in_slope)


@dataclass(frozen=True)
class MatmulLocal:
    """C[b] = A[b % a_batch_mod] . B[b][:, b_offset : b_offset + N] (row-major, leading dims lda/ldb/ldc)."""
    batch: int
    M: int
    N: int
    K: int
    lda: int
    ldb: int
    ldc: int
    a_batch_mod: int
    a_batch_stride: int
    b_batch_stride: int
    c_batch_stride: int
    b_offset: int
    in_act: int = 0            # input activation applied to B (x, on the gemm path) as it is loaded
    in_slope: float = 0.0
    # split-K: how many partial copies of C (slices of the reduction, each batch * c_batch_stride
    # floats, one after another) the buffer holds and the consumer sums; 1: C is written whole
    max_splits: int = 1

    @property
    def c_size(self):
        """Elements of one copy of C (batch * c_batch_stride): the stride between split-K slices."""
        return self.batch * self.c_batch_stride


@dataclass(frozen=True)
class Col2imLocal:
    """out[n, c, i] (+)= sum col[n, c, q, m] over i + pad == m*s + q*d, for i in [i_begin, i_begin +
    i_count); outputs i < fresh_from accumulate. col rows are ldcol floats apart (>= lc). With
    slices > 1, col is that many partial column buffers slice_stride floats apart (a split-K
    matmul's), summed."""
    nb: int
    C: int
    K: int
    lc: int
    s: int
    d: int
    pad: int
    tw: int
    i_begin: int
    i_count: int
    fresh_from: int
    has_bias: bool
    ldcol: int = 0
    act: int = 0               # fused output activation (only when this dispatch writes final outputs)
    act_slope: float = 0.0
    slices: int = 1
    slice_stride: int = 0

    def phase_fields(self):
        g, kp, _, dinv = phase_constants(self.s, self.d)
        return dict(s=self.s, d=self.d, pad=self.pad, kp=kp, gdiv=g, dinv=dinv)


@dataclass(frozen=True)
class Device:
    """What a kernel's spec choice may depend on (read from the device; no kp)."""
    device_class: str = "cpu"
    max_shared_bytes: int = 16384
    max_invocations: int = 128
    subgroup_size: int = 1
    subgroup_ops: Tuple[str, ...] = ()


def identity_weights(dst, w, loc, spec):
    """The PyTorch layout as is: (G*cig, cog, K)."""
    np.copyto(dst[:w.size].reshape(w.shape), w)


def identity_floats(loc, spec):
    return loc.G * loc.cig * loc.cog * loc.K


def no_margins(loc, spec):
    return 0, max(1, loc.lw)


@dataclass(frozen=True)
class Kernel:
    """One shader: shaders/<name>.comp -> vkconvt/spv/<name>.spv -> KERNELS[name].

    A spec (the specialization constants' values) is a record, `kernel.Spec`, with one named field
    per constant in constant_id order (a namedtuple: hashable, and packed in that order)."""
    name: str
    op: str                                 # the kernel op it computes: conv_transpose_1d, matmul, col2im_1d, ...
    push: Tuple[str, ...]                   # Push block fields in order (grid_x/y/z last)
    spec: Tuple[str, ...]                   # specialization constants, constant_id order
    defaults: Dict[str, Tuple[int, ...]]    # device class -> spec values
    bindings: Tuple[Tuple[str, str], ...]   # (buffer, shape) in binding order
    setup: Callable                         # (local, spec) -> (logical grid, push fields without grid_*)
    work: Callable                          # (local, spec, grid) -> {count: value} for the cost model
    signed: Tuple[str, ...] = ()            # push fields declared `int`
    floats: Tuple[str, ...] = ()            # push fields declared `float`
    summary: str = ""
    # Per-piece spec: (local, base spec, Device) -> spec, or None when this kernel cannot run the piece.
    choose: Optional[Callable] = None
    # The spec that is exact when a weight is inf/NaN (no product with a position that is not an input).
    safe: Optional[Callable] = None
    x_layout: Callable = no_margins         # (local, spec) -> (xoff, ldx) of the x buffer
    pack_weights: Callable = identity_weights   # (dst flat view, w (G, cig, cog, K), local, spec)
    w_floats: Callable = identity_floats    # (local, spec) -> floats of the packed weights
    subgroup_ops: Tuple[str, ...] = ()      # vkinfo.SUBGROUP_OPS names the shader uses
    min_subgroup: Callable = lambda spec: 1     # the subgroup size the spec needs at least
    shared_bytes: Callable = lambda spec: 0     # shared memory the spec uses
    invocations: Callable = lambda spec: 1      # workgroup size of the spec
    align: int = 1                          # matmul kernels: operand rows a multiple of this many elements
    storage: str = "float32"                # element type of the inputs and the column buffer in memory
    source: str = ""                        # the shader it is compiled from, when not <name>.comp
    # tune's search: specs tried besides the defaults (dicts of the fields that differ from them)
    search: Tuple[dict, ...] = ()
    # The float16 twin (the same source built with VKCONVT_F16=1): None when the kernel has none,
    # else the fields the twin changes (e.g. a larger `align`, a `choose` wrapper).
    f16: Optional[dict] = field(default_factory=dict)
    ranges: Dict[str, Tuple[int, int]] = field(default_factory=dict)   # per spec field: [lo, hi] accepted
    spv_path: str = ""                      # a module outside vkconvt/spv (a kernel registered at run time)
    # spec fields that may be halved (down to 1) to fit a device's invocation limit (portable kernels,
    # whose grid follows the workgroup size)
    shrink: Tuple[str, ...] = ()
    # What the shader needs of a spec beyond each field's range: rules over the spec's field names
    # (Python expressions such as "tn % 4 == 0"), every one true for a spec the kernel can run
    # correctly; a spec that breaks one is refused (check_spec) and never chosen (supported).
    constraint: Tuple[str, ...] = ()
    # matmul kernels: how many partial copies of C a spec writes (split-K slices, see MatmulLocal)
    slices: Callable = lambda spec: 1

    def __post_init__(self):
        object.__setattr__(self, "Spec", collections.namedtuple(f"{self.name}_spec", self.spec))
        object.__setattr__(self, "defaults", {c: self.Spec(*v) for c, v in self.defaults.items()})
        object.__setattr__(self, "_rules", tuple((r, compile(r, f"<{self.name} constraint>", "eval"))
                                                 for r in self.constraint))

    @property
    def spv(self):
        return self.name + ".spv"

    @property
    def shader(self):
        """shaders/<shader>.comp (a float16 twin is compiled from its base's source)."""
        return self.source or self.name

    def make_spec(self, values):
        """A Spec from a sequence in constant_id order or a {field: value} mapping."""
        if isinstance(values, dict):
            return self.Spec(**values)
        return self.Spec(*values)

    def search_specs(self, device_class):
        """The default spec of a device class, then tune's alternatives (each once: an alternative
        equal to the default, e.g. matmul_tiled's ks=1 on a CPU device, is not timed twice)."""
        base = self.defaults[device_class]
        return list(dict.fromkeys([base] + [base._replace(**alt) for alt in self.search]))

    def violations(self, spec):
        """What spec breaks: a field outside its range (`ranges`, default [1, 65535]), else the rules
        of `constraint` that do not hold (none: the shader computes it correctly)."""
        fields = self.make_spec(spec)._asdict()
        out = []
        for f, v in fields.items():
            lo, hi = self.ranges.get(f, (1, 65535))
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or not lo <= v <= hi:
                out.append(f"{lo} <= {f} <= {hi}")
        if out:                       # a rule may divide by a field that is out of range
            return out
        return [rule for rule, code in self._rules if not eval(code, {"__builtins__": {}}, fields)]

    def supported(self, dev, spec=None):
        """Whether a device (a Device, or anything with its fields) can run this kernel with spec."""
        spec = self.make_spec(spec or self.defaults.get(getattr(dev, "device_class", "cpu")))
        return (not self.violations(spec) and all(op in dev.subgroup_ops for op in self.subgroup_ops)
                and (not self.subgroup_ops or self.min_subgroup(spec) <= dev.subgroup_size)
                and self.shared_bytes(spec) <= dev.max_shared_bytes
                and self.invocations(spec) <= dev.max_invocations)

    def spec_for(self, loc, base, dev):
        """The spec this kernel runs piece `loc` with, or None when it cannot (or the device cannot,
        or the base spec is one the kernel refuses: never handed to choose)."""
        if self.violations(base):
            return None
        spec = tuple(base) if self.choose is None else self.choose(loc, self.make_spec(base), dev)
        if spec is None:
            return None
        spec = self.fit(self.make_spec(spec), dev)
        return spec if self.supported(dev, spec) else None

    def fit(self, spec, dev):
        """spec with its `shrink` fields halved, largest first, until its workgroup fits the device."""
        while self.shrink and self.invocations(spec) > dev.max_invocations:
            field_ = max(self.shrink, key=lambda f: getattr(spec, f))
            if getattr(spec, field_) <= 1:
                break
            spec = spec._replace(**{field_: getattr(spec, field_) // 2})
        return spec
