"""One kp.Manager per Vulkan device per process, and the caches that hang off it.

Everything expensive lives here: SPIR-V bytes (read once), tensors (with the package's own
allocation accounting: `allocated_bytes`, `peak_bytes`), and recorded plans (an LRU keyed by
shape, so a repeated call re-uses its buffers, pipelines and recorded sequences).
"""
import atexit
import collections
import os
import threading

import numpy as np

from . import env, vkinfo
from .errors import DeviceOutOfMemory

SPV_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spv")
OPS = ("matmul", "col2im_1d", "conv_transpose_1d")
_spirv = {}
_devices = {}
_devices_lock = threading.Lock()


def shader_path(op):
    return os.path.join(SPV_DIR, op + ".spv")


def spirv(op):
    """The SPIR-V of shaders/<op>.comp, compiled at build time into vkconvt/spv/<op>.spv."""
    if op not in _spirv:
        path = shader_path(op)
        if not os.path.exists(path):
            raise FileNotFoundError(f"SPIR-V module {path} is missing: reinstall vkconvt or run "
                                    "`python scripts/compile_shaders.py` in its source tree")
        with open(path, "rb") as f:
            _spirv[op] = f.read()
    return _spirv[op]


def resolve_device(device=None):
    """A DeviceInfo from an index, a substring of the device name, or None (VKCONVT_DEVICE, else the
    most capable device: discrete, integrated, virtual, then CPU)."""
    devices = vkinfo.list_devices()
    if not devices:
        raise vkinfo.VulkanUnavailable("the Vulkan loader reports no physical device "
                                       "(Debian: apt-get install mesa-vulkan-drivers for lavapipe)")
    if device is None:
        device = env.default_device()
        if device is None:
            return best_device(devices)
    listing = "; ".join(d.describe() for d in devices)
    if isinstance(device, vkinfo.DeviceInfo):
        return device
    if isinstance(device, (int, np.integer)) and not isinstance(device, bool) or (
            isinstance(device, str) and device.strip().isdigit()):
        i = int(device)
        if not 0 <= i < len(devices):
            raise ValueError(f"device={device!r} is out of range: {len(devices)} Vulkan device(s): {listing}")
        return devices[i]
    if isinstance(device, str):
        hits = [d for d in devices if device.lower() in d.name.lower()]
        if not hits:
            raise ValueError(f"device={device!r} matches no Vulkan device name: {listing}")
        return hits[0]
    raise TypeError(f"device must be an index or a substring of a device name, got {device!r}")


def best_device(devices=None):
    devices = devices or vkinfo.list_devices()
    return min(devices, key=lambda d: (vkinfo.TYPE_RANK.get(d.type, 9), d.index))


