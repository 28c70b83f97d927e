"""How split-K changes the gemm path's matmul on a GPU, device-free: for every distinct layer of the
bench's models (vkconvt/data/model_layers.json) on a device of tests/device_limits.py (default the
H200), the matmul_tiled dispatch vkconvt chooses with split-K (the shipped default, ks up to 8) and
without it (ks=1, what tune's search also times): workgroups, accumulators per thread, slices and
the column buffers' bytes. A planning figure, not a speed: no GPU ran it.

    python scripts/split_k_report.py [--device "RX 7900 XTX"] [--all]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from device_limits import DEVICES  # noqa: E402
from gpu_compile import specs  # noqa: E402
from vkconvt import kernels, ops, params, planner, schedule  # noqa: E402


def matmul_of(conv, limits, ks):
    """(workgroups, accumulators per thread, slices, workspace bytes) of a layer's gemm schedule."""
    dev = specs.device(limits)
    lim = schedule.Limits(limits.max_buffer, dev)
    choice = kernels.default_choice("gpu")
    base = kernels.KERNELS["matmul_tiled"].defaults["gpu"]._replace(ks=ks)
    choice["matmul"] = ((("matmul_tiled", base),) + choice["matmul"][1:])
    p, _ = params.params_from_shapes((conv.n, conv.c_in, conv.l_in), (conv.c_in, conv.c_out // conv.groups, conv.k),
                                     conv.stride, conv.padding, 0, conv.groups, 1, False)
    sched = ops.get("conv_transpose1d").schedule(p, "gemm", lim, planner.resolve_budget(None), choice)
    mms = [d for st in sched.steps for d in st.dispatches if d.kernel == "matmul_tiled"]
    if not mms:
        return None
    d = max(mms, key=lambda d: d.spec.ks)
    return d.grid[0] * d.grid[1] * d.grid[2], d.spec.tm * 4 * d.spec.tn4, d.spec.ks, sched.workspace_bytes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="H200", help="a row of tests/device_limits.py")
    ap.add_argument("--all", action="store_true", help="every layer, not only those that split")
    args = ap.parse_args(argv)
    limits = next((d for d in DEVICES if d.name == args.device), None)
    if limits is None:
        ap.error(f"--device must be one of {', '.join(d.name for d in DEVICES)}; got {args.device!r}")
    print(f"gemm path on {limits.name} (limits only; want {kernels.gpu.MIN_WORKGROUPS['large' if limits.large else 'small']}"
          " workgroups): matmul_tiled without split-K -> with it")
    print("| layer | workgroups | accumulators per thread | slices | column buffers |")
    print("|---|---|---|---|---|")
    layers = specs.bench_layers()
    split = kept_tile = 0
    for conv in layers:
        a, b = matmul_of(conv, limits, 1), matmul_of(conv, limits, kernels.KERNELS["matmul_tiled"].defaults["gpu"].ks)
        if a is None or b is None:
            continue
        split += b[2] > 1
        kept_tile += b[2] > 1 and b[1] > a[1]
        if b[2] > 1 or args.all:
            print(f"| {conv.label} | {a[0]} -> {b[0]} | {a[1]} -> {b[1]} | {b[2]} | "
                  f"{planner.fmt_bytes(a[3])} -> {planner.fmt_bytes(b[3])} |")
    print(f"\n{split} of {len(layers)} distinct layers split their reduction; {kept_tile} of them keep a larger "
          "register tile than without split-K")
    return 0


if __name__ == "__main__":
    sys.exit(main())
