"""DeviceArray: an array that lives on a Vulkan device, so consecutive ops keep their data there.

    y = vkconvt.asarray(x, device=0)             # one upload
    y = up3(up2(up1(y)))                         # no host round trip between the layers
    out = y.numpy()                              # one download (waits for the work first)

Every public op and layer takes one and, given one, returns one on the same device; `numpy()` (or
np.asarray) brings it back. A call that does not wait (wait=False) returns at once: the array's data
is ready when it is read (its submission is waited for then), and any error surfaces then at the
latest. An array's buffer is device-local on discrete GPUs (host-visible on CPU and integrated
devices, where it is read in place); it is counted by the device's accounting, and when the array is
garbage-collected its buffer goes back to a small pool of array buffers (bounded), then is freed.
"""
import weakref

import numpy as np

from ..errors import DeviceClosed
from ..params import FLOAT_BYTES
from .execute import ALL_RW, COMPUTE, HOST, HOST_READ, TRANSFER, TRANSFER_READ, TRANSFER_WRITE

DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
POOL_BYTES = 256 << 20          # freed array buffers kept for reuse (per device)


def _words(shape, dtype):
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return max(1, -(-n * dtype.itemsize // FLOAT_BYTES))


class DeviceArray:
    """A C-contiguous float32 or float16 array in a buffer of one Vulkan device."""

    __array_priority__ = 100

    def __init__(self, dev, shape, dtype, tensor=None, base=None):
        self.dev = dev
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        if self.dtype not in DTYPES:
            raise TypeError(f"a DeviceArray holds float32 or float16, got {self.dtype}")
        self.base = base
        self.pending = None if base is None else base.pending
        if tensor is None:
            tensor = acquire(dev, _words(self.shape, self.dtype))
            weakref.finalize(self, give_back, dev, tensor)
        self.tensor = tensor

    # ------------------------------------------------------------------ array-like
    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self):
        return self.size * self.dtype.itemsize

    @property
    def device(self):
        return self.dev.info.describe()

    def __repr__(self):
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, device={self.dev.info.name!r})"

    def __len__(self):
        return self.shape[0]

    def reshape(self, *shape):
        """A view with another shape (the same buffer; -1 allowed once)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = np.empty(self.shape, dtype=np.bool_).reshape(shape).shape     # NumPy's rules and errors
        return DeviceArray(self.dev, shape, self.dtype, self.tensor, base=self.base or self)

    def check(self, dev):
        """Raise unless this array can be used on `dev` now."""
        if self.dev.closed:
            raise DeviceClosed(f"this DeviceArray's device {self.dev.info.name} was closed; its data is gone")
        if dev is not self.dev:
            raise ValueError(f"a DeviceArray of device {self.dev.info.describe()} was given to a call on "
                             f"{dev.info.describe()}: move it with vkconvt.asarray(a.numpy(), device=...)")

    def ready(self):
        """Whether the work that writes this array has finished (reading it then does not wait)."""
        sub = self._submission()
        return sub is None or sub.ready()

    def wait(self):
        sub = self._submission()
        if sub is not None:
            with self.dev.lock:
                sub.wait()
        return self

    def _submission(self):
        return self.pending if self.base is None else (self.base.pending or self.pending)

    def numpy(self):
        """The data as a new host NumPy array (waits for the work that writes it)."""
        dev = self.dev
        with dev.lock:
            if dev.closed:
                raise DeviceClosed(f"this DeviceArray's device {dev.info.name} was closed; its data is gone")
            self.wait()
            from .execute import finish_in_flight
            finish_in_flight(dev)
            out = np.empty(self.shape, dtype=self.dtype)
            flat = out.reshape(-1).view(np.uint8)
            if dev.mode_of(self.tensor) == "host":
                flat[...] = self.tensor.data().view(np.uint8)[:self.nbytes]
            else:
                stage = dev.buffer("array download", _words(self.shape, self.dtype), "staged", "download")
                seq = transfer_sequence(dev, self.tensor, stage, self.nbytes, down=True)
                seq.eval()
                dev.counters["submissions"] += 1
                dev.counters["fence_waits"] += 1
                flat[...] = stage.data().view(np.uint8)[:self.nbytes]
            dev.counters["bytes_down"] += self.nbytes
        return out

    def __array__(self, dtype=None, copy=None):
        out = self.numpy()
        return out if dtype is None else out.astype(dtype)


def acquire(dev, words):
    """An array buffer of at least `words` words: a freed one of its size class, else a new one."""
    from .device import size_class
    size = size_class(words, dev.info.max_storage_buffer_range // FLOAT_BYTES)
    placement = "host" if dev.mode() == "host" else "device"
    with dev.lock:
        dev.check_open()
        free = dev.array_pool.get((size, placement))
        if free:
            t = free.pop()
            dev.array_pool_bytes -= FLOAT_BYTES * size
            return t
        t = dev.new_tensor(size, placement, "download" if placement == "host" else None)
        dev.array_placement[id(t)] = placement
        return t


def give_back(dev, tensor):
    """A garbage-collected array's buffer: kept for reuse while the pool is small, else freed."""
    if dev.closed or dev.pid != __import__("os").getpid():
        return
    with dev.lock:
        nbytes = FLOAT_BYTES * tensor.size()
        placement = dev.array_placement.get(id(tensor), "device")
        if dev.array_pool_bytes + nbytes <= POOL_BYTES:
            dev.array_pool.setdefault((tensor.size(), placement), []).append(tensor)
            dev.array_pool_bytes += nbytes
            return
        dev.array_placement.pop(id(tensor), None)
        dev.release(tensor)


