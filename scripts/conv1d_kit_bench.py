#!/usr/bin/env python3
"""Timings of the issue-19 kernels on real layer shapes, against each other and PyTorch CPU.

    python scripts/conv1d_kit_bench.py [--rounds 3] [--runs 3] [--only SUBSTRING]

Shapes: HiFi-GAN v1 resblock conv1d (C 256, K 3/7/11 with dilation 1/3/5, L 5504, 'same' padding),
the grad_input conv1d of HiFi-GAN ups[0] (grad_out (1, 256, 688), w (512, 256, 16), stride 8,
padding 4), and the weight gradients of ups[0] and of a resblock conv (computed as a transposed
conv's: conv1d's grad_w is conv_transpose1d's with x and grad_out swapped).
Kernels: conv1d (portable), conv1d_sg, conv1d_tiled, gemm (im2col_1d + matmul_sg + bias_act_1d);
conv1d_grad_weight (portable), conv1d_grad_weight_sg, conv1d_grad_weight_tiled, the matmul route (im2col_1d transposed +
matmul_sg).
PyTorch runs in a process of its own (spawned, OMP_WAIT_POLICY=PASSIVE, the main process idle
meanwhile). Each round times PyTorch, then every kernel interleaved (A B C A B C); a round's ratios
are medians over its runs, and the report gives the median over rounds: ratios, not absolute times,
are what this noisy 2-core machine can compare. Every kernel is first checked against PyTorch's output.
"""
import argparse
import multiprocessing as mp
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conv1d_kit as kit  # noqa: E402


def _serve(conn):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    conn.send(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        kind, arrays, hyper, runs = msg
        ts = [torch.from_numpy(a) for a in arrays]
        if kind == "conv1d":
            def fn():
                return torch.nn.functional.conv1d(ts[0], ts[1], None, *hyper)
        else:       # conv_transpose1d's weight gradient: x, grad_out, weight; hyper (s, p, d, op)
            s, p, d, op = hyper

            def fn():
                return torch.ops.aten.convolution_backward(ts[1], ts[0], ts[2], None, [s], [p], [d], True, [op], 1,
                                                           [False, True, False])[1]
        with torch.no_grad():
            out = fn().numpy()
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        conn.send((out, times))


class Torch:
    def __init__(self):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()
        self.info = self.conn.recv()

    def run(self, *msg):
        self.conn.send(msg)
        return self.conn.recv()

    def close(self):
        self.conn.send(None)
        self.proc.join(10)


def shapes():
    """(label, kind, arrays, hyper, {kernel: plan builder})."""
    rng = np.random.default_rng(0)
    out = []
    for k, d in ((3, 1), (7, 3), (11, 5)):
        x = rng.standard_normal((1, 256, 5504)).astype(np.float32)
        w = (rng.standard_normal((256, 256, k)) / 50).astype(np.float32)
        out.append((f"resblock conv1d C256 K{k} d{d} L5504", "conv1d", (x, w), (1, d * (k - 1) // 2, d)))
    go = rng.standard_normal((1, 256, 688)).astype(np.float32)
    w = (rng.standard_normal((512, 256, 16)) / 50).astype(np.float32)
    out.append(("ups[0] grad_input conv1d 256->512 K16 s8 p4 L688", "conv1d", (go, w), (8, 4, 1)))
    xt = rng.standard_normal((1, 512, 86)).astype(np.float32)
    out.append(("ups[0] grad_weight 512x256x16 s8 p4 (L86 -> 688)", "gw", (xt, go, w), (8, 4, 1, 0)))
    a, b = (rng.standard_normal((1, 256, 5504)).astype(np.float32) for _ in range(2))
    wr = np.zeros((256, 256, 3), np.float32)
    out.append(("resblock grad_weight 256x256x3 d1 L5504", "gw", (a, b, wr), (1, 1, 1, 0)))
    return out


def plans(r, kind, arrays, hyper):
    if kind == "conv1d":
        x, w = arrays
        s, p, d = hyper
        res = {name: (lambda name=name: kit.conv1d_plan(r, name, x, w, None, s, p, d)) for name in kit.CONV1D_KERNELS}
        res["gemm (im2col+matmul_sg+bias_act)"] = lambda: kit.conv1d_gemm_plan(r, x, w, None, s, p, d)
        return res
    x, go, w = arrays
    s, p, d, _ = hyper
    res = {name: (lambda name=name: kit.grad_weight_plan(r, x, go, w.shape[-1], s, p, d, name=name))
           for name in ("conv1d_grad_weight", "conv1d_grad_weight_sg", "conv1d_grad_weight_tiled")}
    res["gemm (im2col T + matmul_sg)"] = lambda: kit.grad_weight_gemm_plan(r, x, go, w.shape[-1], s, p, d)
    return res


def median(v):
    return float(np.median(v))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", help="shapes whose label contains this")
    args = ap.parse_args(argv)
    torch = Torch()           # before any Vulkan thread exists
    r = kit.Runner()
    print(f"device: {r.info.name}; {torch.info}; rounds {args.rounds} x runs {args.runs}")
    print("ratio = PyTorch time / kernel time (above 1: faster than PyTorch); vs portable = portable time / kernel time")
    for label, kind, arrays, hyper in shapes():
        if args.only and args.only not in label:
            continue
        want, _ = torch.run(kind, arrays, hyper, 1)
        built = {}
        for name, build in plans(r, kind, arrays, hyper).items():
            try:
                p = build()
            except ValueError as exc:
                print(f"  {name}: declined ({exc})")
                continue
            t0 = time.perf_counter()
            got = p.result()
            err = float(np.sum((got - want) ** 2) / np.sum(want ** 2))
            built[name] = p
            print(f"  [{label}] {name}: first call {time.perf_counter() - t0:.1f} s, nmse vs PyTorch {err:.1e}",
                  flush=True)
            assert err < 1e-6, f"{name} disagrees with PyTorch on {label}"
        ratios = {name: [] for name in built}
        for _ in range(args.rounds):
            time.sleep(0.3)
            _, tt = torch.run(kind, arrays, hyper, args.runs)
            time.sleep(0.3)
            times = {name: [] for name in built}
            for _ in range(args.runs):
                for name, p in built.items():
                    t0 = time.perf_counter()
                    p.run()
                    times[name].append(time.perf_counter() - t0)
            for name in built:
                ratios[name].append((median(tt) / median(times[name]), median(times[name])))
        port = next((n for n in built if n in ("conv1d", "conv1d_grad_weight")), None)
        print(f"{label}:")
        for name in built:
            rs = [a for a, _ in ratios[name]]
            vs = ""
            if port and name != port:
                vs = f", vs portable {median([b / a for (_, a), (_, b) in zip(ratios[name], ratios[port])]):.2f}x"
            print(f"  {name:34s} ratio {median(rs):5.2f} (rounds {', '.join(f'{v:.2f}' for v in rs)}){vs}; "
                  f"{1e3 * median([t for _, t in ratios[name]]):.1f} ms")
        sys.stdout.flush()
    torch.close()


if __name__ == "__main__":
    main()
