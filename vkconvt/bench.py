"""python -m vkconvt bench [SUITE]: vkconvt against its NumPy backend and PyTorch, case by case.

Suites (the SUITES table): `models`, the real layers of vkconvt/data/model_layers.json; five sweeps
that vary one dimension over powers of two; `matmul`; `quick`, a handful of small cases of each.
Every case runs on every implementation in the same process: vkconvt direct / gemm / auto on the
Vulkan device, the NumPy backend (the reference), PyTorch CPU float32 and, when CUDA is there,
PyTorch CUDA float32 with TF32 off and on.

Per case and implementation: one warm-up call whose result is checked against the NumPy backend
(finite and normalised MSE mean((a-b)^2)/mean(b^2) <= 1e-7), then timed calls (time.perf_counter;
median, min, std): at least 3, only 2 when one call takes longer than --budget seconds. The
Vulkan algorithms are timed last, interleaved (direct, gemm, auto, direct, ...), after a short
pause that lets the CPU libraries' spinning worker threads park. A wrong
result is a failure, never a time. Vulkan rows also carry the device time of the same calls
(Vulkan timestamps), the gemm column buffer and the peak device memory of that algorithm.
Writes results.json (metadata + records), results.csv, summary.md and PNG plots to --out.
"""
import argparse
import csv
import datetime
import functools
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

import vkconvt
from . import backends, env, timing
from .params import params_from_shapes

TOL = 1e-7          # normalised MSE against the NumPy backend
TOL_TF32 = 1e-5     # TF32 rounds the operands to 10 mantissa bits
MAX_RUNS = 50
DATA = os.path.join(os.path.dirname(vkconvt.__file__), "data", "model_layers.json")
CONV_KEYS = ("c_in", "c_out", "kernel", "stride", "padding", "output_padding", "groups", "dilation", "bias",
             "l_in")
SWEEP_FIXED = dict(output_padding=0, groups=1, dilation=1, bias=False)
FIELDS = ("suite", "kind", "group", "case", "x", "tag", "flops", "calls", "impl", "library", "device",
          "algorithm", "chosen", "status", "error", "nmse", "runs", "first_s", "median_s", "min_s", "std_s",
          "gflops", "device_median_s", "workspace_bytes", "peak_bytes")
VK_ALGOS = ("vkconvt-direct", "vkconvt-gemm", "vkconvt-auto")
IMPL_ORDER = ("numpy",) + VK_ALGOS + ("vkconvt-matmul", "torch-cpu", "torch-cuda", "torch-cuda-tf32")


# ------------------------------------------------------------------------------------------ cases
@dataclass
class Case:
    kind: str                # "model", "sweep" or "matmul"
    group: str               # model name, sweep name or "matmul"
    name: str                # layer name, "c_in=64", "4096x512x86"
    x: int = 0               # layer index, swept value, or matmul M
    conv: dict = None        # CONV_KEYS -> value
    mnk: tuple = None        # (M, K, N)
    calls: int = 1           # calls per forward pass (model layers)

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
    return [Case("model", lay["model"], lay["name"], lay["layer"], {k: lay[k] for k in CONV_KEYS},
                 calls=lay.get("calls_per_forward", 1))
            for lay in data["layers"] if not wanted or lay["model"] in wanted]


def sweep(dim, values, **fixed):
    def cases(args, suite):
        return [Case("sweep", suite, f"{dim}={v}", v, {**SWEEP_FIXED, **fixed, dim: v}) for v in values]
    return cases


def matmul_cases(args, suite=None):
    shapes = [(s, s, s) for s in (256, 512, 1024, 2048)] + [(4096, 512, 86), (1024, 256, 688), (256, 128, 5504),
                                                           (6144, 768, 696)]
    return [Case("matmul", "matmul", f"{m}x{k}x{n}", m, mnk=(m, k, n)) for m, k, n in shapes]


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
    return picked[False] + picked[True] + sweeps + matmul_cases(args)[:1]


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
    "sweeps": ("the five sweeps", lambda args, suite: [c for n in SWEEPS for c in SUITES[n][1](args, n)]),
    "all": ("models and the five sweeps (the shapes auto is judged on)",
            lambda args, suite: model_cases(args) + SUITES["sweeps"][1](args, "sweeps")),
    "quick": ("a handful of small cases of every kind (same as --quick)", quick_cases),
}


