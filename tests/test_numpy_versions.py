"""No silent wrong answers under either NumPy ABI.

kp is a pybind11 extension: built against one NumPy ABI and run under another (Debian's pybind11 2.10
under NumPy 2), its array conversion reads the dtype fields at the wrong offsets and the device
computes on zeros with no error. vkconvt builds kp with pybind11 2.13 (right under NumPy 1 and 2),
runs the whole Vulkan case table under NumPy 1 as well (an overlay that scripts/setup.sh --test
installs), and checks once per process that kp round-trips an array, refusing the Vulkan backend
with a reason that says how to rebuild kp when it does not.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import vkconvt
from cases import ALGORITHMS, CASES
from conftest import needs_vulkan

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# scripts/test.sh names the overlay, and then it must be there; elsewhere a missing one skips.
REQUIRED = os.environ.get("VKCONVT_TEST_NUMPY1")
OVERLAY = REQUIRED or os.path.join(sys.prefix, "numpy1")


def _run(code_or_args, pythonpath=(), timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*pythonpath, ROOT, HERE]), VKCONVT_BACKEND="")
    args = code_or_args if isinstance(code_or_args, list) else ["-c", code_or_args]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=HERE,
                          timeout=timeout)


@needs_vulkan
def test_kp_round_trips_arrays_here():
    from vkconvt.backends import vulkan
    from vkconvt.vulkan import device, vkinfo
    import kp
    assert vulkan.kp_round_trip(kp, device, vkinfo.list_devices()) is None


# A kp whose array conversion hands the device zeros, as pybind11 2.10 did under NumPy 2: arrays passed
# in (tensor data, push constants) arrive as zeros.
BROKEN_KP = """
import sys, types, numpy as np
import kp as real
def zeros(a):
    return np.zeros_like(np.asarray(a))
class Manager:
    def __init__(self, *a):
        self._m = real.Manager(*a)
    def tensor_t(self, data, *a):
        return self._m.tensor_t(zeros(data), *a)
    def __getattr__(self, name):
        return getattr(self._m, name)
broken = types.ModuleType('kp')
broken.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith('__')})
broken.Manager = Manager
broken.OpAlgoDispatch = lambda algo, push: real.OpAlgoDispatch(algo, zeros(push))
sys.modules['kp'] = broken
"""


@needs_vulkan
def test_a_kp_that_reads_arrays_as_zeros_is_refused_with_how_to_rebuild():
    """The original failure, reproduced with such a kp: unguarded, the Vulkan backend returns zeros
    (a silent wrong answer); guarded, vkconvt refuses the Vulkan backend, says why and how to rebuild
    kp, and the default backend falls back to NumPy, which gives the right answer."""
    code = BROKEN_KP + (
        "import vkconvt\n"
        "from vkconvt import backends\n"
        "from vkconvt.backends import vulkan\n"
        "row = [r for r in vkconvt.available() if r['name'] == 'vulkan'][0]\n"
        "assert not row['available'], row\n"
        "print('reason:', row['reason'])\n"
        "try:\n    backends.get('vulkan')\nexcept vkconvt.BackendUnavailable as e:\n    print('raised:', e.backend)\n"
        "assert backends.resolve_name(None) == 'numpy'\n"
        "print(vkconvt.conv_transpose1d([[1., 2.]], [[[1., 1.]]]).tolist())\n"
        "rng = np.random.default_rng(0)\n"
        "x, w = rng.standard_normal((1, 4, 13), np.float32), rng.standard_normal((4, 6, 3), np.float32)\n"
        "ref = vkconvt.conv_transpose1d(x, w, None, 2, backend='numpy')\n"
        "backends.vulkan_reason.cache_clear()\n"
        "vulkan.kp_round_trip = lambda *a: None              # the guard off: what it prevents\n"
        "bad = vkconvt.conv_transpose1d(x, w, None, 2, backend='vulkan')\n"
        "print('unguarded error:', float(np.abs(bad - ref).max()), 'output max:', float(np.abs(bad).max()))\n")
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert "reason: kp corrupts NumPy arrays" in r.stdout and "rebuild it with scripts/setup.sh" in r.stdout, r.stdout
    assert f"NumPy {np.__version__}" in r.stdout
    assert "raised: vulkan" in r.stdout and "[[1.0, 3.0, 2.0]]" in r.stdout
    err, out_max = (float(v) for v in r.stdout.split("unguarded error:")[1].split("output max:"))
    assert err > 1.0 and out_max == 0.0, r.stdout


@needs_vulkan
def test_case_table_under_numpy1_matches_numpy2(tmp_path):
    """The Vulkan case table in a process running NumPy 1 (the overlay first on PYTHONPATH, the same
    kp build): every result within the table's tolerance of the NumPy backend there, and bit for
    bit the result this process (NumPy 2) computes."""
    if not os.path.isdir(os.path.join(OVERLAY, "numpy")):
        message = f"no NumPy 1 overlay at {OVERLAY}: scripts/setup.sh --test installs it"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    assert int(np.__version__.split(".")[0]) >= 2, "this process should run NumPy 2, the overlay NumPy 1"
    out = str(tmp_path / "numpy1.npz")
    r = _run([os.path.join(HERE, "numpy_version_probe.py"), out], pythonpath=[OVERLAY])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    version = r.stdout.split()[1]
    assert int(version.split(".")[0]) < 2 and OVERLAY in r.stdout.splitlines()[0], r.stdout[:300]
    assert r.stdout.count("\nok ") == len(CASES) * len(ALGORITHMS), r.stdout
    with np.load(out) as theirs:
        for case in CASES:
            x, w, b = case.inputs()
            for algo in ALGORITHMS:
                ours = vkconvt.conv_transpose1d(x, w, b, backend="vulkan", algorithm=algo, **case.kwargs())
                np.testing.assert_array_equal(theirs[f"{case.id}/{algo}"], ours, err_msg=f"{case.id} {algo}")

