#!/usr/bin/env python3
"""Standalone harness for the conv1d and conv_transpose1d-backward kernels (issue 19): drives each
shader through raw kp (no vkconvt backend, planner or device module) and checks it against the
NumPy references in vkconvt/backends/numpy_ops.py over one case table.

    python scripts/conv1d_kit.py check [--kernel NAME] [--max-tw N]   # every kernel x every case
    python scripts/conv1d_kit_bench.py                                  # timings (see that file)

Host side, per op: the output (or input) range is cut into windows and folded (kernels/conv1d.py:
conv1d_windows, fold_conv1d), each window's push fields come from the kernel's setup(local, spec)
and its spec from choose(local, base spec, device). Dependent dispatches are separated by
kp.OpGlobalBarrier (shader write -> shader read/write; Kompute records none between dispatches).
float16 twins (<name>_f16) hold x, weights and the column buffer as packed halves.
"""
import os
import sys
from dataclasses import dataclass, replace

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from vkconvt import activations  # noqa: E402
from vkconvt import reference as ref  # noqa: E402
from vkconvt.kernels import base, conv1d as k1, conv1d_shaped as k1s, cpu, portable  # noqa: E402

SPV_DIR = os.path.join(ROOT, "vkconvt", "spv")
BASE = k1.BASE + k1s.BASE
MATMULS = (portable.MATMUL, cpu.MATMUL_SG)
KERNELS = {k.name: k for k in BASE + MATMULS}
KERNELS.update({k.name + "_f16": replace(k, name=k.name + "_f16", source=k.name, storage="float16") for k in BASE})
KERNELS.update({k.name + "_f16": replace(k, name=k.name + "_f16", source=k.name, storage="float16",
                                         align=max(k.align, 2 if k is portable.MATMUL else 4)) for k in MATMULS})
CONV1D_KERNELS = tuple(k.name for k in BASE if k.op == "conv1d")
# Vulkan access and stage flags for kp.OpGlobalBarrier
SHADER_READ, SHADER_WRITE, TRANSFER_WRITE, COMPUTE, TRANSFER = 0x20, 0x40, 0x1000, 0x800, 0x1000
TOL = {"float32": 1e-7, "float16": 1e-6}     # tests/cases.py's normalised MSE per storage


# ------------------------------------------------------------------------------- the case table
@dataclass(frozen=True)
class Case:
    """A conv1d x (n, c_in, l), w (c_out, c_in/groups, k); its backward twin is conv_transpose1d
    with input (n, c_out, l_out), the same weight and output_padding making its output length l."""
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
        return ref.conv1d_output_length(self.l, self.k, self.stride, self.padding, self.dilation)

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


CASES = [
    Case(),                                                              # 1x1x1, K=1
    Case(c_in=4, c_out=6, l=13, k=3, stride=2),
    Case(n=2, c_in=4, c_out=6, l=13, k=3, stride=2, padding=1, bias=True),
    Case(c_in=2, c_out=3, l=20, k=5, stride=3, padding=7),               # padding beyond K
    Case(c_in=3, c_out=2, l=30, k=3, stride=2, padding=20),              # padding far beyond K
    Case(n=3, c_in=2, c_out=3, l=11, k=4, stride=2, padding=2, dilation=3),
    Case(c_in=3, c_out=4, l=40, k=7, padding=9, dilation=3),
    Case(c_in=3, c_out=2, l=19, k=5, stride=3, padding=3, dilation=2),   # gcd(s, d) = 1
    Case(c_in=2, c_out=2, l=15, k=6, stride=4, padding=1, dilation=2),   # gcd(s, d) = 2
    Case(c_in=2, c_out=3, l=50, k=1, stride=4),                          # stride beyond the kernel
    Case(c_in=4, c_out=6, l=17, k=3, stride=2, padding=1, groups=2, bias=True),
    Case(n=2, c_in=8, c_out=8, l=25, k=4, stride=2, padding=1, groups=8, bias=True),   # depthwise
    Case(c_in=4, c_out=8, l=10, k=3, groups=4),                          # depthwise, multiplier 2
    Case(l=1, k=1337, padding=668),                                      # long K, L=1, one output
    Case(c_in=1, c_out=2, l=7, k=1337, stride=3, padding=700),           # long K over few inputs
    Case(c_in=3, c_out=2, l=1, k=1),                                     # L=1
    Case(c_in=3, c_out=5, l=10, k=4, stride=20),                         # one output
    Case(c_in=5, c_out=3, l=8, k=8, bias=True),                          # one output, K = L
    Case(c_in=2, c_out=4, l=4000, k=7, padding=3, dilation=2),           # L in the thousands
    Case(n=2, c_in=32, c_out=48, l=64, k=8, stride=4, padding=2, bias=True),
    Case(c_in=64, c_out=64, l=100, k=16, stride=8, padding=4, groups=2, bias=True),    # HiFi-GAN-like
    Case(c_in=24, c_out=20, l=300, k=11, padding=25, dilation=5, bias=True),           # resblock-like
    Case(c_in=2, c_out=3, l=7, k=3, stride=3 << 31, padding=3 << 31, dilation=2),      # huge stride
    Case(c_in=2, c_out=2, l=9, k=3, padding=1 << 32, dilation=1 << 32),                # huge dilation
]
CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS)


