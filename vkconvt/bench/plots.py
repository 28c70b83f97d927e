"""PNG plots of a benchmark run (matplotlib, imported only here)."""
import os

import numpy as np

from .report import IMPL_ORDER, VK_ALGOS, _baseline, _geomean, _index, _time


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
