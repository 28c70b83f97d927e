#!/usr/bin/env python3
"""Every issue-19 kernel (and its float16 twin) against the NumPy references, over the case table
of conv1d_kit.py, through raw kp on the first Vulkan device (lavapipe here).

    python scripts/conv1d_kit_check.py [--only SUBSTRING] [--json PATH]

Check ids read <what>/<kernel>/<case id>[/<variant>]:
  conv1d/<k>/<case>              a direct kernel (conv1d, conv1d_sg, conv1d_tiled and _f16 twins);
                                 /tw5: output windows of 5 (many folded pieces); /act: leaky_relu on
                                 x and snake on the output; /gpu: conv1d_tiled with the tiles it
                                 picks for a large GPU; the sg kernels' cases are widened to the
                                 channels per group they take (see widened())
  gemm/<matmul>/<case>[/tw5]     im2col_1d -> matmul (portable or sg) -> bias_act_1d, per window
  im2col/<layout>/<case>         the column buffer itself, rows (ci, k) or transposed
  grad_weight/<k>/<case>[/lx5]   conv1d_grad_weight, whole or in input chunks of 5 (accumulating);
                                 /act: with leaky_relu on x; gemm_<matmul>: the matmul route
                                 (im2col_1d transposed + matmul, batch of one); /gpu: the tiled
                                 kernel with a large GPU's tiles
Each check passes when the output is finite and its normalised MSE is within TOL of its storage.
tests/test_conv1d_kit.py runs this script once in a subprocess (one kp.Manager per process) and
turns every check into a test.
"""
import argparse
import json
import os
import sys
import time
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conv1d_kit as kit  # noqa: E402
from conv1d_kit import CASES, TOL, halves, ref  # noqa: E402

from vkconvt import activations  # noqa: E402

DIRECT = ("conv1d", "conv1d_sg", "conv1d_tiled")
MATMUL = ("matmul", "matmul_sg")
GRAD_WEIGHT = ("conv1d_grad_weight", "conv1d_grad_weight_sg", "conv1d_grad_weight_tiled")
ACT_CASES = ("N2_Ci32_Co48_L64_K8_s4_p2_bias", "Ci24_Co20_L300_K11_p25_d5_bias", "Ci4_Co8_L10_K3_g4")
BY_ID = {c.id: c for c in CASES}
# the tiled kernels' tiles for a large GPU (48 KiB shared memory, 1024 invocations, 32 lanes): their
# shared memory (at most 24 KiB) fits lavapipe, so the GPU tiling runs and is checked here too
LARGE_GPU = kit.base.Device("gpu", 49152, 1024, 32, ("basic", "shuffle"))


def widened(case, name):
    """The sg kernels decline narrow groups: conv1d_sg fewer than 8 output channels per group,
    conv1d_grad_weight_sg (on the transposed conv: c_out in, c_in out) fewer than 8 in or 4 out."""
    g = case.groups
    if name.startswith("conv1d_sg"):
        return replace(case, c_out=max(case.c_out, 8 * g))
    if name.startswith("conv1d_grad_weight_sg"):
        return replace(case, c_out=max(case.c_out, 8 * g), c_in=max(case.c_in, 4 * g))
    return case


def check_ids():
    """Every check, in order (no device needed)."""
    ids = []
    for c in CASES:
        for f16 in ("", "_f16"):
            ids += [f"conv1d/{k}{f16}/{c.id}" for k in DIRECT]
            ids += [f"gemm/{m}{f16}/{c.id}" for m in MATMUL]
            ids += [f"grad_weight/{k}{f16}/{c.id}" for k in GRAD_WEIGHT]
            if not c.huge:
                ids += [f"im2col/{lay}{f16}/{c.id}" for lay in ("rows", "transposed")]
        if c.n == 1 and not c.huge:
            ids += [f"grad_weight/gemm_{m}/{c.id}" for m in MATMUL]
        ids += [f"conv1d/{k}/{c.id}/tw5" for k in DIRECT] + [f"gemm/matmul_sg/{c.id}/tw5"]
        ids += [f"conv1d/conv1d_tiled{f16}/{c.id}/gpu" for f16 in ("", "_f16")]
        ids += [f"grad_weight/conv1d_grad_weight_tiled{f16}/{c.id}/gpu" for f16 in ("", "_f16")]
        ids += [f"grad_weight/{k}/{c.id}/lx5" for k in GRAD_WEIGHT]
        if c.id in ACT_CASES:
            ids += [f"conv1d/{k}{f16}/{c.id}/act" for k in DIRECT for f16 in ("", "_f16")]
            ids += [f"grad_weight/{k}/{c.id}/act" for k in GRAD_WEIGHT]
    return ids