# ------------------------------------------------------------------------------------------ implementations
@dataclass
class Impl:
    name: str
    library: str
    device: str
    algorithm: str
    prepare: object          # (arrays, hyper) -> (run, fetch): run() computes, fetch(result) -> numpy
    vulkan: bool = False
    tol: float = TOL


def host(fn):
    return lambda arrays, hyper: ((lambda: fn(*arrays, *hyper)), (lambda out: out))


def torch_op(torch, op, device, tf32=False):
    def prepare(arrays, hyper):
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        ts = [None if a is None else torch.from_numpy(a).to(device) for a in arrays]
        sync()

        def run():
            with torch.no_grad():
                out = op(*ts, *hyper)
            sync()
            return out
        return run, lambda out: out.cpu().numpy()
    return prepare


def implementations(conv, be, device, torch):
    """The NumPy reference first, then vkconvt on Vulkan, then PyTorch."""
    if conv:
        impls = [Impl("numpy", "vkconvt", "cpu", "direct",
                      host(functools.partial(vkconvt.conv_transpose1d, algorithm="direct", backend="numpy")))]
    else:
        impls = [Impl("numpy", "numpy", "cpu", "a @ b", host(np.matmul))]
    if be is not None:
        label = be.dev.info.name
        if conv:
            impls += [Impl(f"vkconvt-{a}", "vkconvt", label, a, vulkan=True, prepare=host(functools.partial(
                vkconvt.conv_transpose1d, algorithm=a, backend="vulkan", device=device)))
                for a in ("direct", "gemm", "auto")]
        else:
            impls.append(Impl("vkconvt-matmul", "vkconvt", label, "matmul", vulkan=True,
                              prepare=host(functools.partial(vkconvt.matmul, backend="vulkan", device=device))))
    if torch is not None:
        op = torch.nn.functional.conv_transpose1d if conv else torch.matmul
        impls.append(Impl("torch-cpu", "torch", "cpu", "float32", torch_op(torch, op, "cpu")))
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
            impls.append(Impl("torch-cuda", "torch", gpu, "float32", torch_op(torch, op, "cuda")))
            impls.append(Impl("torch-cuda-tf32", "torch", gpu, "tf32", torch_op(torch, op, "cuda", True), tol=TOL_TF32))
    return impls


# ------------------------------------------------------------------------------------------ measuring
def nmse(out, ref):
    out = np.asarray(out)
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} differs from the reference's {ref.shape}")
    d = out.astype(np.float64) - ref
    num, den = float(np.mean(d * d)), float(np.mean(ref.astype(np.float64) ** 2))
    return num / den if den > 0 else (0.0 if num == 0 else math.inf)


def check(impl, arrays, hyper, ref, be):
    """Warm-up call of one implementation, checked against the reference (None: this is the
    reference). Returns (record fields, output, run); run is None when the result is not ok."""
    rec = dict(impl=impl.name, library=impl.library, device=impl.device, algorithm=impl.algorithm, status="ok")
    dev = be.dev if impl.vulkan else None
    try:
        run, fetch = impl.prepare(arrays, hyper)
        if dev is not None:
            dev.clear()          # drop cached plans so that this algorithm's peak memory is its own
            dev.reset_peak()
        t0 = time.perf_counter()
        out = fetch(run())
        rec.update(first_s=time.perf_counter() - t0, nmse=0.0 if ref is None else nmse(out, ref))
        if dev is not None:
            rec["peak_bytes"] = dev.peak_bytes
            if len(arrays) == 3:
                rec["workspace_bytes"] = be.last_plan.workspace_bytes
        if not np.isfinite(out).all():
            rec.update(status="non-finite", error="the result has NaN or Inf")
        elif rec["nmse"] > impl.tol:
            rec.update(status="wrong", error=f"normalised MSE {rec['nmse']:.3g} > {impl.tol:g}")
        return rec, out, (run if rec["status"] == "ok" else None)
    except Exception as exc:  # one failing case or implementation must not stop the run
        rec.update(status="error", error=f"{type(exc).__name__}: {exc}")
        return rec, None, None


