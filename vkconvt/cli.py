"""python -m vkconvt info | demo | explain | tune | bench"""
import argparse
import os
import sys

import numpy as np


def cmd_info(args):
    from . import backends, env, kernels, profile
    from .planner import spec_text
    from .vulkan import device, memory, shaders, vkinfo
    print("vkconvt", __import__("vkconvt").__version__, "  numpy", np.__version__)
    print("backends:")
    for row in backends.available():
        state = "available" if row["available"] else f"unavailable: {row['reason']}"
        print(f"  {row['name']:7s} {state}")
    try:
        default = backends.resolve_name(None)
        print(f"  default: {default}" + (f" (VKCONVT_BACKEND={env.default_backend()})" if env.default_backend() else ""))
    except ValueError as exc:
        print(f"  default: none: {exc}")
    try:
        devices = vkinfo.list_devices()
    except vkinfo.VulkanUnavailable as exc:
        print(f"Vulkan devices: none ({exc})")
        devices = ()
    if devices:
        try:
            chosen = device.resolve_device(None).index
        except (ValueError, TypeError, vkinfo.VulkanUnavailable) as exc:
            chosen = None
            print(f"VKCONVT_DEVICE is invalid: {exc}")
        layer = "" if env.validation_requested() else " (validation layer off; VKCONVT_VALIDATE=1 turns it on)"
        print("Vulkan devices:" + layer)
        for d in devices:
            mark = "*" if d.index == chosen else " "
            heaps = ", ".join(f"{size / 2**30:.1f} GiB{' device-local' if local else ''}" for size, local in d.heaps)
            print(f" {mark}{d.describe()}")
            print(f"     maxStorageBufferRange {d.max_storage_buffer_range} bytes, maxComputeWorkGroupCount "
                  f"{d.max_workgroup_count}, maxComputeWorkGroupSize {d.max_workgroup_size}, "
                  f"maxComputeWorkGroupInvocations {d.max_workgroup_invocations}")
            print(f"     push constants {d.max_push_constants_size} bytes, shared memory {d.max_shared_memory} bytes, "
                  f"subgroup size {d.subgroup_size} ({', '.join(d.subgroup_ops) or 'no operations'}), "
                  f"timestamps {'yes' if d.timestamps else 'no'} ({d.timestamp_period_ns} ns/tick), heaps: {heaps}")
            types = "; ".join(f"{i}: {memory.flag_names(f)} (heap {h})" for i, (f, h) in enumerate(d.memory_types))
            print(f"     memory types: {types}")
            mode = env.memory_mode() or device.default_memory(d)
            print(f"     buffers: memory mode {mode!r} ({'device-local, staged copies' if mode == 'device' else 'host-visible'}"
                  f"); chosen types: " + "; ".join(memory.describe(d, mode == "device")))
            prof = profile.load(d)
            print(f"     kernels ({'tuned on this device: ' if prof.tuned else 'shipped defaults: '}{prof.source}):")
            for op, entries in prof.choice_items:
                print(f"       {op:18s} " + ", ".join(f"{n}{spec_text(n, s)}" for n, s in entries))
        print("  (* = the default device: VKCONVT_DEVICE, else discrete > integrated > virtual > CPU)")
    print("kernels (shaders/<name>.comp -> vkconvt/spv/<name>.spv):")
    for k in kernels.KERNELS.values():
        try:
            state = f"{len(shaders.spirv(k.name))} bytes"
        except shaders.ShaderError as exc:
            state = f"UNUSABLE: {exc}"
        print(f"  {k.name:28s} {k.op:18s} {state}")
    return 0


