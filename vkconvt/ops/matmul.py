"""matmul, declared: C (batch, M, N) = A (a_batch, M, K) . B (b_batch, K, N), a batch of 1 broadcasts.

Pieces cut batch, rows and columns until A, B and C each fit a buffer; operand rows are padded to
the matmul kernel's alignment (lda, ldb = ldc).
"""
from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..errors import VkconvtMemoryError
from ..kernels import MatmulLocal, round_up
from ..params import FLOAT_BYTES
from ..schedule import COUNTERS, Buffer, Schedule, Step, Transfer, make_dispatch, runs, split
from . import Op, register


@dataclass(frozen=True)
class MatmulParams:
    a_batch: int
    b_batch: int
    m: int
    k: int
    n: int

    @property
    def batch(self):
        return max(self.a_batch, self.b_batch)

    @property
    def flops(self):
        return 2 * self.batch * self.m * self.k * self.n

    def tag(self):
        return f"B{self.a_batch}x{self.b_batch}_M{self.m}_K{self.k}_N{self.n}"


@dataclass(frozen=True)
class MatmulPiece:
    b0: int
    b1: int
    r0: int
    r1: int
    c0: int
    c1: int


class MatmulOp(Op):
    def schedule(self, p, algorithm, limits, budget, choice, complete=True, safe=False):
        cap = limits.max_buffer_bytes
        al = kernels.KERNELS[choice["matmul"][0][0]].align
        lda = round_up(p.k, al)

        def sizes(sz):
            bb, rows, cols = sz["bb"], sz["rows"], round_up(sz["cols"], al)
            return ((bb if p.a_batch > 1 else 1) * rows * lda * FLOAT_BYTES,
                    (bb if p.b_batch > 1 else 1) * p.k * cols * FLOAT_BYTES, bb * rows * cols * FLOAT_BYTES)

        def over(sz):
            sa, sb, sc = sizes(sz)
            if max(sa, sb, sc) <= cap:
                return None
            if sa > cap or (sc > cap and sz["rows"] >= sz["cols"]):
                return ["bb", "rows", "cols"]
            return ["bb", "cols", "rows"]

        def fail(sz):
            raise VkconvtMemoryError(f"matmul: one row of K={p.k} floats ({p.k * FLOAT_BYTES} bytes) exceeds the "
                                     f"device's {cap}-byte storage buffers", p.k * FLOAT_BYTES, cap)

        g = split(dict(bb=p.batch, rows=p.m, cols=p.n), over, fail)
        sched = Schedule(self.name, p, algorithm, limits, dict(choice), budget=budget, safe=safe)
        sched.key = (self.name, p, limits, tuple(sorted(choice.items())))
        for b0, b1 in runs(p.batch, g["bb"]):
            for r0, r1 in runs(p.m, g["rows"]):
                for c0, c1 in runs(p.n, g["cols"]):
                    mr, nc, nbp = r1 - r0, c1 - c0, b1 - b0
                    ldb = round_up(nc, al)
                    loc = MatmulLocal(batch=nbp, M=mr, N=nc, K=p.k, lda=lda, ldb=ldb, ldc=ldb,
                                      a_batch_mod=nbp if p.a_batch > 1 else 1, a_batch_stride=mr * lda,
                                      b_batch_stride=p.k * ldb if p.b_batch > 1 else 0, c_batch_stride=mr * ldb,
                                      b_offset=0)
                    name, spec = kernels.pick("matmul", choice, loc, limits.device)
                    ab = (b0, b1) if p.a_batch > 1 else (0, 1)
                    bb = (b0, b1) if p.b_batch > 1 else (0, 1)
                    step = Step(MatmulPiece(b0, b1, r0, r1, c0, c1), [make_dispatch(name, loc, spec)])
                    step.uploads = (Transfer("a", "a", (ab, (r0, r1)), (0, p.k), lda, zero=True),
                                    Transfer("b", "b", (bb, (0, p.k)), (c0, c1), ldb, zero=True))
                    step.downloads = (Transfer("c", "out", ((b0, b1), (r0, r1)), (c0, c1), ldb),)
                    sched.steps.append(step)
        sa, sb, sc = (v // FLOAT_BYTES for v in sizes(g))
        sched.buffers = {"a": Buffer(sa), "b": Buffer(sb), "c": Buffer(sc, "out")}
        if complete:
            COUNTERS["schedules"] += 1
        return sched

    def numpy_features(self, p):
        return {"np_calls": 1.0, "np_mac": float(p.flops) / 2}

    def describe(self, p):
        return f"matmul {p.tag()}  ->  out ({p.batch}, {p.m}, {p.n}), {p.flops / 1e6:.1f} MFLOP"

    def out_array(self, p, sched=None):
        return np.empty((p.batch, p.m, p.n), dtype=np.float32)

    def reference(self, p, algorithm, args):
        return np.matmul(args["a"], args["b"]).astype(np.float32, copy=False)


OP = register(MatmulOp("matmul", ("default",), ("matmul",)))
