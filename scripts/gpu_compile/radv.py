"""Compile SPIR-V with real AMD compilers and no GPU: Mesa RADV's null device (RADV_FORCE_FAMILY)
creates compute pipelines with ACO, and VK_KHR_pipeline_executable_properties reports its
statistics. isa_stats.c (built once into a cache directory) does the Vulkan part; this module
builds it, feeds it jobs per family and turns its JSON into rows.

Needs only what scripts/setup.sh installs: gcc, libvulkan-dev, mesa-vulkan-drivers (RADV and
its radeon_icd.json).
"""
import hashlib
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ("isa_stats.c", "spirv_reflect.c", "spirv_reflect.h")
ICD_DIRS = ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")

# RADV chip name -> (gfx target, generation, wave sizes that family compiles compute for)
FAMILIES = {
    "navi31": ("gfx1100", "RDNA3", (32, 64)),
    "navi21": ("gfx1030", "RDNA2", (32, 64)),
    "navi10": ("gfx1010", "RDNA1", (32, 64)),
    "vega10": ("gfx900", "GCN5", (64,)),
    "polaris10": ("gfx803", "GCN4", (64,)),
}


class Unavailable(RuntimeError):
    """What the RADV compile needs is missing here; the message says what and how to get it."""


def find_icd():
    """The radeon_icd.json of Debian's mesa-vulkan-drivers ($RADV_ICD overrides)."""
    if os.environ.get("RADV_ICD"):
        if not os.path.exists(os.environ["RADV_ICD"]):
            raise Unavailable(f"RADV_ICD={os.environ['RADV_ICD']} does not exist")
        return os.environ["RADV_ICD"]
    for d in ICD_DIRS:
        for name in ("radeon_icd.json", "radeon_icd.x86_64.json"):
            if os.path.exists(os.path.join(d, name)):
                return os.path.join(d, name)
    raise Unavailable("no RADV ICD (radeon_icd.json) in " + ", ".join(ICD_DIRS)
                      + " (Debian: apt-get install mesa-vulkan-drivers, which scripts/setup.sh installs)")


def cache_dir():
    root = os.environ.get("VKCONVT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vkconvt")
    return os.path.join(root, "gpu-compile")


def build():
    """Path of the isa_stats binary, compiled once per content of this folder's C sources into the
    cache directory (the name carries their hash; built to a temporary name, then renamed)."""
    srcs = [os.path.join(HERE, s) for s in SOURCES]
    digest = hashlib.sha256(b"".join(open(p, "rb").read() for p in srcs)).hexdigest()[:16]
    out = os.path.join(cache_dir(), f"isa_stats-{digest}")
    if os.path.exists(out):
        return out
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise Unavailable("no C compiler (cc/gcc; scripts/setup.sh installs g++)")
    if not os.path.exists("/usr/include/vulkan/vulkan.h"):
        raise Unavailable("no Vulkan headers (/usr/include/vulkan/vulkan.h: Debian's libvulkan-dev)")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = f"{out}.tmp.{os.getpid()}"
    proc = subprocess.run([cc, "-O2", "-std=c11", "-Wall", "-Wno-missing-field-initializers", "-o", tmp,
                           srcs[0], srcs[1], "-lvulkan"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building isa_stats failed:\n{proc.stderr[-2000:]}")
    os.replace(tmp, out)
    return out


def _run(binary, env, jobs, timeout):
    """{(label, wave): result} for jobs [(label, spv, spec, wave)]; a driver crash marks the job it
    stopped at as failed and the rest are run again."""
    results, todo = {}, list(jobs)
    while todo:
        text = "".join(f"{lab}\t{spv}\t{','.join(map(str, spec))}\t{w}\n" for lab, spv, spec, w in todo)
        proc = subprocess.run([binary], input=text, env=env, capture_output=True, text=True, timeout=timeout)
        done = 0
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                results[(r["label"], r["wave"])] = r
                done += 1
        if done == len(todo):
            break
        if proc.returncode == 2 and done == 0:
            raise RuntimeError(f"isa_stats could not start: {proc.stderr.strip()[-800:]}")
        lab, _, _, w = todo[done]
        err = proc.stderr.strip().splitlines()
        results[(lab, w)] = {"label": lab, "wave": w, "ok": False,
                             "error": f"driver crashed (rc {proc.returncode}): {err[-1] if err else ''}"}
        todo = todo[done + 1:]
    return results


def compile_all(jobs_by_family, env_of, timeout=1200, workers=None):
    """{family: {(label, wave): result}}: each family's jobs in its own isa_stats process, the
    families in parallel (as many at a time as there are cores)."""
    binary = build()
    workers = workers or max(1, min(len(jobs_by_family), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        futs = {fam: pool.submit(_run, binary, env_of(fam), jobs, timeout) for fam, jobs in jobs_by_family.items()}
        return {fam: f.result() for fam, f in futs.items()}


def row(result, family):
    """The numbers of one compile: VGPRs, SGPRs, spills, scratch, LDS, waves per SIMD in waves of
    the compiled size (RADV's 'Subgroups per SIMD' counts wave32 units on gfx10+:
    radv_get_max_waves multiplies by wave/32), code size, compile ms."""
    if not result.get("ok"):
        return {"error": result.get("error", "not run")}
    ex = result["executables"][0]
    s, wave = ex["stats"], ex["subgroup"]
    raw = s.get("Subgroups per SIMD", 0)
    rdna = FAMILIES[family][1].startswith("RDNA")
    return dict(wave=wave, vgprs=s.get("VGPRs"), sgprs=s.get("SGPRs"), spill_s=s.get("Spilled SGPRs", 0),
                spill_v=s.get("Spilled VGPRs", 0), scratch=s.get("Scratch size", 0), lds=s.get("LDS size", 0),
                waves=raw / (wave / 32) if rdna else raw, code=s.get("Code size"), instrs=s.get("Instructions"),
                ms=result.get("ms"))
