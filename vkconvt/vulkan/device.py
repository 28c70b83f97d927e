"""One kp.Manager per Vulkan device per process, and everything that hangs off it.

Device memory is owned here alone:
  * buffers: a pool keyed by role ("x", "w", "out", "col", ...), size class (8 per octave, so a
    buffer is at most 12.5% larger than asked for), placement and owner. Placement is the memory
    mode (settings `memory`, VKCONVT_MEMORY, else by device type): "host" (CPU and integrated
    devices: host-visible buffers the kernels read and write, the host copies in and out of their
    mapped memory) or "device" (discrete GPUs: device-local buffers, each input and output with a
    staging buffer kept with it, copies recorded in the call's command buffer); workspace buffers
    are device-local in both. Memory types are chosen by their flags per direction (memory.py).
    Every recording of the device borrows from the pool (calls on one device are serialised by
    `lock`); a buffer's `tag` says what data it holds (a layer's weights), so that data survives
    between calls until another call overwrites it. A layer's weights get buffers of their own.
  * pipelines: one kp.Algorithm per (kernel, spec, bound buffers, dispatched groups); the patched kp
    compiles each (SPIR-V, spec) pipeline once and shares it between algorithms while any lives.
  * recordings: an LRU of recorded schedules (execute.py), destroyed when evicted.
  * accounting: `allocated_bytes`, `workspace_bytes` and their peaks are sums over the registry of live
    buffers (staging copies included), so they are right after any interrupt; `clear()` frees all.
  * counters: queue submissions, fence waits, bytes moved each way, dispatches (vkconvt.stats()).
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

from .. import cache, env, settings
from ..errors import DeviceClosed, DeviceOutOfMemory
from ..params import FLOAT_BYTES
from . import memory, shaders, vkinfo

_devices = {}
_devices_lock = threading.Lock()
_closed = False
_orphans = []      # a forked child's inherited kp objects: never destroyed, never used
COUNTERS = ("submissions", "fence_waits", "bytes_up", "bytes_down", "dispatches", "copies", "recordings")
KP_PATCH = 2       # the vkconvt patch level of kp this code needs (scripts/kp/)


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


def size_class(nwords, cap_words):
    """The pool's size for a buffer of nwords: rounded up to 8 steps per octave, never over cap."""
    n = max(1, int(nwords))
    if n <= 256:
        return min(256, cap_words) if n <= cap_words else n
    step = 1 << max(0, n.bit_length() - 4)
    return min(-(-n // step) * step, max(n, cap_words))


def default_memory(info):
    """Where buffers live by default: "host" on CPU and integrated devices (memory is shared), else
    "device" (device-local buffers with staging)."""
    return "host" if info.type in ("cpu", "integrated-gpu") else "device"


class Device:
    """A Vulkan device: its kp.Manager, buffer pool, pipelines, recordings, counters."""

    def __init__(self, info):
        env.apply_layer_policy()
        import kp
        if getattr(kp, "VKCONVT_PATCHES", 0) < KP_PATCH:
            raise RuntimeError("kp was built without vkconvt's patch (scripts/kp/): run scripts/setup.sh to build it")
        self.kp = kp
        self.info = info
        self.mgr = kp.Manager(info.index)
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self.closed = False
        self._live = {}                                   # id -> (tensor, bytes, workspace)
        self.pool = collections.OrderedDict()             # (role, size, placement, owner) -> tensor, LRU
        self.tags = {}                                    # id(tensor) -> what data it holds
        self.algorithms = collections.OrderedDict()       # key -> (kp.Algorithm, tensor ids)
        self.recordings = cache.LRU(f"recordings:{info.index}", 64, on_evict=lambda rec: rec.destroy())
        self.max_algorithms = 512
        self.max_pool_bytes = max(256 << 20, min(info.device_local_bytes // 2, 8 << 30))
        self.peak_bytes = 0
        self.workspace_peak_bytes = 0
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.device_ns = 0.0
        self.in_flight = None                             # the submission not yet waited for (execute.py)
        self._evicted = 0
        self.memory_types = {mode: memory.plan(info, mode == "device") for mode in settings.MEMORY}
        self.array_pool = {}                              # (size, placement) -> [free device-array buffers]
        self.array_pool_bytes = 0
        self.array_placement = {}                         # id(tensor) -> placement of a device array's buffer
        self.transfer_seqs = {}                           # device-array upload/download sequences

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

    def mode(self):
        """The memory mode in force: settings' `memory`, else VKCONVT_MEMORY, else by device type (plans
        carry theirs: profile.memory)."""
        return settings.get("memory") or env.memory_mode() or default_memory(self.info)

    def stats(self, reset=False):
        out = dict(self.counters, device=self.info.describe(), memory=self.mode(), allocated_bytes=self.allocated_bytes,
                   device_ms=self.device_ns / 1e6, pipelines_alive=int(self.kp.pipelines_alive()),
                   pipelines_created=int(self.kp.pipelines_created()))
        if reset:
            self.counters = dict.fromkeys(COUNTERS, 0)
            self.device_ns = 0.0
        return out

    # ------------------------------------------------------------------ buffers
    def new_tensor(self, nwords, placement, direction=None, workspace=False):
        """A fresh buffer of nwords 32-bit words. placement "host": host-visible (direction "upload"
        or "download" picks the memory type); "staged": device-local with a staging copy; "device":
        device-local only."""
        nbytes = FLOAT_BYTES * nwords
        if nbytes > self.info.max_storage_buffer_range:
            raise ValueError(f"internal: a {nbytes}-byte buffer exceeds maxStorageBufferRange "
                             f"{self.info.max_storage_buffer_range}")
        kp = self.kp
        types = self.memory_types["device" if placement != "host" else "host"]
        if placement == "host":
            kind, primary, staging = kp.TensorTypes.host, types[direction or "upload"], -1
        elif placement == "staged":
            kind, primary, staging = kp.TensorTypes.device, types["device"], types[direction or "upload"]
        else:
            kind, primary, staging = kp.TensorTypes.storage, types["device"], -1
        with _alloc_lock:
            kp.set_memory_type_override(-1 if primary is None else primary, -1 if staging is None else staging)
            try:
                t = self.mgr.tensor_t(np.zeros(nwords, dtype=np.float32), kind)
            except Exception as exc:  # vk::OutOfDeviceMemoryError and friends
                raise DeviceOutOfMemory(f"could not allocate {nbytes} bytes on {self.info.name} "
                                        f"({self.allocated_bytes} bytes already held by vkconvt): {exc}",
                                        needed_bytes=nbytes) from exc
            finally:
                kp.set_memory_type_override(-1, -1)
        # One dict store registers it: an interrupt before it leaves an unreferenced tensor that
        # Kompute frees, after it a counted one that clear() frees. The count is never wrong.
        self._live[id(t)] = (t, nbytes * (2 if placement == "staged" else 1), workspace)
        self.peak_bytes = max(self.peak_bytes, self.allocated_bytes)
        if workspace:
            self.workspace_peak_bytes = max(self.workspace_peak_bytes, self.workspace_bytes)
        return t

    def buffer(self, role, nwords, placement="host", direction=None, workspace=False, cap_words=None,
               budget_bytes=None, owner=None, keep=()):
        """A pooled buffer for `role` holding at least nwords words (at most cap_words where given). Its
        contents are whatever the last user left (see tags). A workspace buffer is counted apart; idle
        ones are freed (oldest first) so that all workspace held stays within budget_bytes, except
        those in `keep` (the buffers of the recording being made)."""
        self.check_open()
        limit = self.info.max_storage_buffer_range // FLOAT_BYTES
        size = size_class(nwords, min(limit, cap_words or limit))
        key = (role, size, placement, direction, owner)
        t = self.pool.get(key)
        if t is not None:
            self.pool.move_to_end(key)
            return t
        if workspace and budget_bytes is not None:
            for k in [k for k in self.pool if self._live[id(self.pool[k])][2] and self.pool[k] not in keep]:
                if self.workspace_bytes + FLOAT_BYTES * size <= budget_bytes:
                    break
                self.drop(k)
        self._trim(FLOAT_BYTES * size)
        t = self.new_tensor(size, placement, direction, workspace)
        self.pool[key] = t
        return t

    def dummy(self):
        """A small buffer bound where a kernel's optional input (bias) is absent."""
        return self.buffer("dummy", 1, "device", cap_words=1)

    def _trim(self, incoming):
        while self.pool and sum(v[1] for v in self._live.values()) + incoming > self.max_pool_bytes:
            self.drop(next(iter(self.pool)))

    def drop(self, key):
        """Destroy a pooled buffer and everything bound to it (pipelines, recordings)."""
        self.release(self.pool.pop(key))

    def drop_owner(self, owner):
        """Free the buffers a layer owned (its weights), once the layer is gone."""
        with self.lock:
            for key in [k for k in self.pool if k[4] == owner]:
                self.drop(key)

    def mode_of(self, t):
        """The placement of a device array's buffer ("host" or "device")."""
        return self.array_placement.get(id(t), "device")

    def release(self, t):
        """Destroy a buffer (pooled or a device array's) and the recordings, sequences and pipelines
        bound to it."""
        tid = id(t)
        for key, rec in self.recordings.items():
            if tid in rec.tensor_ids:
                self.recordings.pop(key)
                rec.destroy()
            else:
                rec.forget_tensor(tid)
        for key in [k for k in self.transfer_seqs if tid in (k[0], k[1])]:
            self.transfer_seqs.pop(key).destroy()
        for akey in [k for k, (_, ids) in self.algorithms.items() if tid in ids]:
            self.algorithms.pop(akey)[0].destroy()
        self.tags.pop(tid, None)
        if self._live.pop(tid, None) is not None:
            t.destroy()

    # ------------------------------------------------------------------ pipelines and sequences
    def algorithm(self, kernel, tensors, spec, push, groups):
        """The kp.Algorithm of `kernel` with `spec`, bound to `tensors`, dispatching `groups`
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
            old_key, (old, old_ids) = next(iter(self.algorithms.items()))
            for rkey, rec in self.recordings.items():
                if old_key in rec.algorithm_keys:
                    self.recordings.pop(rkey)
                    rec.destroy()
            self.algorithms.pop(old_key, None)
            old.destroy()
        return algo

    def sequence(self, ops, timestamps=False):
        """A kp sequence with `ops` recorded once (timestamps: one after each op)."""
        seq = self.mgr.sequence(0, len(ops) + 1 if timestamps and self.info.timestamps else 0)
        for op in ops:
            seq.record(op)
        self.counters["recordings"] += 1
        return seq

    def forget(self, evicted):
        """After recordings were destroyed: a kp built by scripts/setup.sh drops its references."""
        self._evicted += evicted
        if self._evicted >= 64:
            self._evicted = 0
            self.mgr.clear()

    def clear(self):
        """Free every buffer, pipeline and recording of this device (device arrays stay valid)."""
        with self.lock:
            from .execute import finish_in_flight
            finish_in_flight(self)
            self.recordings.clear()
            for seq in self.transfer_seqs.values():
                seq.destroy()
            self.transfer_seqs.clear()
            for free in self.array_pool.values():
                for t in free:
                    self.array_placement.pop(id(t), None)
                    self.release(t)
            self.array_pool.clear()
            self.array_pool_bytes = 0
            while self.pool:
                self.drop(next(iter(self.pool)))
            for _, (algo, _) in list(self.algorithms.items()):
                algo.destroy()
            self.algorithms.clear()
            self.tags.clear()
            self.mgr.clear()

    def close(self):
        with self.lock:
            if self.closed:
                return
            try:
                self.clear()
            finally:
                for t, _, _ in list(self._live.values()):
                    self._live.pop(id(t), None)
                    t.destroy()
                self.closed = True
                self.mgr.destroy()


_alloc_lock = threading.Lock()      # the memory-type override is process-wide: one allocation at a time


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


def open_devices():
    """The devices made in this process so far."""
    with _devices_lock:
        return [d for d in _devices.values() if d.pid == os.getpid()]


def _forget_after_fork():
    """In a forked child: the parent's Vulkan objects are unusable here and must never be
    destroyed here either (their destructors would wait on threads the child does not have), so
    keep them referenced forever and start afresh."""
    global _devices_lock, _alloc_lock
    for dev in _devices.values():
        _orphans.append(dev)
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(dev))
    _devices.clear()
    _devices_lock = threading.Lock()
    _alloc_lock = threading.Lock()


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