# ------------------------------------------------------------------------------- raw kp
def pack_push(kern, fields, grid):
    """The push array of kern: every field in Push order, floats as their bits, ints two's complement."""
    fields = dict(fields, grid_x=grid[0], grid_y=grid[1], grid_z=grid[2])
    missing, extra = set(kern.push) - set(fields), set(fields) - set(kern.push)
    if missing or extra:
        raise KeyError(f"push constants of {kern.name}: missing {sorted(missing)}, unknown {sorted(extra)}")
    out = []
    for name in kern.push:
        if name in kern.floats:
            out.append(int(np.float32(fields[name]).view(np.uint32)))
            continue
        v = int(fields[name])
        lo, hi = (-(1 << 31), 1 << 31) if name in kern.signed else (0, 1 << 32)
        if not lo <= v < hi:
            raise OverflowError(f"push constant {name}={v} of {kern.name} does not fit 32 bits")
        out.append(v & 0xFFFFFFFF)
    return np.asarray(out, dtype=np.uint32)


class Runner:
    """One kp.Manager, its tensors and pipelines; ops record Plans (sequences evaluated many times)."""

    def __init__(self, index=0):
        os.environ.setdefault("VK_LOADER_LAYERS_DISABLE", "VK_LAYER_KHRONOS_validation")
        import kp
        try:
            from vkconvt.vulkan import vkinfo
        except ImportError:
            from vkconvt import vkinfo
        self.kp = kp
        self.info = vkinfo.list_devices()[index]
        self.mgr = kp.Manager(index)
        self.host_visible = self.info.type in ("cpu", "integrated-gpu")
        self.dev = base.Device("cpu" if self.info.type == "cpu" else "gpu", self.info.max_shared_memory,
                               self.info.max_workgroup_invocations, self.info.subgroup_size, self.info.subgroup_ops)
        self._spv, self._algos = {}, {}

    def spirv(self, name):
        if name not in self._spv:
            with open(os.path.join(SPV_DIR, name + ".spv"), "rb") as f:
                self._spv[name] = f.read()
        return self._spv[name]

    def tensor(self, nfloats):
        kind = self.kp.TensorTypes.host if self.host_visible else self.kp.TensorTypes.device
        return self.mgr.tensor_t(np.zeros(max(1, int(nfloats)), dtype=np.float32), kind)

    def upload(self, arr, storage="float32", nfloats=None, fill=None):
        """A tensor holding arr flat (float32, or packed halves), or fill(view) writing it."""
        n = arr.size if arr is not None else nfloats
        t = self.tensor(base.cdiv(n, 2) + 1 if storage == "float16" else n)
        view = t.data() if storage == "float32" else t.data().view(np.float16)
        if fill is not None:
            fill(view)
        else:
            view[:arr.size] = arr.reshape(-1)
        self.sync([t], True)
        return t

    def sync(self, tensors, to_device):
        if not self.host_visible:
            op = self.kp.OpTensorSyncDevice if to_device else self.kp.OpTensorSyncLocal
            self.mgr.sequence().record(op(list(tensors))).eval()

    def read(self, t, shape):
        self.sync([t], False)
        return t.data()[:int(np.prod(shape))].reshape(shape).copy()

    def dispatch(self, name, local, tensors, spec=None, dev=None):
        """The op (kp.OpAlgoDispatch) running kernel `name` on piece `local`; spec: its choose() for
        `dev` (default: this device; another device's class picks that class's tiles)."""
        kern, dev = KERNELS[name], dev or self.dev
        base_spec = tuple(spec or kern.defaults[dev.device_class])
        sp = kern.spec_for(local, base_spec, dev)
        if sp is None:
            raise ValueError(f"{name} cannot run {local} on {self.info.name}")
        grid, fields = kern.setup(local, sp)
        push = pack_push(kern, fields, grid)
        groups = max(1, min(65535, grid[0] * grid[1] * grid[2]))
        key = (name, sp, tuple(id(t) for t in tensors), groups)
        if key not in self._algos:      # the entry keeps its tensors alive: their ids stay unique
            self._algos[key] = (self.mgr.algorithm(list(tensors), self.spirv(kern.name), [groups, 1, 1],
                                                   np.asarray(sp, dtype=np.uint32), push), list(tensors))
        return self.kp.OpAlgoDispatch(self._algos[key][0], push)

    def forget(self):
        """Drop the pipeline cache (and the tensors it keeps alive): plans made before stay valid."""
        self._algos.clear()

    def barrier(self, transfer=False):
        src, stage = (TRANSFER_WRITE, TRANSFER) if transfer else (SHADER_WRITE, COMPUTE)
        return self.kp.OpGlobalBarrier(src, SHADER_READ | SHADER_WRITE, stage, COMPUTE)

    def plan(self, ops, out, shape, post=None):
        seq = self.mgr.sequence()
        for op in ops:
            seq.record(op)
        return Plan(self, seq, out, shape, post)


