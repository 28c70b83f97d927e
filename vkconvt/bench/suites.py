"""Benchmark suites: the cases of `python -m vkconvt bench SUITE` (see the SUITES table).

`models` holds the real layers of vkconvt/data/model_layers.json; five sweeps vary one dimension
over powers of two; `matmul` the matmul shader's shapes; `quick` a handful of small cases of each.
"""
import json
import math
import os
from dataclasses import dataclass

import numpy as np

import vkconvt
from ..params import params_from_shapes

DATA = os.path.join(os.path.dirname(vkconvt.__file__), "data", "model_layers.json")
CONV_KEYS = ("c_in", "c_out", "kernel", "stride", "padding", "output_padding", "groups", "dilation", "bias",
             "l_in")
SWEEP_FIXED = dict(output_padding=0, groups=1, dilation=1, bias=False)

# ------------------------------------------------------------------------------------------ cases
@dataclass
class BenchCase:
    kind: str                # "model", "sweep", "user", "overhead", "matmul", "float16", "activation",
                             # "backward", "chain" or "gpu-model"
    group: str               # model name, sweep name, "users" or "matmul"
    name: str                # layer name, "c_in=64", "4096x512x86"
    x: int = 0               # layer index, swept value, or matmul M
    conv: dict = None        # CONV_KEYS -> value
    mnk: tuple = None        # (M, K, N)
    calls: int = 1           # calls per forward pass (model layers)
    batch: int = None        # this case's batch (else --batch)

    def params(self, batch):
        c = self.conv
        return params_from_shapes((batch, c["c_in"], c["l_in"]), (c["c_in"], c["c_out"] // c["groups"], c["kernel"]),
                                  *self.hyper(), bias=c["bias"])[0]

    def hyper(self):
        """The arguments after (x, weight, bias), in the order of vkconvt's and PyTorch's signature."""
        c = self.conv
        return () if c is None else (c["stride"], c["padding"], c["output_padding"], c["groups"], c["dilation"])

    def build(self, batch, seed):
        """(arrays, flops, tag) with random float32 operands."""
        rng = np.random.default_rng(seed)
        if self.conv is None:
            m, k, n = self.mnk
            return ((rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)),
                    2 * m * k * n, f"{m}x{k}x{n}")
        p = self.params(batch)
        x = rng.standard_normal((p.n, p.c_in, p.l_in), dtype=np.float32)
        w = rng.standard_normal((p.c_in, p.cog, p.k), dtype=np.float32) / np.float32(math.sqrt(p.cig * p.k))
        b = rng.standard_normal(p.c_out, dtype=np.float32) if p.bias else None
        return (x, w, b), p.flops, p.tag()


def model_cases(args, suite=None):
    with open(DATA) as f:
        data = json.load(f)
    wanted = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    unknown = sorted(set(wanted) - set(data["models"]))
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(data['models'])}")
    return [BenchCase("model", lay["model"], lay["name"], lay["layer"], {k: lay[k] for k in CONV_KEYS},
                 calls=lay.get("calls_per_forward", 1))
            for lay in data["layers"] if not wanted or lay["model"] in wanted]


def model_kind(kind):
    """The model layers as cases of another kind (the float16 and activations suites, extras.py)."""
    def cases(args, suite=None):
        out = model_cases(args)
        for c in out:
            c.kind = kind
        return out
    return cases


def sweep(dim, values, **fixed):
    def cases(args, suite):
        return [BenchCase("sweep", suite, f"{dim}={v}", v, {**SWEEP_FIXED, **fixed, dim: v}) for v in values]
    return cases


def matmul_cases(args, suite=None):
    shapes = [(s, s, s) for s in (256, 512, 1024, 2048)] + [(4096, 512, 86), (1024, 256, 688), (256, 128, 5504),
                                                           (6144, 768, 696)]
    return [BenchCase("matmul", "matmul", f"{m}x{k}x{n}", m, mnk=(m, k, n)) for m, k, n in shapes]


def conv(**kw):
    return {**SWEEP_FIXED, "bias": False, **kw}


