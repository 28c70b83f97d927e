"""The `bench` command: arguments, the run loop, and the files it writes."""
import argparse
import csv
import json
import os
import sys
import time

from .. import backends, env
from . import measure, plots, report, torchproc
from .suites import SUITES

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
    else:
        print(f"bench: Vulkan is unavailable ({reason}); running NumPy and PyTorch only", file=sys.stderr)
    worker, why = torchproc.start(args.torch_threads)
    if worker is None:
        print(f"bench: no PyTorch rows ({why})", file=sys.stderr)
    out_dir = args.out or os.path.join("bench-results", suite)
    os.makedirs(out_dir, exist_ok=True)
    meta = report.metadata(args, suite, be, reason, worker and worker.info, validation)
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
        records += measure.bench_case(case, i, suite, args, be, worker)
    if worker is not None:
        worker.close()
    meta["wall_s"] = round(time.perf_counter() - t0, 1)
    records = [{f: r.get(f) for f in report.FIELDS} for r in records]
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"metadata": meta, "records": records}, f, indent=1)
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=report.FIELDS)
        w.writeheader()
        w.writerows(records)
    text = report.markdown(report.summary_tables(records), meta)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(text)
    try:
        files = plots.plot_all(records, out_dir)
    except ImportError as exc:
        files = []
        print(f"bench: no plots ({exc}; pip install matplotlib)", file=sys.stderr)
    print(text)
    failed = [r for r in records if r["status"] != "ok"]
    for r in failed:
        print(f"FAILED {r['group']} {r['case']} {r['impl']}: {r['status']}: {r['error']}")
    print(f"{len(records)} results, {len(failed)} failed, {meta['wall_s']} s; wrote results.json, results.csv, "
          f"summary.md{''.join(', ' + p for p in files)} to {out_dir}")
    return 1 if failed else 0