@dataclass
class Plan:
    runner: Runner
    seq: object
    out: object
    shape: tuple
    post: object = None         # the result from the buffer's contents, when not the buffer itself

    def run(self):
        self.seq.eval()

    def result(self):
        self.run()
        got = self.runner.read(self.out, self.shape)
        return got if self.post is None else self.post(got)


def halves(a):
    """a rounded to float16 (what a float16 twin computes with), as float32; None stays None."""
    return None if a is None else a.astype(np.float16).astype(np.float32)


def bias_buffer(r, bias, c, epi, act_params):
    """[bias (C), alpha (C), 1/(beta + eps) (C)] when the snakes need them, else the bias or 1 float."""
    parts = [bias if bias is not None else np.zeros(c, np.float32)]
    if epi.act == 4:
        parts += [act_params[0], act_params[1]]
    return r.upload(np.concatenate(parts).astype(np.float32) if (bias is not None or epi.act == 4)
                    else np.zeros(1, np.float32))


# ------------------------------------------------------------------------------- ops
def conv1d_plan(r, name, x, w, bias, stride=1, padding=0, dilation=1, groups=1, epi=activations.NONE,
                act_params=None, max_tw=None, spec=None, dev=None):
    """out = conv1d(x, w) + bias with the direct kernel `name`, one dispatch per folded window."""
    kern = KERNELS[name]
    n, c_in, l_in = x.shape
    c_out, cig, k = w.shape
    cog = c_out // groups
    l_out = ref.conv1d_output_length(l_in, k, stride, padding, dilation)
    tx = r.upload(x, kern.storage)
    windows = k1.conv1d_windows(l_in, k, stride, dilation, padding, l_out, max_tw)

    def local(t0, t1, f, wk=k):
        return k1.Conv1dLocal(n, groups, cig, cog, f.lw, t1 - t0, f.kw, f.s, f.d, f.pad, bias is not None, f.kb,
                              wk, f.lb, l_in, t0, l_out, epi.act, epi.slope, epi.in_act, epi.in_slope)
    whole = local(0, l_out, k1.Fold1d(0, l_in, 0, k, padding, stride, dilation))
    dev = dev or r.dev
    sp = kern.spec_for(whole, tuple(spec or kern.defaults[dev.device_class]), dev)
    if sp is None:
        raise ValueError(f"{name} does not take this layer (its choose() declines) on {r.info.name}")
    w4 = w.reshape(groups, cog, cig, k)
    tw_ = r.upload(None, kern.storage, kern.w_floats(whole, sp), lambda v: kern.pack_weights(v, w4, whole, sp))
    tb = bias_buffer(r, bias, c_out, epi, act_params)
    tout = r.tensor(n * c_out * l_out)
    ops = [r.dispatch(name, local(t0, t1, f), [tx, tw_, tb, tout], spec, dev) for t0, t1, f in windows]
    return r.plan(ops, tout, (n, c_out, l_out))