class Device:
    """A Vulkan device: its kp.Manager, its limits, its tensors and its plan cache."""

    def __init__(self, info):
        env.apply_layer_policy()
        import kp
        self.kp = kp
        self.info = info
        self.mgr = kp.Manager(info.index)
        # CPU and integrated devices share memory with the host: host-visible tensors need no
        # staging copies. Discrete GPUs get device-local tensors with staging.
        self.host_visible = info.type in ("cpu", "integrated-gpu")
        self.tensor_type = kp.TensorTypes.host if self.host_visible else kp.TensorTypes.device
        self.lock = threading.RLock()
        # The package's own allocation accounting: all tensors, and the gemm workspace apart.
        self.allocated_bytes = 0
        self.peak_bytes = 0
        self.workspace_bytes = 0
        self.workspace_peak_bytes = 0
        self._costs = {}
        self.plans = collections.OrderedDict()
        self.plan_bytes = 0
        self.max_cached_plans = 32
        self.max_cached_bytes = max(256 << 20, min(info.device_local_bytes // 4, 4 << 30))
        self._dummy = None

    # ------------------------------------------------------------------ tensors
    def tensor(self, nfloats, dtype=np.float32, workspace=False):
        """A device tensor of nfloats 4-byte elements, counted in allocated_bytes (and in
        workspace_bytes when it is scratch memory such as the gemm column buffer)."""
        nfloats = max(1, int(nfloats))
        nbytes = 4 * nfloats
        if nbytes > self.info.max_storage_buffer_range:
            raise ValueError(f"internal: a {nbytes}-byte buffer exceeds maxStorageBufferRange "
                             f"{self.info.max_storage_buffer_range}")
        try:
            t = self.mgr.tensor_t(np.zeros(nfloats, dtype=dtype), self.tensor_type)
        except Exception as exc:  # vk::OutOfDeviceMemoryError and friends
            raise DeviceOutOfMemory(f"could not allocate {nbytes} bytes on {self.info.name} "
                                    f"({self.allocated_bytes} bytes already held by vkconvt): {exc}",
                                    needed_bytes=nbytes) from exc
        cost = nbytes if self.host_visible else 2 * nbytes   # staging + device copy
        self.allocated_bytes += cost
        self.peak_bytes = max(self.peak_bytes, self.allocated_bytes)
        if workspace:
            self.workspace_bytes += cost
            self.workspace_peak_bytes = max(self.workspace_peak_bytes, self.workspace_bytes)
        self._costs[id(t)] = (cost, workspace)
        return t

    def release(self, tensors):
        for t in tensors:
            cost, workspace = self._costs.pop(id(t))
            self.allocated_bytes -= cost
            if workspace:
                self.workspace_bytes -= cost
            t.destroy()

    def dummy(self):
        if self._dummy is None:
            self._dummy = self.tensor(1)
        return self._dummy

    def reset_peak(self):
        self.peak_bytes = self.allocated_bytes
        self.workspace_peak_bytes = self.workspace_bytes

    # ------------------------------------------------------------------ pipelines and sequences
    def algorithm(self, tensors, op, workgroups, spec, push):
        return self.mgr.algorithm(tensors, spirv(op), list(workgroups),
                                  np.asarray(spec, dtype=np.uint32), np.asarray(push, dtype=np.uint32))

    def sequence(self, ops, timestamps=False):
        """A kp sequence with `ops` recorded once. Timestamps are opt-in: Kompute 0.9.0 never
        resets its query pool (a validation error), so only the benchmark asks for them."""
        seq = self.mgr.sequence(0, len(ops) + 1 if timestamps and self.info.timestamps else 0)
        for op in ops:
            seq.record(op)
        return seq

    # ------------------------------------------------------------------ plan cache
    def cached_plan(self, key, build):
        """The plan for key, built (and cached, LRU) on first use."""
        plan = self.plans.get(key)
        if plan is not None:
            self.plans.move_to_end(key)
            return plan
        plan = build()
        self.plans[key] = plan
        self.plan_bytes += plan.nbytes
        while len(self.plans) > 1 and (len(self.plans) > self.max_cached_plans
                                       or self.plan_bytes > self.max_cached_bytes):
            self._evict_oldest()
        return plan

    def _evict_oldest(self):
        _, old = self.plans.popitem(last=False)
        self.plan_bytes -= old.nbytes
        old.destroy(self)

    def clear(self):
        with self.lock:
            while self.plans:
                self._evict_oldest()

    def close(self):
        with self.lock:
            self.clear()
            if self._dummy is not None:
                self.release([self._dummy])
                self._dummy = None
            self.mgr.destroy()


def get_device(device=None):
    """The process-wide Device for `device` (see resolve_device)."""
    info = resolve_device(device)
    with _devices_lock:
        dev = _devices.get(info.index)
        if dev is None:
            dev = _devices[info.index] = Device(info)
        return dev


@atexit.register
def _close_all():
    # Destroy sequences, algorithms and tensors before their Manager, in that order.
    for dev in list(_devices.values()):
        try:
            dev.close()
        except Exception:
            pass
    _devices.clear()
