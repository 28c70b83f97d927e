"""python -m vkconvt, run as a user runs it (a subprocess each): every subcommand refuses bad
arguments with one line on stderr (no traceback) and a non-zero exit status (issue 23, item 5)."""
import os
import re
import subprocess
import sys

import pytest

from conftest import VULKAN_REASON

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_VULKAN = {"VK_ICD_FILENAMES": "/nonexistent/icd.json", "VK_DRIVER_FILES": "/nonexistent/icd.json"}
DEVICE_BAD = r"(device='5' is out of range|Vulkan is unavailable)"


def run_cli(*args, env=None):
    full_env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    return subprocess.run([sys.executable, "-m", "vkconvt", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=full_env)


# (arguments, what the one line must say)
BAD = [
    ((), r"required: cmd"),
    (("nope",), r"invalid choice: 'nope'"),
    (("info", "--foo"), r"unrecognized arguments: --foo"),
    (("demo", "--algorithm", "foo"), r"demo: error: argument --algorithm: invalid choice: 'foo'"),
    (("demo", "--backend", "cuda"), r"argument --backend: invalid choice: 'cuda'"),
    (("demo", "--device", "5"), DEVICE_BAD),
    (("demo", "--repeat", "0"), r"argument --repeat: must be > 0"),
    (("demo", "--model", "hifigan", "--seconds", "-1"), r"argument --seconds: must be > 0"),
    (("demo", "--model", "nope"), r"argument --model: invalid choice"),
    (("explain", "--w", "4,3,3"), r"required: --x"),
    (("explain", "--x", "1,a", "--w", "4,3,3"), r"argument --x: a shape is comma-separated integers"),
    (("explain", "--x", "1,4,9", "--w", "5,3,3"), r"explain: weight.shape\[0\] must equal the input channels C_in=4"),
    (("explain", "--x", "1,9,4", "--w", "4,3,3"), r"x looks channels-last"),
    (("explain", "--x", "1,4,9", "--w", "4,3,3", "--algorithm", "fft"), r"argument --algorithm: invalid choice"),
    (("explain", "--x", "1,4,9", "--w", "4,3,3", "--stride", "0"), r"stride must be >= 1, got 0"),
    (("explain", "--x", "1,4,9", "--w", "4,3,3", "--max-workspace", "lots"), r"max_workspace_bytes must be a byte count"),
    (("explain", "--x", "1,4,9", "--w", "4,3,3", "--device", "5"), DEVICE_BAD),
    (("explain", "--x", "1,4,9", "--w", "4,3,3", "--backend", "numpy", "--device", "0"),
     r"(needs the Vulkan backend|Vulkan is unavailable)"),
    (("tune", "--device", "5"), DEVICE_BAD),
    (("tune", "--device", "no such device"), r"(matches no Vulkan device name|Vulkan is unavailable)"),
    (("tune", "--quick", "--out", "/proc/nope/model.json"), r"(tune: .*writ|Vulkan is unavailable)"),
    (("bench", "nosuch"), r"argument suite: invalid choice: 'nosuch'"),
    (("bench", "--quick", "--device", "5"), DEVICE_BAD),
    (("bench", "--batch", "0"), r"--batch must be >= 1"),
    (("bench", "--budget", "-1"), r"--budget > 0"),
    (("bench", "--models", "nope"), r"unknown model\(s\) nope"),
    (("bench", "--torch-threads", "0"), r"--torch-threads must be >= 1, got 0"),
    (("bench", "--quick", "--out", "/proc/nope"), r"--out /proc/nope: "),
]


def assert_one_line_error(r, pattern):
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("args,pattern", BAD, ids=[" ".join(a) or "no-command" for a, _ in BAD])
def test_bad_arguments_one_line_and_nonzero(args, pattern):
    assert_one_line_error(run_cli(*args), pattern)


@pytest.mark.parametrize("args", [("tune", "--quick"), ("demo", "--backend", "vulkan"),
                                  ("explain", "--x", "1,4,9", "--w", "4,3,3", "--device", "0")])
def test_without_vulkan_one_line(args):
    assert_one_line_error(run_cli(*args, env=NO_VULKAN), r"Vulkan is unavailable here")


def test_good_arguments_still_run():
    r = run_cli("info")
    assert r.returncode == 0 and "backends:" in r.stdout, r.stderr
    r = run_cli("explain", "--x", "1,512,86", "--w", "512,256,16", "--stride", "8", "--padding", "4", "--backend",
                "numpy", "--algorithm", "gemm")
    assert r.returncode == 0 and r.stdout.strip() and not r.stderr.strip(), r.stderr
    r = run_cli("demo", "--backend", "numpy", "--repeat", "1")
    assert r.returncode == 0 and "all outputs agree" in r.stdout, r.stdout + r.stderr


@pytest.mark.skipif(VULKAN_REASON is not None, reason=f"no Vulkan: {VULKAN_REASON}")
def test_a_good_device_is_accepted():
    r = run_cli("explain", "--x", "1,4,9", "--w", "4,3,3", "--device", "0")
    assert r.returncode == 0 and "vulkan" in r.stdout and not r.stderr.strip(), r.stdout + r.stderr
