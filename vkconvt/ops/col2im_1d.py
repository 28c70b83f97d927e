"""col2im_1d, declared: col (n, c, k, l_in) -> out (n, c, l_out), cut over batch, channels and
output windows (each folded like a conv piece); the gemm algorithm's second half as a public op."""
from dataclasses import dataclass

import numpy as np

from .. import kernels, reference
from ..errors import VkconvtMemoryError
from ..fold import INT_LIMIT, Fold, fold_window, unrepresentable, window_bounds
from ..kernels import Col2imLocal, cdiv
from ..params import FLOAT_BYTES, output_length
from ..schedule import COUNTERS, Buffer, Schedule, Step, Transfer, make_dispatch, runs, split
from . import Op, register
from .conv_transpose1d import MAX_WINDOWS


@dataclass(frozen=True)
class Col2imParams:
    n: int
    c: int
    k: int
    l_in: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    output_padding: int = 0
    bias: bool = False

    @property
    def l_out(self):
        return output_length(self.l_in, self.k, self.stride, self.padding, self.output_padding, self.dilation)

    def tag(self):
        return (f"N{self.n}_C{self.c}_K{self.k}_L{self.l_in}_s{self.stride}_p{self.padding}_d{self.dilation}"
                f"_op{self.output_padding}" + ("_b" if self.bias else ""))


@dataclass(frozen=True)
class Col2imPiece:
    n0: int
    n1: int
    c0: int
    c1: int
    t0: int
    t1: int
    fold: Fold


def _bias_fill(pc):
    def fill(args):
        b = args.get("bias")
        if b is not None:
            args["out"][pc.n0:pc.n1, pc.c0:pc.c1, pc.t0:pc.t1] = b[pc.c0:pc.c1, None][None]
    return fill


class Col2imOp(Op):
    def schedule(self, p, algorithm, limits, budget, choice, complete=True, safe=False):
        cap = limits.max_buffer_bytes
        n, c, k, l_in, l_out, stride, dilation = p.n, p.c, p.k, p.l_in, p.l_out, p.stride, p.dilation

        def over(sz):
            lw, kw, vmax = window_bounds(l_in, k, stride, dilation, sz["tw"])
            if vmax >= INT_LIMIT:
                return ["tw"]
            if sz["nb"] * sz["cc"] * kw * lw * FLOAT_BYTES > cap:
                return ["nb", "cc", "tw"]
            if sz["nb"] * sz["cc"] * sz["tw"] * FLOAT_BYTES > cap:
                return ["nb", "cc", "tw"]
            return None

        def fail(sz):
            lw, kw, vmax = window_bounds(l_in, k, stride, dilation, sz["tw"])
            if vmax >= INT_LIMIT:
                unrepresentable("col2im_1d", stride, dilation, p.padding)
            raise VkconvtMemoryError(f"col2im_1d: the columns of one output position ({kw}x{lw} floats) exceed the "
                                     f"device's {cap}-byte storage buffers", kw * lw * FLOAT_BYTES, cap)

        g = split(dict(nb=n, cc=c, tw=l_out), over, fail)
        if cdiv(l_out, g["tw"]) > MAX_WINDOWS:
            unrepresentable("col2im_1d", stride, dilation, p.padding)
        sched = Schedule(self.name, p, algorithm, limits, dict(choice), budget=budget, safe=safe)
        sched.key = (self.name, p, limits, tuple(sorted(choice.items())))
        col_words = 1
        windows = [(t0, t1, fold_window(l_in, k, stride, dilation, p.padding, t0, t1))
                   for t0, t1 in runs(l_out, g["tw"])]
        for n0, n1 in runs(n, g["nb"]):
            for c0, c1 in runs(c, g["cc"]):
                for t0, t1, f in windows:
                    pc = Col2imPiece(n0, n1, c0, c1, t0, t1, f)
                    if f.kw == 0:
                        sched.steps.append(Step(pc, [], host=_bias_fill(pc)))
                        continue
                    col_words = max(col_words, (n1 - n0) * (c1 - c0) * f.kw * f.lw)
                    loc = Col2imLocal(n1 - n0, c1 - c0, f.kw, f.lw, f.s, f.d, f.pad, t1 - t0, 0, t1 - t0, 0, p.bias,
                                      f.lw)
                    name, spec = kernels.pick("col2im_1d", choice, loc, limits.device)
                    step = Step(pc, [make_dispatch(name, loc, spec)])
                    ups = [Transfer("col", "col", ((n0, n1), (c0, c1), (f.kb, f.kb + f.kw)), (f.lb, f.lb + f.lw), f.lw)]
                    if p.bias:
                        ups.append(Transfer("bias", "bias", (), (c0, c1), c1 - c0))
                    step.uploads = tuple(ups)
                    step.downloads = (Transfer("out", "out", ((n0, n1), (c0, c1)), (t0, t1), t1 - t0),)
                    sched.steps.append(step)
        sched.buffers = {"col": Buffer(col_words), "out": Buffer(g["nb"] * g["cc"] * g["tw"], "out")}
        if p.bias:
            sched.buffers["bias"] = Buffer(c)
        if complete:
            COUNTERS["schedules"] += 1
        return sched

    def numpy_features(self, p):
        return {"np_calls": 1.0, "np_adds": float(p.n) * p.c * p.k * p.l_in}

    def describe(self, p):
        return f"col2im_1d {p.tag()}  ->  out ({p.n}, {p.c}, {p.l_out})"

    def out_array(self, p, sched=None):
        return np.zeros((p.n, p.c, p.l_out), dtype=np.float32)

    def reference(self, p, algorithm, args):
        return reference.col2im_1d(args["col"], p.stride, p.padding, p.dilation, p.output_padding, args.get("bias"))


OP = register(Col2imOp("col2im_1d", ("default",), ("col2im_1d",)))