def time_runs(entries, budget, be=None):
    """Timed calls of several implementations, interleaved (timing.interleaved). entries:
    [(rec, run)]; fills the records with runs, median, min, std (and device time for Vulkan)."""
    if not entries:
        return
    device_ns = [[] for _ in entries]

    def device_time(i):
        if be is not None and entries[i][0].get("workspace_bytes") is not None:
            device_ns[i].append(be.last_plan.last_device_ns)
    times = timing.interleaved([run for _, run in entries], budget, 3, MAX_RUNS,
                               slow_s=max(rec["first_s"] for rec, _ in entries), after_each=device_time)
    for (rec, _), ts, dns in zip(entries, times, device_ns):
        rec.update(runs=len(ts), median_s=float(np.median(ts)), min_s=min(ts), std_s=float(np.std(ts)))
        if dns:
            rec["device_median_s"] = float(np.median(dns)) / 1e9 or None


def bench_case(case, index, suite, args, be, torch):
    base = dict(suite=suite, kind=case.kind, group=case.group, case=case.name, x=case.x, calls=case.calls)
    try:
        arrays, flops, tag = case.build(args.batch if case.conv else 1, seed=index)
    except Exception as exc:
        return [dict(base, impl="-", status="error", error=f"{type(exc).__name__}: {exc}")]
    base.update(tag=tag, flops=flops)
    records, ref, vulkan = [], None, []
    for impl in implementations(case.conv is not None, be, args.device, torch):
        if impl.name != "numpy" and ref is None:
            rec, run = dict(impl=impl.name, status="error", error="no reference: the NumPy backend failed"), None
        else:
            rec, out, run = check(impl, arrays, case.hyper(), ref, be)
            if impl.name == "numpy" and run is not None:
                ref = out.astype(np.float64)
        if impl.name == "vkconvt-auto":
            x, w, b = arrays
            rec["chosen"] = vkconvt.plan(x.shape, w.shape, *case.hyper(), bias=b is not None, backend="vulkan",
                                         device=args.device).algorithm
        records.append(rec)
        if run is not None and impl.vulkan:
            vulkan.append((rec, run))
        elif run is not None:
            time_runs([(rec, run)], args.budget)
    # The CPU libraries' worker threads (OpenBLAS, OpenMP) spin for a while after a call and would
    # slow whichever Vulkan algorithm ran next on 2 cores: let them park, then time the Vulkan
    # algorithms side by side.
    timing.settle()
    time_runs(vulkan, args.budget, be)
    for rec in records:
        if rec.get("median_s"):
            rec["gflops"] = flops / rec["median_s"] / 1e9
    return [{**base, **rec} for rec in records]


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


def metadata(args, suite, be, vulkan_reason, torch, validation):
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
        "torch_threads": torch.get_num_threads() if torch else None,
        "torch_cuda": torch.cuda.get_device_name(0) if torch and torch.cuda.is_available() else None,
        "versions": {"vkconvt": vkconvt.__version__, "kp": _version("kp"), "numpy": np.__version__,
                     "torch": torch.__version__ if torch else None, "python": platform.python_version()},
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
    head = ["case", "MFLOP", "direct ms", "gemm ms", "auto ms", "NumPy ms", f"{base} ms", "best vkconvt"]
    rows = []
    for case, first in _layer_groups(recs)[group].items():
        get = lambda impl: idx.get((group, case, impl))  # noqa: E731
        auto = get("vkconvt-auto")
        best = min(((_time(get(a)), a[8:]) for a in VK_ALGOS[:2] if _time(get(a))), default=(None, "-"))[1]
        chosen = f" ({auto['chosen']})" if auto and auto.get("chosen") else ""
        rows.append([case, f"{(first.get('flops') or 0) / 1e6:.1f}", _ms(get("vkconvt-direct")),
                     _ms(get("vkconvt-gemm")), _ms(auto) + chosen,
                     _ms(get("numpy")), _ms(get(base)) if base != "numpy" else "-", best])
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


def summary_tables(records):
    tables = []
    kinds = {r["kind"] for r in records}
    if kinds & {"model", "sweep"}:
        tables.append(auto_table(records))
    if "model" in kinds:
        tables.append(model_table([r for r in records if r["kind"] == "model"]))
    for group in dict.fromkeys(r["group"] for r in records if r["kind"] == "sweep"):
        tables.append(sweep_table(records, group))
    if "matmul" in kinds:
        tables.append(matmul_table([r for r in records if r["kind"] == "matmul"]))
    return tables


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


