"""Metadata of a benchmark run and its summary tables (Markdown)."""
import datetime
import importlib.metadata
import math
import os
import platform
import re
import subprocess
import sys

import numpy as np

import vkconvt
from . import backward, gpu_path
from .judge import TOL, TOL_TF32
from .suites import SUITES

FIELDS = ("suite", "kind", "group", "case", "x", "tag", "flops", "calls", "impl", "library", "device",
          "algorithm", "chosen", "status", "error", "nmse", "runs", "first_s", "median_s", "min_s", "std_s",
          "gflops", "device_median_s", "workspace_bytes", "peak_bytes", "submissions", "fence_waits", "bytes_up",
          "bytes_down")
VK_ALGOS = ("vkconvt-direct", "vkconvt-gemm", "vkconvt-auto")
IMPL_ORDER = ("numpy",) + VK_ALGOS + ("vkconvt-matmul", "torch-cpu", "torch-cuda", "torch-cuda-tf32")


# ------------------------------------------------------------------------------------------ metadata
def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git():
    root = os.path.dirname(os.path.dirname(os.path.abspath(vkconvt.__file__)))
    if not os.path.exists(os.path.join(root, ".git")):
        return None, None
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None, None
    if head.returncode:
        return None, None
    return head.stdout.strip(), bool(dirty.stdout.strip())


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


DEVICE_FIELDS = dict(device="name", device_index="index", device_type="type", vulkan_api_version="api_version",
                     driver_name="driver_name", driver_info="driver_info", driver_version="driver_version")


def metadata(args, suite, be, vulkan_reason, torch_info, validation):
    info = be.dev.info if be is not None else None
    commit, dirty = _git()
    meta = {k: getattr(info, a, None) for k, a in DEVICE_FIELDS.items()}
    meta.update({
        "vulkan_unavailable": vulkan_reason, "validation_layer": validation,
        "suite": suite, "description": SUITES[suite][0], "batch": args.batch, "budget_s": args.budget,
        "tolerance_nmse": TOL, "tolerance_nmse_tf32": TOL_TF32,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": list(getattr(sys, "orig_argv", [sys.executable] + sys.argv)),
        "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_process": "a worker process of its own (bench/torchproc.py)" if torch_info else None,
        "torch_threads": (torch_info or {}).get("threads"), "torch_cuda": (torch_info or {}).get("cuda"),
        "versions": {"vkconvt": vkconvt.__version__, "kp": _version("kp"), "numpy": np.__version__,
                     "torch": (torch_info or {}).get("torch"), "python": platform.python_version()},
        "git_commit": commit, "git_dirty": dirty, "platform": platform.platform()})
    return meta


# ------------------------------------------------------------------------------------------ summary
def _index(records):
    return {(r["group"], r["case"], r["impl"]): r for r in records}


def _ms(rec):
    if rec is None:
        return "-"
    return f"{rec['median_s'] * 1e3:.2f}" if rec["status"] == "ok" else rec["status"].upper()


def _ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"


def _geomean(vals):
    vals = [v for v in vals if v]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else None


def _time(rec):
    return rec["median_s"] if rec is not None and rec["status"] == "ok" else None


def _baseline(records):
    return "torch-cpu" if any(r["impl"] == "torch-cpu" for r in records) else "numpy"


def _layer_groups(records):
    groups = {}
    for r in records:
        groups.setdefault(r["group"], {}).setdefault(r["case"], r)
    return groups


