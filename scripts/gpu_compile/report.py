"""The report of scripts/gpu_compile_report.py: which kernel x spec sets to compile, on which AMD
families and wave sizes, and the table of what ACO made of them."""
import argparse
import json
import os
import sys
import time
from collections import OrderedDict

from . import radv, specs

GPU_MIN_WAVES = 4        # GPU-shaped kernels below this many waves per SIMD are flagged


def spec_sets(devices, convs, matmuls, defaults=True, kernels_filter=()):
    """OrderedDict {(kernel, spec): {"devices": set, "uses": list}}: each kernel's default specs per
    device class, then the specs vkconvt chooses on each device (limit rows) for the problems."""
    found = OrderedDict()

    def add(name, spec, use, dev=None):
        if kernels_filter and not any(f in name for f in kernels_filter):
            return
        entry = found.setdefault((name, tuple(spec)), {"devices": set(), "uses": []})
        if dev:
            entry["devices"].add(dev)
        if use not in entry["uses"]:
            entry["uses"].append(use)

    if defaults:
        for name in specs.kernel_names():
            for cls, spec in specs.default_specs(name).items():
                add(name, spec, f"defaults[{cls}]")
    for dev in devices:
        for name, spec, use in specs.chosen_specs(dev, convs, matmuls):
            add(name, spec, use, dev.name)
    return found


def jobs_for(sets, family, driver_default=True):
    """isa_stats jobs: each set at each wave size the family compiles (and at the driver's own
    choice, wave 0, which is what vkconvt gets through kp)."""
    return [(label(k, s), specs.spv_path(k), s, w) for (k, s) in sets for w in wave_keys(family, driver_default)]


def wave_keys(family, driver_default=False):
    """The isa_stats wave arguments for a family: 32 and 64 where RDNA offers both (and 0, the
    driver's own pick, when asked), else only 0 (GCN compiles wave64 and accepts no request)."""
    waves = radv.FAMILIES[family][2]
    return ((0,) if driver_default else ()) + waves if len(waves) > 1 else (0,)


def label(kernel, spec):
    return f"{kernel}[{','.join(map(str, spec))}]"


def flags(kernel, r, large):
    out = []
    if r.get("error"):
        return ["FAIL"]
    if r["spill_s"] or r["spill_v"] or r["scratch"]:
        out.append(f"SPILL(s{r['spill_s']},v{r['spill_v']},scratch {r['scratch']})")
    if specs.gpu_shaped(kernel) and large and r["waves"] < GPU_MIN_WAVES:
        out.append(f"OCC<{GPU_MIN_WAVES}")
    if r["lds"] > 65536:
        out.append("LDS>64K")
    return out


def rows_of(sets, results, devices):
    """One row per (kernel, spec, family, wave) with its numbers, flags and uses."""
    large = {d.name for d in devices if d.large}
    rows = []
    for fam, res in results.items():
        for (k, s), info in sets.items():
            lab = label(k, s)
            dflt = res.get((lab, 0))
            dwave = dflt["executables"][0]["subgroup"] if dflt and dflt.get("ok") else None
            for w in wave_keys(fam):
                r = radv.row(res.get((lab, w), {"ok": False, "error": "not run"}), fam)
                is_large = bool(info["devices"] & large) or "defaults[gpu]" in info["uses"]
                rows.append(dict(r, kernel=k, spec=s, family=fam, wave=r.get("wave", w), default=r.get("wave") == dwave,
                                 flags=flags(k, r, is_large), devices=sorted(info["devices"]), uses=info["uses"]))
    return rows


def uses_text(row, most=3):
    u = row["uses"]
    text = "; ".join(u[:most]) + (f"; (+{len(u) - most} more)" if len(u) > most else "")
    return (f"[{', '.join(row['devices'])}] " if row["devices"] else "") + text


HEADER = ("kernel", "spec", "family", "wave", "VGPRs", "SGPRs", "spills s/v", "LDS B", "waves/SIMD", "code B", "flags",
          "chosen on / used for")


