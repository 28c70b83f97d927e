"""Run by test_numpy_versions.py in a process of its own, with an overlay holding NumPy 1 first on
PYTHONPATH (scripts/setup.sh --test installs it): the Vulkan backend, through the same kp build,
must give the NumPy backend's answers on the whole case table under NumPy 1 too.

    python numpy_version_probe.py OUT.npz     prints the NumPy version, one line per case and
                                               algorithm; saves every Vulkan result in OUT.npz
"""
import sys
import time

import numpy as np

import vkconvt
from vkconvt import backends
from cases import ALGORITHMS, CASES, TOL, assert_close


def main(out_path):
    start = time.perf_counter()
    print(f"numpy {np.__version__} {np.__file__}", flush=True)
    reason = backends.vulkan_reason()
    if reason is not None:
        print(f"vulkan unavailable: {reason}", flush=True)
        return 3
    results = {}
    for case in CASES:
        x, w, b = case.inputs()
        ref = vkconvt.conv_transpose1d(x, w, b, backend="numpy", algorithm="direct", **case.kwargs())
        for algo in ALGORITHMS:
            out = vkconvt.conv_transpose1d(x, w, b, backend="vulkan", algorithm=algo, **case.kwargs())
            assert_close(out, ref, TOL["float32"])
            results[f"{case.id}/{algo}"] = out
            print(f"ok {case.id} {algo}", flush=True)
    np.savez(out_path, **results)
    print(f"done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
