"""The NumPy backend: each op's reference (vkconvt/reference.py), the result every other backend is
checked against. It runs the plan's op and algorithm on the host; there is nothing to cache."""
import numpy as np

name = "numpy"


class NumpyBackend:
    name = name
    device = None

    def run(self, plan, sched, args, wait=True):
        return plan.op.reference(plan.params, plan.algorithm, args)

    def release(self):
        pass

    def describe(self):
        return f"numpy {np.__version__} (CPU reference)"


def create(device=None):
    if device is not None:
        raise ValueError(f"the numpy backend has no devices; got device={device!r}")
    return NumpyBackend()