def model_table(records):
    base, idx = _baseline(records), _index(records)
    head = ["model", "layers", "GFLOP", "vkconvt auto ms", "NumPy ms", f"{base} ms", "NumPy/auto", f"{base}/auto",
            f"geomean {base}/direct", "geomean …/gemm", "geomean …/auto"]
    rows, everything = [], {}
    groups = _layer_groups(records)
    for model, layers in list(groups.items()) + [("all", None)]:
        if layers is None:
            layers = everything
        else:
            everything.update({(model, c): r for c, r in layers.items()})
            layers = {(model, c): r for c, r in layers.items()}

        def total(impl):
            ts = [(_time(idx.get(k + (impl,))), r["calls"]) for k, r in layers.items()]
            return None if any(t is None for t, _ in ts) else sum(t * c for t, c in ts)

        def geo(impl):
            return _geomean([(_time(idx.get(k + (base,))) or 0) / t if t else None
                             for k in layers for t in [_time(idx.get(k + (impl,)))]])
        gflop = sum((r.get("flops") or 0) * r["calls"] for r in layers.values()) / 1e9
        auto, npy, ref = total("vkconvt-auto"), total("numpy"), total(base)
        fmt = lambda t: f"{t * 1e3:.1f}" if t else "-"  # noqa: E731
        rows.append([f"**{model}**" if model == "all" else model, str(len(layers)), f"{gflop:.2f}", fmt(auto),
                     fmt(npy), fmt(ref), _ratio(npy, auto), _ratio(ref, auto)]
                    + [f"{g:.2f}" if g else "-" for g in (geo(a) for a in VK_ALGOS)])
    note = ("Times per forward pass (layer median × calls per forward), batch as in the metadata. Ratios are "
            "the other implementation's time / vkconvt's: above 1 means vkconvt is faster.")
    return "models", head, rows, note


def sweep_table(records, group):
    recs = [r for r in records if r["group"] == group]
    idx, base = _index(recs), _baseline(recs)
    head = ["case", "MFLOP", "direct ms", "gemm ms", "auto ms", "NumPy ms", f"{base} ms", "best vkconvt",
            f"{base}/auto"]
    rows = []
    for case, first in _layer_groups(recs)[group].items():
        get = lambda impl: idx.get((group, case, impl))  # noqa: E731
        auto = get("vkconvt-auto")
        best = min(((_time(get(a)), a[8:]) for a in VK_ALGOS[:2] if _time(get(a))), default=(None, "-"))[1]
        chosen = f" ({auto['chosen']})" if auto and auto.get("chosen") else ""
        rows.append([case, f"{(first.get('flops') or 0) / 1e6:.1f}", _ms(get("vkconvt-direct")),
                     _ms(get("vkconvt-gemm")), _ms(auto) + chosen,
                     _ms(get("numpy")), _ms(get(base)) if base != "numpy" else "-", best,
                     _ratio(_time(get(base)), _time(auto))])
    return group, head, rows, "Median wall time per call."


def matmul_table(records):
    idx = _index(records)
    head = ["M x K x N", "GFLOP", "vkconvt ms", "vkconvt GFLOP/s", "NumPy GFLOP/s", "fraction of NumPy",
            "torch-cpu GFLOP/s"]
    rows = []
    for case, first in _layer_groups(records)["matmul"].items():
        vk, npy, tc = (idx.get(("matmul", case, i)) for i in ("vkconvt-matmul", "numpy", "torch-cpu"))
        gf = lambda r: r.get("gflops") if r and r["status"] == "ok" else None  # noqa: E731
        fmt = lambda g, missing="-": f"{g:.2f}" if g else missing  # noqa: E731
        rows.append([case, f"{first['flops'] / 1e9:.3f}", _ms(vk), fmt(gf(vk), _ms(vk)), fmt(gf(npy)),
                     _ratio(gf(vk), gf(npy)), fmt(gf(tc))])
    note = "GFLOP/s from the median time (2·M·K·N flops); NumPy `a @ b` measured in the same run."
    return "matmul", head, rows, note


def auto_table(records):
    """How good auto's choice is: per conv shape, time of what auto ran / time of the faster of
    direct and gemm. 'choice' uses the chosen algorithm's own row (timing noise between two runs
    of the same kernel cancels out); 'measured' uses auto's own timed calls."""
    idx = _index(records)
    shapes = list(dict.fromkeys((r["group"], r["case"]) for r in records if r["kind"] != "matmul"))
    choice, measured = [], []
    for k in shapes:
        d, g = _time(idx.get(k + ("vkconvt-direct",))), _time(idx.get(k + ("vkconvt-gemm",)))
        auto = idx.get(k + ("vkconvt-auto",))
        if not (d and g and auto and _time(auto) and auto.get("chosen")):
            continue
        best = min(d, g)
        choice.append({"direct": d, "gemm": g}[auto["chosen"]] / best)
        measured.append(_time(auto) / best)
    head = ["judged by", "shapes", "within 10% of best", "share", "worst ratio", "geomean ratio"]
    rows = []
    for name, vals in (("auto's choice", choice), ("auto as measured", measured)):
        if vals:
            ok = sum(v <= 1.10 for v in vals)
            rows.append([name, str(len(vals)), str(ok), f"{ok / len(vals):.1%}", f"{max(vals):.2f}",
                         f"{_geomean(vals):.3f}"])
    note = ("Ratio = time of what auto ran / time of the faster of direct and gemm on the same shape. "
            "Target (issue 6): within 10% on at least 90% of the shapes, never above 1.5.")
    return "auto against the faster algorithm", head, rows, note