def table(rows, uses=True):
    hdr = HEADER if uses else HEADER[:-1]
    out = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for r in rows:
        if r.get("error"):
            cells = [r["kernel"], ",".join(map(str, r["spec"])), r["family"], str(r["wave"])] + [""] * 6 + [
                "FAIL: " + r["error"]]
        else:
            cells = [r["kernel"], ",".join(map(str, r["spec"])), r["family"], f"{r['wave']}{'*' if r['default'] else ''}",
                     str(r["vgprs"]), str(r["sgprs"]), f"{r['spill_s']}/{r['spill_v']}", str(r["lds"]),
                     f"{r['waves']:g}", str(r["code"]), " ".join(r["flags"])]
        if uses:
            cells.append(uses_text(r))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def load_devices(names):
    sys.path.insert(0, os.path.join(specs.ROOT, "tests"))
    import device_limits
    if not names:
        return list(device_limits.DEVICES)
    unknown = [n for n in names if n not in device_limits.BY_NAME]
    if unknown:
        raise SystemExit(f"unknown device row(s) {unknown}; known: {list(device_limits.BY_NAME)}")
    return [device_limits.BY_NAME[n] for n in names]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Compile every vkconvt kernel with RADV's null device (ACO) for AMD "
                                 "GPU families and print registers, spills, LDS and occupancy.")
    ap.add_argument("--families", default=",".join(radv.FAMILIES), help="comma-separated RADV chip names")
    ap.add_argument("--devices", default="", help="device rows of tests/device_limits.py whose spec choice to "
                    "compile (comma-separated; default: all)")
    ap.add_argument("--kernels", default="", help="only kernels whose name contains one of these (comma-separated)")
    ap.add_argument("--gpu-only", action="store_true", help="only the GPU-shaped kernels (tiled) and their twins")
    ap.add_argument("--no-defaults", action="store_true", help="skip each kernel's default specs")
    ap.add_argument("--json", default="", help="also write every row to this file")
    args = ap.parse_args(argv)

    fams = [f for f in args.families.split(",") if f]
    bad = [f for f in fams if f not in radv.FAMILIES]
    if bad:
        raise SystemExit(f"unknown family {bad} (known: {', '.join(radv.FAMILIES)})")
    devices = load_devices([d for d in args.devices.split(",") if d])
    filt = tuple(k for k in args.kernels.split(",") if k) + (("_tiled",) if args.gpu_only else ())
    t0 = time.time()
    icd = radv.find_icd()
    sets = spec_sets(devices, specs.bench_layers(), specs.BENCH_MATMULS, not args.no_defaults, filt)
    results = radv.compile_all({f: jobs_for(sets, f) for f in fams}, lambda f: specs.radv_env(f, icd))
    rows = rows_of(sets, results, devices)
    print(f"# {len(sets)} kernel x spec sets on {', '.join(fams)}; {len(rows)} compiles shown; {time.time() - t0:.0f} s")
    for f in fams:
        lim = specs.radv_limits(f, icd)
        print(f"#   {f} ({radv.FAMILIES[f][0]}, {radv.FAMILIES[f][1]}): {lim['name']}, {lim['driver']}")
    print("#   spec choice on: " + "; ".join(f"{d.name} ({d.max_shared // 1024} KiB, {d.max_invocations} inv., "
                                           f"subgroup {d.subgroup}{', large' if d.large else ''})" for d in devices))
    print("# waves/SIMD in waves of the compiled size; * = the wave size RADV picks unasked (what vkconvt gets through "
          f"kp); OCC<{GPU_MIN_WAVES}: a GPU-shaped kernel chosen for a large GPU (or its default) under "
          f"{GPU_MIN_WAVES} waves")
    print()
    print(table(rows))
    bad = [r for r in rows if r["flags"]]
    print(f"\n# flagged: {len(bad)} of {len(rows)}")
    for r in bad:
        print(f"#   {r['family']:9} w{r['wave']} {label(r['kernel'], r['spec'])}: {' '.join(r['flags'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=list)
    return 1 if any("FAIL" in r["flags"] for r in rows) else 0