def transfer_sequence(dev, array_tensor, stage, nbytes, down):
    """A recorded copy between an array's buffer and a staging buffer (device mode), cached."""
    key = (id(array_tensor), id(stage), nbytes, down)
    seq = dev.transfer_seqs.get(key)
    if seq is None:
        kp = dev.kp
        if down:
            ops = [kp.OpGlobalBarrier(ALL_RW, ALL_RW, COMPUTE | TRANSFER, COMPUTE | TRANSFER),
                   kp.OpCopyRegions(array_tensor, stage, [(0, 0, nbytes)]),
                   kp.OpGlobalBarrier(TRANSFER_WRITE, TRANSFER_READ | TRANSFER_WRITE, TRANSFER, TRANSFER),
                   kp.OpTensorSyncLocal([stage], 0, nbytes),
                   kp.OpGlobalBarrier(TRANSFER_WRITE, HOST_READ, TRANSFER, HOST)]
        else:
            ops = [kp.OpGlobalBarrier(ALL_RW, ALL_RW, COMPUTE | TRANSFER, COMPUTE | TRANSFER),
                   kp.OpTensorSyncDevice([stage], 0, nbytes),
                   kp.OpGlobalBarrier(TRANSFER_WRITE, TRANSFER_READ | TRANSFER_WRITE, TRANSFER, TRANSFER),
                   kp.OpCopyRegions(stage, array_tensor, [(0, 0, nbytes)]),
                   kp.OpGlobalBarrier(TRANSFER_WRITE, ALL_RW, TRANSFER, COMPUTE | TRANSFER)]
        seq = dev.sequence(ops)
        dev.transfer_seqs[key] = seq
    return seq


def asarray(dev, host):
    """A new DeviceArray on `dev` holding the host array `host` (float32 or float16, C-contiguous)."""
    host = np.ascontiguousarray(host)
    arr = DeviceArray(dev, host.shape, host.dtype)
    src = host.reshape(-1).view(np.uint8)
    with dev.lock:
        from .execute import finish_in_flight
        finish_in_flight(dev)
        if dev.mode_of(arr.tensor) == "host":
            arr.tensor.data().view(np.uint8)[:arr.nbytes] = src
        else:
            stage = dev.buffer("array upload", _words(arr.shape, arr.dtype), "staged", "upload")
            stage.data().view(np.uint8)[:arr.nbytes] = src
            transfer_sequence(dev, arr.tensor, stage, arr.nbytes, down=False).eval()
            dev.counters["submissions"] += 1
            dev.counters["fence_waits"] += 1
        dev.counters["bytes_up"] += arr.nbytes
    return arr