# ------------------------------------------------------------------------------------------ plots
def plot_all(records, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, name), dpi=110)
        plt.close(fig)
        files.append(name)

    ok = [r for r in records if r["status"] == "ok"]
    impls = [i for i in IMPL_ORDER if any(r["impl"] == i for r in ok)]
    color = {i: f"C{j}" for j, i in enumerate(IMPL_ORDER)}
    for group in dict.fromkeys(r["group"] for r in records if r["kind"] == "sweep"):
        fig, (ax, axw) = plt.subplots(1, 2, figsize=(13, 4.8))
        for impl in impls:
            rs = sorted((r for r in ok if r["group"] == group and r["impl"] == impl), key=lambda r: r["x"])
            if not rs:
                continue
            xs = np.array([r["x"] for r in rs])
            med, lo, sd = (np.array([r[k] for r in rs]) * 1e3 for k in ("median_s", "min_s", "std_s"))
            ax.plot(xs, med, marker="o", color=color[impl], label=impl)
            ax.fill_between(xs, np.maximum(med - 3 * sd, lo), med + 3 * sd, color=color[impl], alpha=0.15)
            if impl in VK_ALGOS:
                axw.plot(xs, [r["peak_bytes"] for r in rs], ":" if impl == "vkconvt-auto" else "-", marker="o",
                         color=color[impl], label=f"{impl} peak device memory")
                if impl == "vkconvt-gemm":
                    axw.plot(xs, [max(r["workspace_bytes"] or 0, 1) for r in rs], "k--", marker="x",
                             label="gemm column buffer (workspace)")
        dim = next(r["case"].split("=")[0] for r in records if r["group"] == group)
        for a in (ax, axw):
            if any(r["x"] == 0 for r in records if r["group"] == group):
                a.set_xscale("symlog", base=2, linthresh=1)
            else:
                a.set_xscale("log", base=2)
            a.set_yscale("log")
            a.set_xlabel(dim)
            a.grid(True, which="both", alpha=0.3)
            a.legend(fontsize=8)
        ax.set_ylabel("median time per call [ms] (band: ±3σ, not below the minimum)")
        axw.set_ylabel("bytes")
        ax.set_title(group)
        axw.set_title(f"{group}: device memory")
        save(fig, f"{group}.png")

    models = [r for r in ok if r["kind"] == "model"]
    if models:
        base = _baseline(models)
        idx, layers = _index(models), list(dict.fromkeys((r["group"], r["case"]) for r in models))
        shown = [i for i in impls if i != base and any(r["impl"] == i for r in models)]
        ratio = {i: [(_time(idx.get(k + (base,))) or np.nan) / (_time(idx.get(k + (i,))) or np.nan) for k in layers]
                 for i in shown}
        fig, ax = plt.subplots(figsize=(max(10, 0.28 * len(layers)), 6))
        width = 0.8 / max(1, len(shown))
        for j, i in enumerate(shown):
            ax.bar(np.arange(len(layers)) + j * width, ratio[i], width, color=color[i], label=i)
        ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2)
        ax.set_xticklabels([f"{m[:22]} {c[:26]}" for m, c in layers], rotation=90, fontsize=6)
        _ratio_axes(ax, f"{base} time / time (>1: faster)", "per layer")
        save(fig, "models_layers.png")
        names = list(dict.fromkeys(m for m, _ in layers))
        fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(names)), 5))
        for j, i in enumerate(shown):
            g = [_geomean([v for (m, _), v in zip(layers, ratio[i]) if m == name and np.isfinite(v)]) or np.nan
                 for name in names]
            ax.bar(np.arange(len(names)) + j * width, g, width, color=color[i], label=i)
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        _ratio_axes(ax, f"{base} time / time (geomean)", "per model")
        save(fig, "models_summary.png")

    mm = [r for r in ok if r["kind"] == "matmul"]
    if mm:
        cases = list(dict.fromkeys(r["case"] for r in mm))
        names = [i for i in impls if any(r["impl"] == i for r in mm)]
        idx = _index(mm)
        fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(cases)), 5))
        width = 0.8 / len(names)
        for j, i in enumerate(names):
            ax.bar(np.arange(len(cases)) + j * width, [(idx.get(("matmul", c, i)) or {}).get("gflops") or np.nan
                                                        for c in cases], width, color=color[i], label=i)
        ax.set_xticks(np.arange(len(cases)) + 0.4 - width / 2)
        ax.set_xticklabels(cases, rotation=30, ha="right")
        ax.set_ylabel("GFLOP/s (median)")
        ax.set_yscale("log")
        ax.set_title("matmul: M x K x N")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "matmul.png")
    return files


