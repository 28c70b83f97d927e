"""One kp.Manager per Vulkan device per process, and everything that hangs off it.

Device memory is owned here alone:
  * buffers: a pool of storage buffers keyed by role ("x", "w", "out", "col", ...) and size class
    (8 classes per octave, so a buffer is at most 12.5% larger than asked for). Every plan of the
    device borrows from it (calls on one device are serialised by `lock`), so buffers, and the
    pipelines bound to them, are shared across problem sizes. A buffer's `tag` says what data it
    holds (a layer's weights), so that data survives between calls until another call overwrites it.
  * pipelines: one kp.Algorithm per (kernel, specialization constants, bound buffers, dispatch size
    class), kept while its buffers live: Kompute leaks a little memory with every destroyed
    algorithm, and pipelines are expensive to build, so they are never rebuilt per shape.
  * recorded plans: an LRU of recorded kp sequences per problem (destroyed freely).
  * accounting: `allocated_bytes`, `workspace_bytes` (the gemm column buffers) and their peaks are
    sums over the registry of live buffers, so they are right after any interrupt; `clear()` frees
    everything.
A child process made by fork() cannot use its parent's Vulkan objects (llvmpipe's threads are not
copied, and a driver's state is not fork-safe): the child forgets them without touching them and
makes its own device on first use.
"""
import atexit
import collections
import ctypes
import os
import threading

import numpy as np

from . import env, shaders, vkinfo
from .errors import DeviceClosed, DeviceOutOfMemory
from .params import FLOAT_BYTES

_devices = {}
_devices_lock = threading.Lock()
_closed = False
_orphans = []      # a forked child's inherited kp objects: never destroyed, never used


def resolve_device(device=None):
    """A DeviceInfo from an index, a substring of the device name, or None (VKCONVT_DEVICE, else the
    most capable device: discrete, integrated, virtual, then CPU)."""
    devices = vkinfo.list_devices()
    if not devices:
        raise vkinfo.VulkanUnavailable("the Vulkan loader reports no physical device "
                                       "(Debian: apt-get install mesa-vulkan-drivers for lavapipe)")
    source = "device"
    if device is None:
        device = env.default_device()
        source = "VKCONVT_DEVICE"
        if device is None:
            return best_device(devices)
    listing = "; ".join(d.describe() for d in devices)
    if isinstance(device, vkinfo.DeviceInfo):
        return device
    if isinstance(device, (int, np.integer)) and not isinstance(device, bool) or (
            isinstance(device, str) and device.strip().isdigit()):
        i = int(device)
        if not 0 <= i < len(devices):
            raise ValueError(f"{source}={device!r} is out of range: {len(devices)} Vulkan device(s): {listing}")
        return devices[i]
    if isinstance(device, str):
        if not device.strip():
            raise ValueError(f"{source}={device!r} is empty: give an index or a substring of a device name "
                             f"({listing})")
        hits = [d for d in devices if device.strip().lower() in d.name.lower()]
        if not hits:
            raise ValueError(f"{source}={device!r} matches no Vulkan device name: {listing}")
        return hits[0]
    raise TypeError(f"{source} must be an index or a substring of a device name, got {device!r}")


def best_device(devices=None):
    devices = devices or vkinfo.list_devices()
    return min(devices, key=lambda d: (vkinfo.TYPE_RANK.get(d.type, 9), d.index))