def im2col_plan(r, x, k, stride, padding, dilation, l_out, transposed=False, groups=1, storage="float32", ldcol=None):
    """The im2col_1d column buffer of x for all l_out columns (one window), as an (N*G, rows, ldcol) array."""
    n, c, l_in = x.shape
    cpg = c // groups
    rows, length = (l_out, cpg * k) if transposed else (cpg * k, l_out)
    ldcol = ldcol or base.round_up(length, 4)
    name = "im2col_1d" + ("_f16" if storage == "float16" else "")
    tx = r.upload(x, storage)
    tcol = r.tensor(base.cdiv(n * groups * rows * ldcol, 2 if storage == "float16" else 1))
    loc = k1.Im2colLocal(n, groups, cpg, k, l_in, l_out, stride, dilation, padding, ldcol,
                         transposed)
    return r.plan([r.dispatch(name, loc, [tx, tcol])], tcol, (n * groups, rows, ldcol))


def read_col(plan, storage):
    """The column buffer of an im2col plan as float32 (unpacking halves)."""
    plan.run()
    r, shape = plan.runner, plan.shape
    r.sync([plan.out], False)
    data = plan.out.data() if storage == "float32" else plan.out.data().view(np.float16)
    return data[:int(np.prod(shape))].astype(np.float32).reshape(shape)


def conv1d_gemm_plan(r, x, w, bias, stride=1, padding=0, dilation=1, groups=1, epi=activations.NONE,
                     act_params=None, max_tw=None, matmul="matmul_sg", storage="float32"):
    """im2col_1d -> matmul -> bias_act_1d per folded window (workspaces sized for the widest window)."""
    f16 = "_f16" if storage == "float16" else ""
    mm = KERNELS[matmul + f16]
    n, c_in, l_in = x.shape
    c_out, cig, k = w.shape
    cog = c_out // groups
    l_out = ref.conv1d_output_length(l_in, k, stride, padding, dilation)
    windows = k1.conv1d_windows(l_in, k, stride, dilation, padding, l_out, max_tw)
    windows = [(t0, t1, f if f.kw else k1.Fold1d(0, 0, 0, 1, 0, 1, 1)) for t0, t1, f in windows]  # empty: reads 0
    width = max(t1 - t0 for t0, t1, _ in windows)
    ld = base.round_up(width, max(4, mm.align))
    tx = r.upload(x, storage)
    tb = bias_buffer(r, bias, c_out, epi, act_params)
    half = 2 if storage == "float16" else 1
    tcol = r.tensor(base.cdiv(n * groups * cig * k * ld, half))
    tc = r.tensor(base.cdiv(n * c_out * ld, half))
    tout = r.tensor(n * c_out * l_out)
    weights, ops = {}, []
    for t0, t1, f in windows:
        lda = base.round_up(cig * f.kw, mm.align)
        if (f.kb, f.kw) not in weights:          # A[g][o][ci*kw + q] = w[g*cog + o, ci, kb + q], rows lda
            a = np.zeros((groups, cog, lda), np.float32)
            a[:, :, :cig * f.kw] = w[:, :, f.kb:f.kb + f.kw].reshape(groups, cog, cig * f.kw)
            weights[(f.kb, f.kw)] = r.upload(a, storage)
        tw = t1 - t0
        ops += [r.dispatch("im2col_1d" + f16, k1.Im2colLocal(n, groups, cig, f.kw, f.lw, tw, f.s, f.d, f.pad, ld,
                                                             False, f.lb, l_in), [tx, tcol]), r.barrier()]
        mloc = base.MatmulLocal(n * groups, cog, tw, cig * f.kw, lda, ld, ld, groups, cog * lda, cig * f.kw * ld,
                                cog * ld, 0, epi.in_act, epi.in_slope)
        ops += [r.dispatch(mm.name, mloc, [weights[(f.kb, f.kw)], tcol, tc]), r.barrier()]
        ops += [r.dispatch("bias_act_1d" + f16, k1.BiasActLocal(n, c_out, tw, ld, l_out, t0, bias is not None,
                                                                epi.act, epi.slope), [tc, tb, tout]), r.barrier()]
    return r.plan(ops, tout, (n, c_out, l_out))