def epilogue(c_out, seed=3):
    """leaky_relu(0.1) on x, snakebeta on the output (per-channel alpha, beta), as a fused layer does."""
    rng = np.random.default_rng(seed)
    return activations.check(c_out, "snakebeta", alpha=rng.uniform(0.5, 1.5, c_out),
                             beta=rng.uniform(0.5, 1.5, c_out), input_activation="leaky_relu",
                             input_negative_slope=0.1)


def f64(a):
    return None if a is None else a.astype(np.float64)


def run_check(r, cid):
    """(normalised MSE, tolerance, finite) of one check."""
    what, kern, cid_case, *variant = cid.split("/")
    variant = variant[0] if variant else ""
    f16 = kern.endswith("_f16")
    storage = "float16" if f16 else "float32"
    store = halves if f16 else (lambda a: a)
    case = widened(BY_ID[cid_case], kern)
    x, w, b = case.inputs()
    hyper = case.hyper()
    if what == "im2col":
        col = kit.read_col(kit.im2col_plan(r, x, case.k, case.stride, case.padding, case.dilation, case.l_out,
                                           kern.startswith("transposed"), case.groups, storage), storage)
        want = ref.im2col_1d(store(x), case.k, case.stride, case.padding, case.dilation)
        g, cpg = case.groups, case.c_in // case.groups
        want = want.reshape(case.n * g, cpg * case.k, case.l_out)
        got = col[:, :case.l_out, :cpg * case.k].transpose(0, 2, 1) if kern.startswith("transposed") \
            else col[:, :, :case.l_out]
        return score(got, want, storage)
    if what == "grad_weight":
        rng = np.random.default_rng(1)
        xt = rng.standard_normal((case.n, case.c_out, case.l_out)).astype(np.float32)
        go = rng.standard_normal((case.n, case.c_in, case.l)).astype(np.float32)
        epi = epilogue(case.c_in)[0] if variant == "act" else activations.NONE
        if kern.startswith("gemm_"):
            got = kit.grad_weight_gemm_plan(r, xt, go, case.k, *hyper, matmul=kern[5:]).result()
        else:
            got = kit.grad_weight_plan(r, xt, go, case.k, *hyper, epi=epi, max_lx=5 if variant == "lx5" else None,
                                       name=kern.replace("_f16", ""), storage=storage,
                                       dev=LARGE_GPU if variant == "gpu" else None).result()
        xin = activations.apply_input(store(xt), epi)
        return score(got, ref.conv_transpose1d_grad_weight(f64(xin), f64(store(go)), case.k, *hyper), storage)
    epi, params = epilogue(case.c_out) if variant == "act" else (activations.NONE, None)
    max_tw = 5 if variant == "tw5" else None
    if what == "gemm":
        got = kit.conv1d_gemm_plan(r, x, w, b, *hyper, epi=epi, act_params=params, max_tw=max_tw,
                                   matmul=kern.replace("_f16", ""), storage=storage).result()
    else:
        dev = LARGE_GPU if variant == "gpu" else None
        got = kit.conv1d_plan(r, kern, x, w, b, *hyper, epi=epi, act_params=params, max_tw=max_tw, dev=dev).result()
    want = ref.conv1d_direct(f64(activations.apply_input(store(x), epi)), f64(store(w)), f64(b), *hyper)
    if epi.act:
        want = activations.apply(want, epi, params.astype(np.float64))
    return score(got, want, storage)


def score(got, want, storage):
    assert got.shape == want.shape, (got.shape, want.shape)
    finite = bool(np.isfinite(got).all())
    err = float(np.sum((got - want) ** 2) / max(float(np.sum(want ** 2)), 1e-30))
    return err, TOL[storage], finite


def run_all(only=None):
    """{check id: {"status": pass/fail/skip/error, "nmse", "tol", "detail"}}."""
    r = kit.Runner()
    out = {}
    for cid in check_ids():
        if only and only not in cid:
            continue
        t0 = time.perf_counter()
        r.forget()
        try:
            err, tol, finite = run_check(r, cid)
            ok = finite and err <= tol
            out[cid] = dict(status="pass" if ok else "fail", nmse=err, tol=tol,
                            detail="" if finite else "NaN or inf in the output")
        except ValueError as exc:       # a kernel that declines the problem (choose() -> None)
            out[cid] = dict(status="skip", detail=str(exc))
        except Exception as exc:  # noqa: BLE001 - reported per check
            out[cid] = dict(status="error", detail=f"{type(exc).__name__}: {exc}")
        out[cid]["seconds"] = round(time.perf_counter() - t0, 3)
    return r.info.name, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="run the checks whose id contains this")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    device, res = run_all(args.only)
    counts = {}
    for cid, row in res.items():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        if row["status"] != "pass":
            print(f"{row['status']:5s} {cid}: {row.get('nmse', '')} {row['detail']}")
    print(f"{device}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "results": res}, f, indent=1)
    return 0 if not counts.get("fail") and not counts.get("error") else 1


if __name__ == "__main__":
    sys.exit(main())