def _ratio_axes(ax, ylabel, title):
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(f"models: speed relative to the baseline ({ylabel.split()[0]}), {title}")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)


# ------------------------------------------------------------------------------------------ command line
def add_arguments(parser):
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    names = list(SUITES)
    parser.add_argument("suite", nargs="?", choices=names, default=None,
                        help="; ".join(f"{k}: {v[0]}" for k, v in SUITES.items()) + " (default: models)")
    parser.add_argument("--suite", dest="suite_opt", choices=names, default=None, help="the same as the positional")
    parser.add_argument("--quick", action="store_true", help="a handful of small cases, well under a minute")
    parser.add_argument("--models", default=None, help="comma-separated model names for the models suite")
    parser.add_argument("--batch", type=int, default=1, help="batch size N of the conv cases (default 1)")
    parser.add_argument("--device", default=None, help="Vulkan device: index or a substring of its name")
    parser.add_argument("--budget", type=float, default=0.3,
                        help="seconds of timed calls per case and implementation (default 0.3); at least "
                             "3 calls, 2 when one call takes longer")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads for the PyTorch CPU rows (default: PyTorch's own)")
    parser.add_argument("--validate", action="store_true",
                        help="load the Vulkan validation layer (VKCONVT_VALIDATE=1); off by default")
    parser.add_argument("--out", default=None, help="output folder (default bench-results/<suite>)")


def run(args):
    # Before any Vulkan instance exists: the loader reads these once.
    if args.validate:
        os.environ["VKCONVT_VALIDATE"] = "1"
    else:
        os.environ.pop("VKCONVT_VALIDATE", None)
    validation = env.apply_layer_policy()
    if args.suite and args.suite_opt and args.suite != args.suite_opt:
        print(f"bench: two suites given: {args.suite} and --suite {args.suite_opt}", file=sys.stderr)
        return 2
    suite = "quick" if args.quick else (args.suite_opt or args.suite or "models")
    if args.batch < 1 or args.budget <= 0:
        print("bench: --batch must be >= 1 and --budget > 0", file=sys.stderr)
        return 2
    try:
        cases = SUITES[suite][1](args, suite)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    reason, be = backends.vulkan_reason(), None
    if reason is None:
        try:
            be = backends.get("vulkan", device=args.device)
        except (ValueError, TypeError) as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
        be.collect_timestamps = True
    else:
        print(f"bench: Vulkan is unavailable ({reason}); running NumPy and PyTorch only", file=sys.stderr)
    try:
        import torch
        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
    except ImportError:
        torch = None
    out_dir = args.out or os.path.join("bench-results", suite)
    os.makedirs(out_dir, exist_ok=True)
    meta = metadata(args, suite, be, reason, torch, validation)
    print(f"suite {suite}: {len(cases)} cases on {be.describe() if be else 'no Vulkan device'}", file=sys.stderr)
    try:
        from tqdm import tqdm
        bar = tqdm(cases, file=sys.stderr, unit="case", dynamic_ncols=True)
    except ImportError:
        bar = None
    records, t0 = [], time.perf_counter()
    for i, case in enumerate(bar if bar is not None else cases):
        if bar is not None:
            bar.set_postfix_str(f"{case.group} {case.name}"[:60])
        records += bench_case(case, i, suite, args, be, torch)
    meta["wall_s"] = round(time.perf_counter() - t0, 1)
    records = [{f: r.get(f) for f in FIELDS} for r in records]
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"metadata": meta, "records": records}, f, indent=1)
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(records)
    text = markdown(summary_tables(records), meta)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(text)
    try:
        plots = plot_all(records, out_dir)
    except ImportError as exc:
        plots = []
        print(f"bench: no plots ({exc}; pip install matplotlib)", file=sys.stderr)
    print(text)
    failed = [r for r in records if r["status"] != "ok"]
    for r in failed:
        print(f"FAILED {r['group']} {r['case']} {r['impl']}: {r['status']}: {r['error']}")
    print(f"{len(records)} results, {len(failed)} failed, {meta['wall_s']} s; wrote results.json, results.csv, "
          f"summary.md{''.join(', ' + p for p in plots)} to {out_dir}")
    return 1 if failed else 0