def size_class(nfloats, cap_floats):
    """The pool's size for a buffer of nfloats: rounded up to 8 steps per octave, never over cap."""
    n = max(1, int(nfloats))
    if n <= 256:
        return min(256, cap_floats) if n <= cap_floats else n
    step = 1 << max(0, n.bit_length() - 4)
    return min(-(-n // step) * step, max(n, cap_floats))


class Device:
    """A Vulkan device: its kp.Manager, limits, buffer pool, pipelines and recorded plans."""

    def __init__(self, info):
        env.apply_layer_policy()
        import kp
        self.kp = kp
        self.info = info
        self.mgr = kp.Manager(info.index)
        self.pid = os.getpid()
        # CPU and integrated devices share memory with the host: host-visible buffers need no
        # staging copies. Discrete GPUs get device-local buffers with staging.
        self.host_visible = info.type in ("cpu", "integrated-gpu")
        self.lock = threading.RLock()
        self.closed = False
        self._live = {}                                   # id -> (tensor, bytes, workspace)
        self.pool = collections.OrderedDict()             # (role, size) -> tensor, LRU
        self.tags = {}                                    # id(tensor) -> what data it holds
        self.algorithms = collections.OrderedDict()       # key -> (kp.Algorithm, tensor ids)
        self.plans = collections.OrderedDict()            # key -> recorded plan (has .destroy())
        self._syncs = {}                                  # (id, direction) -> kp.Sequence
        self.max_cached_plans = 64
        self.max_algorithms = 512
        self.max_pool_bytes = max(256 << 20, min(info.device_local_bytes // 2, 8 << 30))
        self.peak_bytes = 0
        self.workspace_peak_bytes = 0
        self._evicted = 0

    # ------------------------------------------------------------------ accounting
    @property
    def allocated_bytes(self):
        """Bytes of every live vkconvt buffer on this device (staging copies included)."""
        return sum(v[1] for v in list(self._live.values()))

    @property
    def workspace_bytes(self):
        return sum(v[1] for v in list(self._live.values()) if v[2])

    def reset_peak(self):
        self.peak_bytes = self.allocated_bytes
        self.workspace_peak_bytes = self.workspace_bytes

    def check_open(self):
        if self.closed or _closed:
            raise DeviceClosed(f"vkconvt's Vulkan device {self.info.name} was closed (at interpreter exit or by "
                               "close()); no more work can run on it")

    # ------------------------------------------------------------------ buffers
    def _new_tensor(self, nfloats, workspace):
        nbytes = FLOAT_BYTES * nfloats
        if nbytes > self.info.max_storage_buffer_range:
            raise ValueError(f"internal: a {nbytes}-byte buffer exceeds maxStorageBufferRange "
                             f"{self.info.max_storage_buffer_range}")
        kind = self.kp.TensorTypes.host if self.host_visible else self.kp.TensorTypes.device
        try:
            t = self.mgr.tensor_t(np.zeros(nfloats, dtype=np.float32), kind)
        except Exception as exc:  # vk::OutOfDeviceMemoryError and friends
            raise DeviceOutOfMemory(f"could not allocate {nbytes} bytes on {self.info.name} "
                                    f"({self.allocated_bytes} bytes already held by vkconvt): {exc}",
                                    needed_bytes=nbytes) from exc
        # One dict store registers it: an interrupt before it leaves an unreferenced tensor that
        # Kompute frees, after it a counted one that clear() frees. The count is never wrong.
        self._live[id(t)] = (t, nbytes if self.host_visible else 2 * nbytes, workspace)
        self.peak_bytes = max(self.peak_bytes, self.allocated_bytes)
        if workspace:
            self.workspace_peak_bytes = max(self.workspace_peak_bytes, self.workspace_bytes)
        return t

    def buffer(self, role, nfloats, workspace=False, cap_floats=None, budget_bytes=None):
        """A pooled buffer for `role` holding at least nfloats floats (at most cap_floats where
        given). Its contents are whatever the last user left (see tag). A workspace buffer is
        counted apart; idle ones are freed (oldest first) so that all workspace held stays within
        budget_bytes."""
        self.check_open()
        limit = self.info.max_storage_buffer_range // FLOAT_BYTES
        size = size_class(nfloats, min(limit, cap_floats or limit))
        key = (role, size)
        t = self.pool.get(key)
        if t is not None:
            self.pool.move_to_end(key)
            return t
        if workspace and budget_bytes is not None:
            for k in [k for k in self.pool if self._live[id(self.pool[k])][2]]:
                if self.workspace_bytes + FLOAT_BYTES * size <= budget_bytes:
                    break
                self.drop(k)
        self._trim(FLOAT_BYTES * size)
        t = self._new_tensor(size, workspace)
        self.pool[key] = t
        return t

    def dummy(self):
        """A one-float buffer bound where a kernel's optional input (bias) is absent."""
        return self.buffer("dummy", 1, cap_floats=1)

    def _trim(self, incoming):
        while self.pool and sum(v[1] for v in self._live.values()) + incoming > self.max_pool_bytes:
            self.drop(next(iter(self.pool)))

    def drop(self, key):
        """Destroy a pooled buffer and everything bound to it (pipelines, recorded plans)."""
        t = self.pool.pop(key)
        tid = id(t)
        for pkey in [k for k, plan in self.plans.items() if tid in plan.tensor_ids]:
            self.plans.pop(pkey).destroy()
        for akey in [k for k, (_, ids) in self.algorithms.items() if tid in ids]:
            self.algorithms.pop(akey)[0].destroy()
        for skey in [k for k in self._syncs if k[0] == tid]:
            self._syncs.pop(skey).destroy()
        self.tags.pop(tid, None)
        self._release(t)

    def _release(self, t):
        entry = self._live.pop(id(t), None)
        if entry is not None:
            t.destroy()

    # ------------------------------------------------------------------ pipelines and sequences
    def algorithm(self, kernel, tensors, spec, push, groups):
        """The pooled pipeline of `kernel` with `spec`, bound to `tensors`, dispatching `groups`
        workgroups (1-D; the shaders walk their logical grid). push: any valid push array."""
        ids = tuple(id(t) for t in tensors)
        key = (kernel, tuple(spec), ids, groups)
        hit = self.algorithms.get(key)
        if hit is not None:
            self.algorithms.move_to_end(key)
            return hit[0]
        algo = self.mgr.algorithm(list(tensors), shaders.spirv(kernel), [groups, 1, 1],
                                  np.asarray(spec, dtype=np.uint32), np.asarray(push, dtype=np.uint32))
        self.algorithms[key] = (algo, set(ids))
        while len(self.algorithms) > self.max_algorithms:
            old_key = next(iter(self.algorithms))
            for pkey in [k for k, plan in self.plans.items() if old_key in plan.algorithm_keys]:
                self.plans.pop(pkey).destroy()
            self.algorithms.pop(old_key)[0].destroy()
        return algo

    def sequence(self, ops, timestamps=False):
        """A kp sequence with `ops` recorded once. Timestamps are opt-in: Kompute 0.9.0 never
        resets its query pool (a validation error), so only the benchmark asks for them."""
        seq = self.mgr.sequence(0, len(ops) + 1 if timestamps and self.info.timestamps else 0)
        for op in ops:
            seq.record(op)
        return seq

    def sync(self, tensor, to_device):
        """Copy a device-local buffer from (to_device) or to its host staging copy; a no-op on
        host-visible devices."""
        if self.host_visible:
            return
        key = (id(tensor), to_device)
        seq = self._syncs.get(key)
        if seq is None:
            op = self.kp.OpTensorSyncDevice if to_device else self.kp.OpTensorSyncLocal
            seq = self._syncs[key] = self.sequence([op([tensor])])
        seq.eval()

    # ------------------------------------------------------------------ recorded plans
    def cached_plan(self, key, build):
        """The recorded plan for key, built (and cached, LRU) on first use. A build that fails
        frees the buffers it created, so nothing stays allocated after a failed call."""
        plan = self.plans.get(key)
        if plan is not None:
            self.plans.move_to_end(key)
            return plan
        before = set(self.pool)
        try:
            plan = build()
        except BaseException:
            for k in [k for k in self.pool if k not in before]:
                self.drop(k)
            raise
        self.plans[key] = plan
        while len(self.plans) > self.max_cached_plans:
            self.plans.popitem(last=False)[1].destroy()
            self._evicted += 1
            if self._evicted % 64 == 0 and hasattr(self.mgr, "clear"):
                self.mgr.clear()     # a kp built by scripts/setup.sh forgets destroyed objects here
        return plan

    def clear(self):
        """Free every buffer, pipeline and recorded plan of this device."""
        with self.lock:
            while self.plans:
                self.plans.popitem(last=False)[1].destroy()
            while self.pool:
                self.drop(next(iter(self.pool)))
            for _, (algo, _) in list(self.algorithms.items()):
                algo.destroy()
            self.algorithms.clear()
            for seq in self._syncs.values():
                seq.destroy()
            self._syncs.clear()
            for t, _, _ in list(self._live.values()):
                self._release(t)
            self.tags.clear()
            if hasattr(self.mgr, "clear"):
                self.mgr.clear()         # a kp built by scripts/setup.sh drops its stale references

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.clear()
            self.closed = True
            self.mgr.destroy()


def get_device(device=None):
    """The process-wide Device for `device` (see resolve_device)."""
    info = resolve_device(device)
    with _devices_lock:
        if _closed:
            raise DeviceClosed("vkconvt's Vulkan devices were closed at interpreter exit; no more work can run")
        dev = _devices.get(info.index)
        if dev is None or dev.pid != os.getpid():
            dev = _devices[info.index] = Device(info)
        return dev


def _forget_after_fork():
    """In a forked child: the parent's Vulkan objects are unusable here and must never be
    destroyed here either (their destructors would wait on threads the child does not have), so
    keep them referenced forever and start afresh."""
    global _devices_lock
    for dev in _devices.values():
        _orphans.append(dev)
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(dev))
    _devices.clear()
    _devices_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def _close_all():
    # Destroy sequences, pipelines and buffers before their Manager, in that order.
    global _closed
    with _devices_lock:
        _closed = True
        for dev in list(_devices.values()):
            if dev.pid != os.getpid():
                continue
            try:
                dev.close()
            except Exception:
                pass
        _devices.clear()
