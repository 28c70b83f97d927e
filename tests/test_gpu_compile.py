"""Every kernel compiled by real GPU compilers, no GPU needed: Mesa RADV's null device
(RADV_FORCE_FAMILY) builds each compute pipeline with ACO for RDNA3 (navi31), RDNA2 (navi21) and
GCN5 (vega10), and VK_KHR_pipeline_executable_properties reports registers, spills, LDS and
waves per SIMD (scripts/gpu_compile: the full matrix and the table are
scripts/gpu_compile_report.py's).

Asserted: every kernel and float16 twin compiles with its default specs (both device classes) on
every family; the GPU-shaped kernels (conv_transpose_1d_tiled, matmul_tiled, twins) with the specs
vkconvt chooses on a large GPU (the bench's model layers and matmul 1024^3, on the large rows of
tests/device_limits.py, and their defaults[gpu], the largest tiles the choice can reach) have no
spills and no scratch, and at least 4 waves per SIMD at wave32 and wave64 (RDNA) and wave64 (GCN).
The llvmpipe-shaped kernels only have to compile (they spill on AMD: they are built for
llvmpipe's one-lane-per-invocation model). Skipped only where the RADV ICD is absent; Debian's
mesa-vulkan-drivers (scripts/setup.sh) installs it.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))

import device_limits  # noqa: E402
from gpu_compile import radv, report, specs  # noqa: E402

FAMILIES = ("navi31", "navi21", "vega10")
MIN_WAVES = report.GPU_MIN_WAVES
LARGE = [d for d in device_limits.DEVICES if d.large]

try:
    ICD = radv.find_icd()
    RADV_REASON = None
except radv.Unavailable as exc:
    ICD, RADV_REASON = None, str(exc)
needs_radv = pytest.mark.skipif(RADV_REASON is not None, reason=f"RADV null device unavailable: {RADV_REASON}")


def default_sets():
    """(kernel, spec) of every kernel's defaults, both device classes."""
    return list(dict.fromkeys((k, s) for k in specs.kernel_names() for s in specs.default_specs(k).values()))


def large_gpu_sets():
    """{(kernel, spec): uses} of the GPU-shaped kernels chosen on the large rows, and their defaults[gpu]."""
    sets = report.spec_sets(LARGE, specs.bench_layers(), specs.BENCH_MATMULS, defaults=False)
    out = {ks: info["uses"] for ks, info in sets.items() if specs.gpu_shaped(ks[0])}
    for k in specs.kernel_names():
        if specs.gpu_shaped(k):
            out.setdefault((k, specs.default_specs(k)["gpu"]), []).append("defaults[gpu]")
    return out


@pytest.fixture(scope="module")
def compiled():
    """{family: {(label, wave): result}}: the default sets at the driver's wave size, the large-GPU
    sets at every wave size the family compiles; one isa_stats process per family."""
    gpu, dflt = large_gpu_sets(), default_sets()
    jobs = {}
    for fam in FAMILIES:
        todo = dict.fromkeys([(k, s, 0) for k, s in dflt] + [(k, s, w) for k, s in gpu for w in report.wave_keys(fam)])
        jobs[fam] = [(report.label(k, s), specs.spv_path(k), s, w) for k, s, w in todo]
    return radv.compile_all(jobs, lambda fam: specs.radv_env(fam, ICD)), gpu


def result(compiled, fam, kernel, spec, wave):
    res = compiled[0][fam].get((report.label(kernel, spec), wave))
    assert res is not None, f"{fam}: {report.label(kernel, spec)} wave {wave} was not compiled"
    return radv.row(res, fam)


@needs_radv
@pytest.mark.parametrize("family", FAMILIES)
def test_every_kernel_compiles_with_its_defaults(compiled, family):
    names = specs.kernel_names()
    assert any(n.endswith("_f16") for n in names) and any(specs.gpu_shaped(n) for n in names)
    failed = []
    for k, s in default_sets():
        r = result(compiled, family, k, s, 0)
        if r.get("error") or not r["vgprs"] or not r["code"]:
            failed.append(f"{report.label(k, s)}: {r.get('error', r)}")
    assert not failed, f"{family}: kernels that did not compile:\n" + "\n".join(failed)


@needs_radv
@pytest.mark.parametrize("family", FAMILIES)
def test_gpu_kernels_chosen_for_a_large_gpu_neither_spill_nor_starve(compiled, family):
    sets = compiled[1]
    shaders = {k for k, _ in sets}
    assert {"conv_transpose_1d_tiled", "matmul_tiled", "conv_transpose_1d_tiled_f16", "matmul_tiled_f16"} <= shaders
    assert any("matmul 1024^3" in u for uses in sets.values() for u in uses)
    bad = []
    for (k, s), uses in sets.items():
        for w in report.wave_keys(family):
            r = result(compiled, family, k, s, w)
            if r.get("error"):
                bad.append(f"{report.label(k, s)} wave {w}: FAIL {r['error']}")
            elif r["spill_s"] or r["spill_v"] or r["scratch"] or r["waves"] < MIN_WAVES:
                bad.append(f"{report.label(k, s)} wave {r['wave']}: {r['vgprs']} VGPRs, spills s{r['spill_s']}/"
                           f"v{r['spill_v']}, scratch {r['scratch']}, {r['waves']:g} waves/SIMD ({'; '.join(uses[:2])})")
    assert not bad, f"{family}: GPU-shaped specs for a large GPU need no spills and >= {MIN_WAVES} waves:\n" + \
        "\n".join(bad)


@needs_radv
def test_the_wave_size_is_what_was_asked(compiled):
    """The rows are read at the wave size they claim (RDNA honours the request; GCN is wave64)."""
    k, s = next(iter(compiled[1]))
    for fam in FAMILIES:
        for w in report.wave_keys(fam):
            assert result(compiled, fam, k, s, w)["wave"] == (w or 64), (fam, w)


@needs_radv
def test_radv_null_device_limits_are_what_the_large_row_says():
    """The RX 7900 XTX row's shared memory, invocations and subgroup size are RADV's own for navi31."""
    lim = specs.radv_limits("navi31", ICD)
    row = device_limits.BY_NAME["RX 7900 XTX"]
    assert "NAVI31" in lim["name"]
    assert (lim["max_shared"], lim["max_invocations"], lim["subgroup"]) == (row.max_shared, row.max_invocations,
                                                                           row.subgroup)
