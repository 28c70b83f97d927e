"""Which Vulkan memory type each buffer takes, by its flags and its direction.

Kompute 0.9.0 takes the first memory type that has the flags it requires, and never asks for
HOST_CACHED; on discrete NVIDIA and AMD GPUs that first host-visible type is write-combined, which
the CPU reads one to two orders of magnitude slower than cached memory. vkconvt chooses itself
(the patched kp's `set_memory_type_override` makes Kompute take the index), per role:

  device    a device-local buffer only the GPU touches (workspace, the device side of a staged
            buffer, device arrays): DEVICE_LOCAL, preferably not host-visible (keeps the small BAR
            heap free), from the largest heap.
  upload    host-written memory (a staging buffer on a discrete GPU; on a CPU or integrated GPU the
            buffer the kernels read): HOST_VISIBLE|HOST_COHERENT, preferably not HOST_CACHED
            (write-combined streams CPU writes fastest); a staging buffer preferably not
            DEVICE_LOCAL (a BAR heap is small), a buffer the GPU reads directly preferably so.
  download  host-read memory: HOST_VISIBLE|HOST_COHERENT|HOST_CACHED where there is one (reads
            from cached memory are fast); a staging buffer preferably not DEVICE_LOCAL (reading
            VRAM through the BAR is slow), a buffer the GPU writes directly preferably so.

Host-visible buffers stay off a small device-local heap (under half the largest device-local heap:
the 214-256 MiB BAR window of a discrete GPU without resizable BAR, an APU's carve-out) where another
type will do: a discrete GPU used in host mode would otherwise put every input there. Types that
are protected, lazily allocated or AMD's device-coherent/uncached ones are never taken. Host-visible
types must be coherent: Kompute neither flushes nor invalidates mapped memory. Ties go to the lower
index (drivers list types in their order of preference). tests/memory_types.py holds real devices'
lists, and tests/test_memory_types.py what is chosen on each.
"""
DEVICE_LOCAL, HOST_VISIBLE, HOST_COHERENT, HOST_CACHED = 0x1, 0x2, 0x4, 0x8
LAZILY_ALLOCATED, PROTECTED, DEVICE_COHERENT_AMD, DEVICE_UNCACHED_AMD = 0x10, 0x20, 0x40, 0x80
AVOID = LAZILY_ALLOCATED | PROTECTED | DEVICE_COHERENT_AMD | DEVICE_UNCACHED_AMD
ROLES = ("device", "upload", "download")
NAMES = ((DEVICE_LOCAL, "DEVICE_LOCAL"), (HOST_VISIBLE, "HOST_VISIBLE"), (HOST_COHERENT, "HOST_COHERENT"),
         (HOST_CACHED, "HOST_CACHED"), (LAZILY_ALLOCATED, "LAZILY_ALLOCATED"), (PROTECTED, "PROTECTED"),
         (DEVICE_COHERENT_AMD, "DEVICE_COHERENT_AMD"), (DEVICE_UNCACHED_AMD, "DEVICE_UNCACHED_AMD"))


def flag_names(flags):
    return "|".join(n for bit, n in NAMES if flags & bit) or "0"


def choose(types, heaps, role, staging=True):
    """The index of the memory type for a buffer of `role` ("device", "upload", "download"), or None.

    types: ((flags, heap index), ...) as vkGetPhysicalDeviceMemoryProperties lists them;
    heaps: ((bytes, device_local), ...). staging: the host-visible buffer is a staging copy of a
    device-local one (discrete GPUs), else the kernels use it directly (CPU, integrated GPUs)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    required = DEVICE_LOCAL if role == "device" else HOST_VISIBLE | HOST_COHERENT

    def heap_size(h):
        return heaps[h][0] if 0 <= h < len(heaps) else 0

    largest_local = max((size for size, local in heaps if local), default=0)

    def small(h):
        return 0 <= h < len(heaps) and heaps[h][1] and 2 * heaps[h][0] < largest_local

    best = None
    for i, (flags, heap) in enumerate(types):
        if flags & required != required or flags & AVOID:
            continue
        local, visible, cached = bool(flags & DEVICE_LOCAL), bool(flags & HOST_VISIBLE), bool(flags & HOST_CACHED)
        if role == "device":
            score = (visible, -heap_size(heap))
        elif role == "upload":
            score = (small(heap), local == staging, cached)
        else:
            score = (small(heap), not cached, local == staging)
        if best is None or score < best[0]:
            best = (score, i)
    return None if best is None else best[1]


def plan(info, staged):
    """{role: memory type index or None} for a device (a vkinfo.DeviceInfo): staged (discrete GPUs):
    device-local buffers with staging copies; else host-visible buffers used directly."""
    types, heaps = info.memory_types, info.heaps
    return {"device": choose(types, heaps, "device"),
            "upload": choose(types, heaps, "upload", staging=staged),
            "download": choose(types, heaps, "download", staging=staged)}


def describe(info, staged):
    """Lines for `python -m vkconvt info`: the memory type each role takes."""
    out = []
    for role, idx in plan(info, staged).items():
        if idx is None:
            out.append(f"{role}: none (Kompute's own choice)")
            continue
        flags, heap = info.memory_types[idx]
        size = info.heaps[heap][0] if heap < len(info.heaps) else 0
        out.append(f"{role}: type {idx} ({flag_names(flags)}; heap {heap}, {size / 2**30:.1f} GiB)")
    return out