def overhead_table(records):
    idx = _index(records)
    head = ["case", "vkconvt call µs", "layer call µs", "trivial dispatch µs", "call / dispatch", "layer / dispatch"]
    rows = []
    for case in _layer_groups(records).get("overhead", {}):
        call, layer, triv = (_time(idx.get(("overhead", case, i))) for i in ("vkconvt-call", "vkconvt-layer",
                                                                              "trivial-dispatch"))
        us = lambda t: f"{t * 1e6:.1f}" if t else "-"  # noqa: E731
        rows.append([case, us(call), us(layer), us(triv), _ratio(call, triv), _ratio(layer, triv)])
    note = ("Median of interleaved calls in one process: the whole call of a tiny layer (validation, copy-in, "
            "pre-recorded sequences, copy-out) against one pre-recorded dispatch of a trivial shader. Target <= 1.5.")
    return "per-call overhead", head, rows, note


def _per_model(records):
    """[(model, {case: {impl: record}})] plus ("all", every layer)."""
    groups = {}
    for r in records:
        groups.setdefault(r["group"], {}).setdefault((r["group"], r["case"]), {})[r["impl"]] = r
    every = {k: v for layers in groups.values() for k, v in layers.items()}
    return list(groups.items()) + [("**all**", every)]


def float16_table(records):
    head = ["model", "layers", "gemm workspace f32 -> f16 (largest)", "peak f16/f32 direct", "peak f16/f32 gemm",
            "time f32/f16 direct", "time f32/f16 gemm"]
    rows = []
    for model, layers in _per_model(records):
        def ws(impl):
            vals = [(r.get(impl) or {}).get("workspace_bytes") for r in layers.values()]
            return max([v for v in vals if v is not None], default=None)

        def geo(f):
            return _geomean([f(r) for r in layers.values()])

        def peak(algo):
            return geo(lambda r: _div((r.get(f"vkconvt-{algo}-f16") or {}).get("peak_bytes"),
                                      (r.get(f"vkconvt-{algo}") or {}).get("peak_bytes")))

        def speed(algo):
            return geo(lambda r: _div(_time(r.get(f"vkconvt-{algo}")), _time(r.get(f"vkconvt-{algo}-f16"))))
        w32, w16 = ws("vkconvt-gemm"), ws("vkconvt-gemm-f16")
        fmt = lambda v: f"{v:.2f}" if v else "-"  # noqa: E731
        rows.append([model, str(len(layers)), f"{_mib(w32)} -> {_mib(w16)}", fmt(peak("direct")), fmt(peak("gemm")),
                     fmt(speed("direct")), fmt(speed("gemm"))])
    note = ("Per layer, float32 inputs against float16 inputs (float16 storage: x, weights and the gemm columns "
            "as packed halves; float32 arithmetic and output on the device). Peak: the device's own count of "
            "bytes held during the call; ratios are geomeans over the layers. Every float16 result was checked "
            "against the NumPy reference on the same float16 inputs (normalised MSE <= 1e-6).")
    return "float16 storage against float32", head, rows, note


