"""The Vulkan backend: executes planned schedules of any op on one device (vkconvt/vulkan/).

It never plans: the planner hands it a schedule (from a plan made for this device's profile) and
the call's arguments; vulkan/execute.py records the schedule once (pooled buffers, shared pipelines)
and runs each step as one command buffer, one submission. Out of device memory it frees what it
caches and lets the call path try the plan's next schedule.
"""
import os

from ..errors import BackendUnavailable

name = "vulkan"


def unavailable_reason():
    """None when the Vulkan backend can start here, else why not."""
    try:
        import kp
    except ImportError as exc:
        return (f"the Kompute Python package 'kp' is not installed ({exc}); scripts/setup.sh builds "
                "kp==0.9.0 from its sdist with vkconvt's patch")
    from ..vulkan import device as devmod
    if getattr(kp, "VKCONVT_PATCHES", 0) < devmod.KP_PATCH:
        return ("the installed kp was built without vkconvt's patch (scripts/kp/kp-0.9.0-vkconvt.patch); "
                "run scripts/setup.sh to build it")
    from ..vulkan import shaders, vkinfo
    try:
        devices = vkinfo.list_devices()
    except vkinfo.VulkanUnavailable as exc:
        return str(exc)
    if not devices:
        return "the Vulkan loader reports no device (Debian: apt-get install mesa-vulkan-drivers)"
    problems = shaders.problems()
    if problems:
        return "; ".join(problems)
    return kp_round_trip(kp, devmod, devices)


def kp_round_trip(kp, devmod, devices):
    """None when kp hands NumPy arrays to Vulkan memory and back intact (float32 and uint32, the two
    dtypes vkconvt passes: data, push and specialization constants), else why not. A kp built against
    another NumPy ABI than the one running (Debian's pybind11 2.10 under NumPy 2) reads the array's
    dtype fields at the wrong offsets and computes on zeros without an error: a silent wrong answer,
    refused here. Costs one short-lived kp.Manager (a few tens of ms), once per process."""
    import numpy as np
    probes = (np.arange(1, 65, dtype=np.float32) * np.float32(0.5), np.arange(7, 71, dtype=np.uint32))
    try:
        try:
            index = devmod.resolve_device(None).index
        except (ValueError, TypeError):
            index = devmod.best_device(devices).index
        mgr = kp.Manager(index)
    except Exception as exc:  # no usable device: say so rather than fail later
        return f"kp could not open a Vulkan device: {exc}"
    try:
        for probe in probes:
            t = mgr.tensor_t(probe, kp.TensorTypes.host)
            try:
                back = np.array(t.data(), copy=True)
            finally:
                t.destroy()
            if back.dtype != probe.dtype or back.shape != probe.shape or not np.array_equal(back, probe):
                shown = np.array2string(back.ravel()[:4], separator=", ")
                return (f"kp corrupts NumPy arrays (a {probe.dtype} arange came back as {back.dtype} {shown}...): "
                        f"the installed kp was built against another NumPy ABI than NumPy {np.__version__}; "
                        "rebuild it with scripts/setup.sh (pybind11 2.13 from PyPI, vkconvt's patch)")
    except Exception as exc:
        return (f"kp failed to pass a NumPy array to Vulkan memory and back ({type(exc).__name__}: {exc}); "
                "rebuild it with scripts/setup.sh")
    finally:
        mgr.destroy()
    return None


class VulkanBackend:
    name = name

    def __init__(self, index):
        from ..vulkan import device as devmod
        self.index = index
        self._devmod = devmod
        self._dev = devmod.get_device(index)

    @property
    def dev(self):
        """The process's Device (a forked child gets its own on first use)."""
        if self._dev.pid != os.getpid():
            self._dev = self._devmod.get_device(self.index)
        return self._dev

    @property
    def device(self):
        return self._dev.info

    def describe(self):
        return self._dev.info.describe()

    def profile(self):
        """The device profile plans for this device are made with (settings overrides applied)."""
        from .. import profile
        return profile.current(self._dev.info)

    def supports(self, kernel):
        """Whether this device offers what `kernel` (a kernels.Kernel) needs to run here."""
        return kernel.supported(self.profile().kernel_device)

    def run(self, plan, sched, args, wait=True):
        """Execute `sched` (a schedule of `plan`) with the call's args; the result lands in args["out"]
        (a host array, or a DeviceArray). wait=False: returns the pending Submission."""
        from ..vulkan import execute
        return execute.run(self.dev, sched, args, wait=wait, max_buffer_bytes=plan.profile.max_buffer_bytes,
                           mode=plan.profile.memory)

    def release(self):
        """Free every cached buffer and recording (out of device memory: the caller retries smaller)."""
        self.dev.clear()

    def forget_owner(self, owner):
        """A layer is gone: free the buffers that held its weights."""
        dev = self._dev
        if not dev.closed and dev.pid == os.getpid():
            dev.drop_owner(owner)


def create(device=None):
    reason = unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(name, reason)
    return VulkanBackend(device)