def user_cases(args, suite=None):
    """Cases users hit outside the model table: the ISTFT-shaped layer (what torch.istft exports to;
    1000x slower than matmul + overlap-add on some runtimes), a kernel far longer than its input,
    and the per-call overhead of a tiny layer against one pre-recorded trivial dispatch."""
    istft = conv(c_in=2049, c_out=1, kernel=4096, stride=1024, padding=0, l_in=340)
    return [BenchCase("user", "users", "istft batch 1", 1, istft, batch=1),
            BenchCase("user", "users", "istft batch 12", 12, istft, batch=12),
            BenchCase("user", "users", "long kernel K=2**20", 2 ** 20, conv(c_in=1, c_out=1, kernel=2 ** 20, stride=3,
                                                                       padding=0, l_in=4), batch=1),
            BenchCase("overhead", "overhead", "tiny layer x (1,4,8) w (4,4,3) s2", 0,
                 conv(c_in=4, c_out=4, kernel=3, stride=2, padding=0, l_in=8), batch=1)]


def quick_cases(args, suite=None):
    """The two smallest grouped and two smallest dense model layers (distinct models), sweep-ic at
    C_in 2 and 128, and the smallest matmul."""
    picked, seen = {False: [], True: []}, set()
    for case in sorted(model_cases(args), key=lambda c: c.params(1).flops):
        dense = case.conv["groups"] == 1
        if case.group not in seen and len(picked[dense]) < 2:
            picked[dense].append(case)
            seen.add(case.group)
    sweeps = [c for c in SUITES["sweep-ic"][1](args, "sweep-ic") if c.x in (2, 128)]
    return picked[False] + picked[True] + sweeps + matmul_cases(args)[:1] + user_cases(args)[-1:]


SWEEPS = ("sweep-ic", "sweep-k", "sweep-l", "sweep-stride", "sweep-padding")


def pow2(lo, hi):
    return [1 << i for i in range(lo, hi + 1)]


# name -> (description, cases(args, name)). Sweeps fix the other dimensions so that both regions
# show: direct wins with few input channels, small K or large padding; gemm with many input channels.
SUITES = {
    "models": ("every ConvTranspose1d layer of 18 vocoders / codec decoders, 1 s of audio", model_cases),
    "sweep-ic": ("C_in 1..512 (C_out 64, K 8, stride 4, padding 2, L 2048)",
                 sweep("c_in", pow2(0, 9), c_out=64, kernel=8, stride=4, padding=2, l_in=2048)),
    "sweep-k": ("K 1..64 (C_in 256, C_out 64, stride 4, L 512)",
                sweep("kernel", pow2(0, 6), c_in=256, c_out=64, stride=4, padding=0, l_in=512)),
    "sweep-l": ("L 16..8192 (C_in 256, C_out 64, K 8, stride 4, padding 2)",
                sweep("l_in", pow2(4, 13), c_in=256, c_out=64, kernel=8, stride=4, padding=2)),
    "sweep-stride": ("stride 1..64 (C_in 256, C_out 64, K 16, L 512)",
                     sweep("stride", pow2(0, 6), c_in=256, c_out=64, kernel=16, padding=0, l_in=512)),
    "sweep-padding": ("padding 0..512, beyond K (C_in 64, C_out 64, K 16, stride 2, L 512)",
                      sweep("padding", [0] + pow2(0, 9), c_in=64, c_out=64, kernel=16, stride=2, l_in=512)),
    "matmul": ("square 256..2048 and the skinny shapes of the models' gemm path", matmul_cases),
    "users": ("ISTFT-shaped layer (batch 1 and 12), a 2**20-tap kernel, per-call overhead of a tiny layer", user_cases),
    "sweeps": ("the five sweeps", lambda args, suite: [c for n in SWEEPS for c in SUITES[n][1](args, n)]),
    "all": ("models, the five sweeps (the shapes auto is judged on) and the users cases",
            lambda args, suite: model_cases(args) + SUITES["sweeps"][1](args, "sweeps") + user_cases(args)),
    "quick": ("a handful of small cases of every kind (same as --quick)", quick_cases),
    "gpu-path": ("HiFi-GAN V1's upsampling stack chained on device arrays vs host arrays vs NumPy, with the "
                 "submissions and bytes per chain; a modelled discrete-GPU fixed cost per call, v0.2.0 vs now",
                 lambda args, suite: [BenchCase("chain", "gpu-path", "hifigan_v1 ups chain", 0),
                                      BenchCase("gpu-model", "gpu-path", "hifigan_v1 ups[0] fixed cost", 0)]),
    "float16": ("the model layers in float32 and float16 storage: time, workspace and peak memory",
                model_kind("float16")),
    "activations": ("the model layers with fused leaky ReLU in / Snake out against separate NumPy and PyTorch "
                    "passes", model_kind("activation")),
    "backward": ("the model layers' backward pass (grad_input, grad_weight, grad_bias) against PyTorch CPU, with "
                 "backward/forward for each", model_kind("backward")),
}
