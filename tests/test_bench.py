"""`python -m vkconvt bench --quick` end to end: exit code, output files, metadata, records."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vkconvt import backends

REASON = backends.vulkan_reason()
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
META_KEYS = {"device", "device_type", "driver_name", "driver_info", "vulkan_api_version", "cpu_model", "cpu_count",
             "versions", "git_commit", "date", "command", "validation_layer", "suite", "batch"}
RECORD_KEYS = {"suite", "kind", "group", "case", "tag", "flops", "impl", "algorithm", "status", "error", "nmse",
               "runs", "median_s", "min_s", "std_s", "gflops", "device_median_s", "workspace_bytes", "peak_bytes"}


@pytest.mark.skipif(REASON is not None, reason=f"Vulkan backend unavailable: {REASON}")
def test_bench_quick(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vkconvt", "bench", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in ("results.json", "results.csv", "summary.md"):
        assert (tmp_path / name).is_file(), name
    assert list(tmp_path.glob("*.png"))

    data = json.loads((tmp_path / "results.json").read_text())
    meta, records = data["metadata"], data["records"]
    assert META_KEYS <= set(meta)
    assert meta["validation_layer"] is False
    assert meta["suite"] == "quick" and "--quick" in meta["command"]
    assert {"vkconvt", "kp", "numpy", "torch"} <= set(meta["versions"])
    assert meta["device"] and meta["vulkan_api_version"]

    assert records and all(RECORD_KEYS <= set(r) for r in records)
    assert {r["kind"] for r in records} == {"model", "sweep", "matmul", "overhead"}
    impls = {r["impl"] for r in records}
    assert {"numpy", "vkconvt-direct", "vkconvt-gemm", "vkconvt-auto", "vkconvt-matmul"} <= impls
    for r in records:
        assert r["status"] == "ok", r
        assert r["runs"] >= 2 and 0 < r["min_s"] <= r["median_s"]
        assert r["impl"] == "trivial-dispatch" or r["nmse"] <= 1e-7
    for r in records:
        if r["impl"] in ("vkconvt-direct", "vkconvt-gemm", "vkconvt-auto"):
            assert r["peak_bytes"] > 0 and r["workspace_bytes"] is not None
        if r["impl"] == "vkconvt-gemm":
            assert r["workspace_bytes"] > 0
        if r["impl"] == "vkconvt-direct":
            assert r["workspace_bytes"] == 0
        if r["impl"] == "vkconvt-auto":
            assert r["chosen"] in ("direct", "gemm")

    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records) and RECORD_KEYS <= set(rows[0])
    summary = (tmp_path / "summary.md").read_text()
    assert "| model" in summary and "auto against the faster algorithm" in summary
    assert "speed targets" in summary and "per-call overhead" in summary
    assert meta["torch_process"], "PyTorch must be timed in a process of its own"


@pytest.mark.skipif(REASON is not None, reason=f"Vulkan backend unavailable: {REASON}")
@pytest.mark.parametrize("suite", ["float16", "activations"])
def test_bench_float16_and_activation_suites(tmp_path, suite):
    """The issue-13 suites on one small model layer: every result checked, the float16 gemm's
    column buffer half the float32 one, the summary table present."""
    proc = subprocess.run([sys.executable, "-m", "vkconvt", "bench", suite, "--models", "kokoro_82m_prosody",
                           "--budget", "0.05", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    assert records and all(r["status"] == "ok" and r["runs"] >= 2 for r in records), records
    by = {r["impl"]: r for r in records}
    summary = (tmp_path / "summary.md").read_text()
    if suite == "float16":
        assert set(by) == {"vkconvt-direct", "vkconvt-gemm", "vkconvt-direct-f16", "vkconvt-gemm-f16"}
        assert 2 * by["vkconvt-gemm-f16"]["workspace_bytes"] == by["vkconvt-gemm"]["workspace_bytes"] > 0
        assert by["vkconvt-gemm-f16"]["peak_bytes"] < by["vkconvt-gemm"]["peak_bytes"]
        assert "float16 storage against float32" in summary
    else:
        assert {"vkconvt-fused", "vkconvt-plain", "separate-numpy", "torch-passes"} <= set(by)
        assert by["vkconvt-fused"]["chosen"] == "fused" and by["separate-numpy"]["nmse"] <= 1e-7
        assert "fused activations against separate passes" in summary


@pytest.mark.skipif(REASON is not None, reason=f"Vulkan backend unavailable: {REASON}")
def test_bench_backward_suite(tmp_path):
    """The backward suite on one small model layer: vkconvt's forward and backward (both gradient ops)
    and PyTorch's, from its worker, every result checked, the table with its ratios."""
    proc = subprocess.run([sys.executable, "-m", "vkconvt", "bench", "backward", "--models", "kokoro_82m_prosody",
                           "--budget", "0.05", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    by = {r["impl"]: r for r in records}
    assert set(by) == {"vkconvt-forward", "vkconvt-backward", "torch-cpu-forward", "torch-cpu-backward"}
    assert all(r["status"] == "ok" and r["runs"] >= 2 and r["nmse"] <= 1e-7 for r in records), records
    assert "conv1d:" in by["vkconvt-backward"]["chosen"] and "conv_grad_weight:" in by["vkconvt-backward"]["chosen"]
    summary = (tmp_path / "summary.md").read_text()
    assert "backward pass per model layer" in summary and "| geomean" in summary


@pytest.mark.skipif(REASON is not None, reason=f"Vulkan backend unavailable: {REASON}")
def test_lavapipe_ceiling_probe():
    """scripts/lavapipe_ceiling.py: every probe shader's result matches its closed form (it exits
    non-zero otherwise) and each configuration reports a positive rate beside NumPy's."""
    proc = subprocess.run([sys.executable, str(SCRIPTS / "lavapipe_ceiling.py")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    rows = [ln for ln in proc.stdout.splitlines() if "vec4 accumulators" in ln]
    assert len(rows) == 5, proc.stdout
    for ln in rows + [ln for ln in proc.stdout.splitlines() if ln.startswith("NumPy 1024^3")]:
        rates = [float(tok) for tok in ln.replace("(", " ").split() if tok.replace(".", "", 1).isdigit()]
        assert rates and all(r > 0 for r in rates), ln