def activation_table(records):
    head = ["model", "layers", "fused ms", "plain ms", "plain + NumPy passes ms", "plain + torch passes ms",
            "NumPy separate / fused", "torch separate / fused", "fused in the kernels"]
    rows = []
    for model, layers in _per_model(records):
        def total(*impls):
            ts = []
            for r in layers.values():
                t = [_time(r.get(i)) for i in impls]
                if any(v is None for v in t):
                    return None
                ts.append(sum(t) * next(iter(r.values()))["calls"])
            return sum(ts)
        fused, plain = total("vkconvt-fused"), total("vkconvt-plain")
        sep_np, sep_t = total("separate-numpy"), total("vkconvt-plain", "torch-passes")
        n_fused = sum((r.get("vkconvt-fused") or {}).get("chosen") == "fused" for r in layers.values())
        fmt = lambda t: f"{t * 1e3:.1f}" if t else "-"  # noqa: E731
        rows.append([model, str(len(layers)), fmt(fused), fmt(plain), fmt(sep_np), fmt(sep_t), _ratio(sep_np, fused),
                     _ratio(sep_t, fused), f"{n_fused}/{len(layers)}"])
    note = ("Times per forward pass. fused: leaky ReLU (slope 0.1) on the input as it is loaded and Snake (random "
            "per-channel alpha) on the output in the kernel that writes it; plain: the layer alone (its input "
            "already leaky-ReLU'd, no activation); separate: the plain layer with both activations as passes of "
            "their own, in NumPy (timed here) or in PyTorch (its passes timed in its worker process, added to the "
            "plain layer's time). Ratios above 1: fusing is faster. 'fused in the kernels': layers whose schedule "
            "applies the activation in the kernel (the others apply it on the host after accumulating chunks).")
    return "fused activations against separate passes", head, rows, note


def _div(a, b):
    return a / b if a and b else None


def _mib(n):
    return f"{n / 2**20:.1f} MiB" if n else "-"


def _tag_int(tag, key):
    m = re.search(rf"_{key}(\d+)", "_" + (tag or ""))
    return int(m.group(1)) if m else None


def target_rows(records):
    """The speed issue's figures from this run: [(figure, value, target)]."""
    idx, rows = _index(records), []
    models = [r for r in records if r["kind"] == "model" and r["impl"] == "vkconvt-auto"]
    base = "torch-cpu"

    def ratio(r, impl="vkconvt-auto", ref=base):
        a, b = _time(idx.get((r["group"], r["case"], ref))), _time(idx.get((r["group"], r["case"], impl)))
        return a / b if a and b else None
    if models:
        g = _geomean([ratio(r) for r in models])
        rows.append(("models suite, geomean PyTorch-CPU / vkconvt auto", f"{g:.2f}" if g else "-", ">= 0.35"))
        hifi = [(r["case"], ratio(r)) for r in models if r["group"] == "hifigan_v1"]
        rows.append(("dense HiFi-GAN v1 layers, each", ", ".join(f"{c} {v:.2f}" for c, v in hifi if v) or "-",
                     ">= 0.40"))
        dw = [ratio(r) for r in models if _tag_int(r["tag"], "g") and _tag_int(r["tag"], "g") == _tag_int(r["tag"], "Ci")
              and _tag_int(r["tag"], "g") > 1]
        g = _geomean(dw)
        rows.append((f"depthwise layers ({len(dw)}), geomean", f"{g:.2f}" if g else "-", ">= 0.30"))
        dg = [ratio(r, "vkconvt-direct", "vkconvt-gemm") for r in models]
        dg = [1 / v for v in dg if v]     # direct time / gemm time
        if dg:
            rows.append(("direct / gemm time, share of model layers <= 1.0 (worst)",
                         f"{sum(v <= 1.0 for v in dg) / len(dg):.0%} (worst {max(dg):.2f})", ">= 95%, worst <= 1.2"))
    mm = {r["case"]: r for r in records if r["kind"] == "matmul" and r["impl"] == "vkconvt-matmul"}
    fr = [(c, ratio(r, "vkconvt-matmul", "numpy")) for c, r in mm.items()
          if c in ("1024x1024x1024", "4096x512x86", "1024x256x688", "256x128x5504")]
    if fr:
        rows.append(("matmul shader / NumPy a @ b", ", ".join(f"{c} {v:.2f}" if v else f"{c} -" for c, v in fr),
                     ">= 0.18"))
    for case in _layer_groups(records).get("overhead", {}):
        call, triv = (_time(idx.get(("overhead", case, i))) for i in ("vkconvt-call", "trivial-dispatch"))
        rows.append(("tiny call / one pre-recorded trivial dispatch", _ratio(call, triv), "<= 1.5"))
    return rows