def cmd_demo(args):
    """A real HiFi-GAN v1 upsampling layer on the default device, checked against NumPy (or, with
    --model hifigan, the whole HiFi-GAN V1 generator in PyTorch, alone and converted)."""
    if args.model == "hifigan":
        try:
            from .torch_models import run_hifigan_demo
        except ImportError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 2
        return run_hifigan_demo(device=args.device, algorithm=args.algorithm, seconds=args.seconds,
                                repeat=args.repeat, backend=args.backend)
    import vkconvt
    from . import backends, timing
    from .metrics import nmse
    from .params import params_from_shapes
    rng = np.random.default_rng(0)
    # HiFi-GAN v1 (22.05 kHz), first upsampling layer, one second of audio: 86 mel frames.
    n, c_in, l_in, c_out, k, stride, pad = 1, 512, 86, 256, 16, 8, 4
    x = rng.standard_normal((n, c_in, l_in)).astype(np.float32)
    w = (rng.standard_normal((c_in, c_out, k)) / np.sqrt(c_in * k)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    p, _ = params_from_shapes(x.shape, w.shape, stride, pad, bias=True)
    name = backends.resolve_name(args.backend)
    be = backends.get(name, device=args.device)
    print(f"layer: HiFi-GAN v1 ups[0]  x {x.shape}  weight {w.shape}  stride {stride} padding {pad}  "
          f"-> out (1, {c_out}, {p.l_out})  {p.flops / 1e6:.0f} MFLOP")
    print(f"backend: {name}  device: {be.describe()}")
    ref = vkconvt.conv_transpose1d(x, w, b, stride, pad, backend="numpy", algorithm="direct")
    runs = [(bname, algo) for algo in ("direct", "gemm", "auto") for bname in dict.fromkeys([name, "numpy"])
            if not (bname == "numpy" and algo == "auto")]
    fns = [lambda bname=bname, algo=algo: vkconvt.conv_transpose1d(
        x, w, b, stride, pad, algorithm=algo, backend=bname, device=args.device if bname != "numpy" else None)
        for bname, algo in runs]
    outs = [f() for f in fns]
    times = timing.interleaved(fns, budget_s=0.5, min_runs=args.repeat, max_runs=max(args.repeat, 20))
    print(f"{'backend':8s} {'algorithm':9s} {'median ms':>10s} {'GFLOP/s':>8s} {'nMSE vs numpy':>14s}")
    ok = True
    for (bname, algo), out, ts in zip(runs, outs, times):
        med, err, finite = float(np.median(ts)), nmse(out, ref), bool(np.isfinite(out).all())
        good = finite and err <= 1e-7
        ok &= good
        print(f"{bname:8s} {algo:9s} {med * 1e3:10.2f} {p.flops / med / 1e9:8.2f} {err:14.2e}{'' if good else '  WRONG'}")
    print("result: all outputs agree with the NumPy reference" if ok else "result: MISMATCH")
    return 0 if ok else 1


def cmd_explain(args):
    from .planner import plan
    try:
        print(plan(args.x, args.w, args.stride, args.padding, args.output_padding, args.groups, args.dilation,
                   bias=args.bias, algorithm=args.algorithm, backend=args.backend, device=args.device,
                   max_workspace_bytes=args.max_workspace).explain())
    except (ValueError, TypeError, MemoryError) as exc:
        print(f"explain: {exc}", file=sys.stderr)
        return 2
    return 0


def _shape(text):
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is comma-separated integers like 1,512,86; got {text!r}")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: 'python -m vkconvt demo: error: ...' and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"a positive number is needed, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value
    return parse


def _problem(args):
    """What is wrong with arguments argparse cannot check alone (the Vulkan device, a backend that
    cannot start here), in one line; None when nothing is."""
    from . import backends
    device, backend = getattr(args, "device", None), getattr(args, "backend", None)
    needs_vulkan = args.cmd == "tune" or device is not None or backend == "vulkan"
    if not needs_vulkan:
        return None
    reason = backends.vulkan_reason()
    if reason is not None:
        return f"{'--device ' + str(device) + ': ' if device is not None else ''}Vulkan is unavailable here ({reason})"
    if device is not None and backend == "numpy":
        return f"--device {device} needs the Vulkan backend, but --backend is numpy"
    try:
        backends.get("vulkan", device=device)
    except (ValueError, TypeError, backends.BackendUnavailable) as exc:
        return f"--device {device}: {exc}"
    return None


def build_parser():
    """The argument parser and its subcommands' parsers ({name: parser})."""
    from . import backends
    from .params import ALGORITHMS
    ap = _Parser(prog="python -m vkconvt", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    subs = {"info": sub.add_parser("info", help="backends, Vulkan devices with their limits, kernels")}
    d = subs["demo"] = sub.add_parser("demo", help="run a real layer (or --model hifigan) on the default device, "
                                                   "cross-checked")
    d.add_argument("--model", choices=("layer", "hifigan"), default="layer",
                   help="layer: HiFi-GAN v1 ups[0] against NumPy; hifigan: the HiFi-GAN V1 generator in PyTorch "
                        "alone and converted by vkconvt.torch")
    d.add_argument("--backend", default=None, choices=backends.CHOICES)
    d.add_argument("--device", default=None, help="Vulkan device: an index or a substring of its name")
    d.add_argument("--algorithm", default="auto", choices=ALGORITHMS,
                   help="the converted model's algorithm (--model hifigan; the layer demo runs all three)")
    d.add_argument("--seconds", type=_positive(float), default=1.0, help="seconds of audio (--model hifigan)")
    d.add_argument("--repeat", type=_positive(int), default=5)
    e = subs["explain"] = sub.add_parser("explain", help="print the plan of a conv_transpose1d call (algorithm, "
                                                         "kernels, chunks, bytes, why)")
    e.add_argument("--x", required=True, type=_shape, help="input shape, e.g. 1,512,86")
    e.add_argument("--w", required=True, type=_shape, help="weight shape (C_in, C_out/groups, K), e.g. 512,256,16")
    for name, default in (("stride", 1), ("padding", 0), ("output-padding", 0), ("groups", 1), ("dilation", 1)):
        e.add_argument(f"--{name}", type=int, default=default)
    e.add_argument("--bias", action="store_true")
    e.add_argument("--algorithm", default="auto", choices=ALGORITHMS)
    e.add_argument("--backend", default=None, choices=backends.CHOICES, help="auto: pick the faster backend")
    e.add_argument("--device", default=None, help="Vulkan device: an index or a substring of its name")
    e.add_argument("--max-workspace", default=None, help="workspace budget in bytes (suffixes K, M, G)")
    t = subs["tune"] = sub.add_parser("tune", help="calibrate the cost model of algorithm='auto' on a device")
    t.add_argument("--device", default=None, help="Vulkan device: an index or a substring of its name")
    t.add_argument("--quick", action="store_true", help="a third of the calibration set, the kernels' default specs")
    t.add_argument("--search", action="store_true", help="with --quick: search the kernels' specs all the same")
    t.add_argument("--out", default=None, help="write the fitted model here instead of the user cache")
    b = subs["bench"] = sub.add_parser("bench", help="benchmark against NumPy and PyTorch (see --help)")
    from .bench import cli as bench_cli
    bench_cli.add_arguments(b)
    return ap, subs


def main(argv=None):
    ap, subs = build_parser()
    args = ap.parse_args(argv)
    if args.cmd == "bench":
        if args.torch_threads is not None and args.torch_threads < 1:
            subs["bench"].error(f"--torch-threads must be >= 1, got {args.torch_threads}")
        try:
            if args.out:
                os.makedirs(args.out, exist_ok=True)
        except OSError as exc:
            subs["bench"].error(f"--out {args.out}: {exc.strerror or exc}")
    problem = _problem(args)
    if problem:
        subs[args.cmd].error(problem)
    if args.cmd == "info":
        return cmd_info(args)
    if args.cmd == "demo":
        return cmd_demo(args)
    if args.cmd == "explain":
        return cmd_explain(args)
    if args.cmd == "tune":
        from . import tune
        return tune.run(args)
    from .bench import cli as bench_cli
    return bench_cli.run(args)