def grad_weight_plan(r, x, grad_out, k, stride=1, padding=0, dilation=1, groups=1, epi=activations.NONE,
                     max_lx=None, name="conv1d_grad_weight", storage="float32", spec=None, dev=None):
    """gw (C_in, C_out/groups, K) of conv_transpose1d(x) from grad_out, over input chunks of at most
    max_lx positions: the first writes (or the buffer is zero-filled when it misses taps), the rest add."""
    n, c_in, l_in = x.shape
    _, c_out, l_out = grad_out.shape
    cig, cog = c_in // groups, c_out // groups
    name += "_f16" if storage == "float16" else ""
    ldx = base.round_up(l_in, 4) if name.startswith("conv1d_grad_weight_sg") else l_in   # vec4 rows
    xp = np.zeros((n, c_in, ldx), np.float32)
    xp[..., :l_in] = x
    tx, tg = r.upload(xp, storage), r.upload(grad_out, storage)
    tgw = r.tensor(c_in * cog * k)
    chunks = k1.conv1d_windows(l_out, k, stride, dilation, padding, l_in, max_lx)
    ops = []
    if not chunks[0][2].kw == k:
        ops += [r.kp.OpFill(tgw, 0, 4 * c_in * cog * k, 0), r.barrier(transfer=True)]
    for i, (l0, l1, f) in enumerate(chunks):
        if f.kw == 0:
            continue
        loc = k1.GradWeightLocal(n, groups, cig, cog, f.kw, l1 - l0, f.lw, f.s, f.d, f.pad, k, f.kb,
                                 bool(ops), l0, ldx, f.lb, l_out, epi.in_act, epi.in_slope)
        ops += [r.dispatch(name, loc, [tx, tg, tgw], spec, dev), r.barrier()]
    if not ops:          # nothing reaches: a zero gradient
        ops = [r.kp.OpFill(tgw, 0, 4 * c_in * cog * k, 0)]
    return r.plan(ops, tgw, (c_in, cog, k))


def grad_weight_gemm_plan(r, x, grad_out, k, stride=1, padding=0, dilation=1, groups=1, matmul="matmul_sg"):
    """The matmul route to gw for a batch of one (float32, one chunk): im2col_1d's transposed layout
    of grad_out, colT[g][l][co*K + k] = grad_out[g*cog + co, l*s - p + k*d] (rows ldb), then per
    group C (cig x cog*K) = x_g (cig x L, rows padded to lda) . colT_g; C is gw's layout (rows ldc)."""
    n, c_in, l_in = x.shape
    _, c_out, l_out = grad_out.shape
    assert n == 1, "the matmul route sums no batch: one matmul per batch entry and an add would"
    cig, cog = c_in // groups, c_out // groups
    mm = KERNELS[matmul]
    lda, ldb = base.round_up(l_in, mm.align), base.round_up(cog * k, max(4, mm.align))
    xa = np.zeros((c_in, lda), np.float32)
    xa[:, :l_in] = x[0]
    ta, tcol, tc = r.upload(xa), r.tensor(groups * l_in * ldb), r.tensor(c_in * ldb)
    tg = r.upload(grad_out)
    loc = k1.Im2colLocal(1, groups, cog, k, l_out, l_in, stride, dilation, padding, ldb, True)
    mloc = base.MatmulLocal(groups, cig, cog * k, l_in, lda, ldb, ldb, groups, cig * lda, l_in * ldb, cig * ldb, 0)
    ops = [r.dispatch("im2col_1d", loc, [tg, tcol]), r.barrier(), r.dispatch(matmul, mloc, [ta, tcol, tc])]
    return r.plan(ops, tc, (c_in, ldb), post=lambda c: c[:, :cog * k].reshape(c_in, cog, k))