def targets_table(records):
    head = ["figure", "this run", "target"]
    note = ("Ratios above 1 mean vkconvt is faster. PyTorch CPU ran in a worker process of its own; every "
            "vkconvt result was checked against the NumPy reference.")
    return "speed targets", head, [list(r) for r in target_rows(records)], note


def summary_tables(records):
    tables = []
    kinds = {r["kind"] for r in records}
    if target_rows(records):
        tables.append(targets_table(records))
    if kinds & {"model", "sweep"}:
        tables.append(auto_table(records))
    if "model" in kinds:
        tables.append(model_table([r for r in records if r["kind"] == "model"]))
    for group in dict.fromkeys(r["group"] for r in records if r["kind"] in ("sweep", "user")):
        tables.append(sweep_table(records, group))
    if "overhead" in kinds:
        tables.append(overhead_table(records))
    if "matmul" in kinds:
        tables.append(matmul_table([r for r in records if r["kind"] == "matmul"]))
    if "float16" in kinds:
        tables.append(float16_table([r for r in records if r["kind"] == "float16"]))
    if "activation" in kinds:
        tables.append(activation_table([r for r in records if r["kind"] == "activation"]))
    for kind, table in (("backward", backward.backward_table), ("chain", gpu_path.chain_table),
                        ("gpu-model", gpu_path.model_table)):
        if kind in kinds:
            tables.append(table(records))
    if any(r.get("submissions") is not None for r in records if r["kind"] not in ("chain", "gpu-model")):
        tables.append(submissions_table(records))
    if any(r.get("first_s") for r in records if r["library"] == "vkconvt"):
        tables.append(first_call_table(records))
    return tables


def first_call_table(records):
    """The first call of each case (its pipelines compiled, its call recorded) against the repeated one."""
    head = ["impl", "cases", "first call median ms", "first call max ms", "first / repeated (median)"]
    by = {}
    for r in records:
        if r["library"] == "vkconvt" and r.get("first_s") and r.get("median_s") and r["status"] == "ok":
            by.setdefault(r["impl"], []).append(r)
    rows = []
    for impl, rs in by.items():
        first = sorted(r["first_s"] for r in rs)
        ratio = sorted(r["first_s"] / r["median_s"] for r in rs)
        rows.append([impl, str(len(rs)), f"{first[len(first) // 2] * 1e3:.1f}", f"{first[-1] * 1e3:.1f}",
                     f"{ratio[len(ratio) // 2]:.1f}"])
    note = ("The first call of a case in this process: planning, buffers, pipeline creation (the driver compiles; "
            "its disk cache keeps the code for later processes) and recording. The benchmark clears the device's "
            "buffers before each algorithm, so pipelines compiled by an earlier case are reused where shared.")
    return "first call", head, rows, note


def submissions_table(records):
    """Queue submissions of one repeated call per case (from the device's counters), per implementation."""
    head = ["impl", "calls", "with 1 submission", "most submissions", "fence waits = submissions"]
    by = {}
    for r in records:
        if r.get("submissions") is not None and r["kind"] not in ("chain", "gpu-model"):
            by.setdefault(r["impl"], []).append(r)
    rows = [[impl, str(len(rs)), str(sum(r["submissions"] == 1 for r in rs)), str(max(r["submissions"] for r in rs)),
             "yes" if all(r["submissions"] == r["fence_waits"] for r in rs) else "NO"] for impl, rs in by.items()]
    note = ("One repeated call of each case (the second). More than one submission only where a problem is cut into "
            "pieces that share buffers (explain says so); results.json has each call's bytes up and down.")
    return "queue submissions per call", head, rows, note



def markdown(tables, meta):
    lines = [f"Device: {meta['device']} ({meta['device_type']}, Vulkan {meta['vulkan_api_version']}, "
             f"{meta['driver_name']} {meta['driver_info']}); CPU: {meta['cpu_model']} × {meta['cpu_count']}; "
             f"vkconvt {meta['versions']['vkconvt']}, torch {meta['versions']['torch']}, "
             f"numpy {meta['versions']['numpy']}; validation layer {'on' if meta['validation_layer'] else 'off'}.", ""]
    for title, head, rows, note in tables:
        widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
        line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
        lines += [f"### {title}", "", line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        lines += [line(r) for r in rows] + ["", note, ""]
    return "\n".join(lines)
