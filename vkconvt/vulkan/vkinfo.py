"""Vulkan device facts read straight from the loader with ctypes (no kp needed).

Kompute's Python API exposes only a few limits, so vkconvt reads what it plans with
(maxStorageBufferRange, maxComputeWorkGroupCount, memory heaps, device type, driver, timestamp
period) itself. The enumeration order is the loader's, the same one kp.Manager(index) uses.
"""
import ctypes
import ctypes.util
import functools
import os
import stat
import warnings
from dataclasses import dataclass, field
from typing import Tuple

from .. import env

u32, i32, u64, f32, u8 = ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64, ctypes.c_float, ctypes.c_uint8

DEVICE_TYPES = {0: "other", 1: "integrated-gpu", 2: "discrete-gpu", 3: "virtual-gpu", 4: "cpu"}
# The order auto device selection prefers (issue: discrete, integrated, virtual, then CPU).
TYPE_RANK = {"discrete-gpu": 0, "integrated-gpu": 1, "virtual-gpu": 2, "other": 3, "cpu": 4}


class VkLimits(ctypes.Structure):
    _fields_ = [(n, u32) for n in (
        "maxImageDimension1D maxImageDimension2D maxImageDimension3D maxImageDimensionCube "
        "maxImageArrayLayers maxTexelBufferElements maxUniformBufferRange maxStorageBufferRange "
        "maxPushConstantsSize maxMemoryAllocationCount maxSamplerAllocationCount").split()] + [
        ("bufferImageGranularity", u64), ("sparseAddressSpaceSize", u64)] + [(n, u32) for n in (
        "maxBoundDescriptorSets maxPerStageDescriptorSamplers maxPerStageDescriptorUniformBuffers "
        "maxPerStageDescriptorStorageBuffers maxPerStageDescriptorSampledImages "
        "maxPerStageDescriptorStorageImages maxPerStageDescriptorInputAttachments maxPerStageResources "
        "maxDescriptorSetSamplers maxDescriptorSetUniformBuffers maxDescriptorSetUniformBuffersDynamic "
        "maxDescriptorSetStorageBuffers maxDescriptorSetStorageBuffersDynamic maxDescriptorSetSampledImages "
        "maxDescriptorSetStorageImages maxDescriptorSetInputAttachments maxVertexInputAttributes "
        "maxVertexInputBindings maxVertexInputAttributeOffset maxVertexInputBindingStride "
        "maxVertexOutputComponents maxTessellationGenerationLevel maxTessellationPatchSize "
        "maxTessellationControlPerVertexInputComponents maxTessellationControlPerVertexOutputComponents "
        "maxTessellationControlPerPatchOutputComponents maxTessellationControlTotalOutputComponents "
        "maxTessellationEvaluationInputComponents maxTessellationEvaluationOutputComponents "
        "maxGeometryShaderInvocations maxGeometryInputComponents maxGeometryOutputComponents "
        "maxGeometryOutputVertices maxGeometryTotalOutputComponents maxFragmentInputComponents "
        "maxFragmentOutputAttachments maxFragmentDualSrcAttachments maxFragmentCombinedOutputResources "
        "maxComputeSharedMemorySize").split()] + [
        ("maxComputeWorkGroupCount", u32 * 3), ("maxComputeWorkGroupInvocations", u32),
        ("maxComputeWorkGroupSize", u32 * 3)] + [(n, u32) for n in (
        "subPixelPrecisionBits subTexelPrecisionBits mipmapPrecisionBits maxDrawIndexedIndexValue "
        "maxDrawIndirectCount").split()] + [
        ("maxSamplerLodBias", f32), ("maxSamplerAnisotropy", f32), ("maxViewports", u32),
        ("maxViewportDimensions", u32 * 2), ("viewportBoundsRange", f32 * 2), ("viewportSubPixelBits", u32),
        ("minMemoryMapAlignment", ctypes.c_size_t), ("minTexelBufferOffsetAlignment", u64),
        ("minUniformBufferOffsetAlignment", u64), ("minStorageBufferOffsetAlignment", u64),
        ("minTexelOffset", i32), ("maxTexelOffset", u32), ("minTexelGatherOffset", i32),
        ("maxTexelGatherOffset", u32), ("minInterpolationOffset", f32), ("maxInterpolationOffset", f32)] + [
        (n, u32) for n in (
        "subPixelInterpolationOffsetBits maxFramebufferWidth maxFramebufferHeight maxFramebufferLayers "
        "framebufferColorSampleCounts framebufferDepthSampleCounts framebufferStencilSampleCounts "
        "framebufferNoAttachmentsSampleCounts maxColorAttachments sampledImageColorSampleCounts "
        "sampledImageIntegerSampleCounts sampledImageDepthSampleCounts sampledImageStencilSampleCounts "
        "storageImageSampleCounts maxSampleMaskWords timestampComputeAndGraphics").split()] + [
        ("timestampPeriod", f32), ("maxClipDistances", u32), ("maxCullDistances", u32),
        ("maxCombinedClipAndCullDistances", u32), ("discreteQueuePriorities", u32),
        ("pointSizeRange", f32 * 2), ("lineWidthRange", f32 * 2), ("pointSizeGranularity", f32),
        ("lineWidthGranularity", f32), ("strictLines", u32), ("standardSampleLocations", u32),
        ("optimalBufferCopyOffsetAlignment", u64), ("optimalBufferCopyRowPitchAlignment", u64),
        ("nonCoherentAtomSize", u64)]


class VkProperties(ctypes.Structure):
    _fields_ = [("apiVersion", u32), ("driverVersion", u32), ("vendorID", u32), ("deviceID", u32),
                ("deviceType", u32), ("deviceName", ctypes.c_char * 256), ("pipelineCacheUUID", u8 * 16),
                ("limits", VkLimits), ("sparseProperties", u32 * 5)]


class VkDriverProperties(ctypes.Structure):
    _fields_ = [("sType", u32), ("pNext", ctypes.c_void_p), ("driverID", u32),
                ("driverName", ctypes.c_char * 256), ("driverInfo", ctypes.c_char * 256),
                ("conformanceVersion", u8 * 4)]


class VkSubgroupProperties(ctypes.Structure):
    _fields_ = [("sType", u32), ("pNext", ctypes.c_void_p), ("subgroupSize", u32), ("supportedStages", u32),
                ("supportedOperations", u32), ("quadOperationsInAllStages", u32)]


SUBGROUP_OPS = ("basic", "vote", "arithmetic", "ballot", "shuffle", "shuffle_relative", "clustered", "quad")
COMPUTE_STAGE = 0x20


class VkProperties2(ctypes.Structure):
    _fields_ = [("sType", u32), ("pNext", ctypes.c_void_p), ("properties", VkProperties)]


class VkMemoryType(ctypes.Structure):
    _fields_ = [("propertyFlags", u32), ("heapIndex", u32)]


class VkMemoryHeap(ctypes.Structure):
    _fields_ = [("size", u64), ("flags", u32)]


class VkMemoryProperties(ctypes.Structure):
    _fields_ = [("memoryTypeCount", u32), ("memoryTypes", VkMemoryType * 32),
                ("memoryHeapCount", u32), ("memoryHeaps", VkMemoryHeap * 16)]


class VkApplicationInfo(ctypes.Structure):
    _fields_ = [("sType", u32), ("pNext", ctypes.c_void_p), ("pApplicationName", ctypes.c_char_p),
                ("applicationVersion", u32), ("pEngineName", ctypes.c_char_p), ("engineVersion", u32),
                ("apiVersion", u32)]


class VkInstanceCreateInfo(ctypes.Structure):
    _fields_ = [("sType", u32), ("pNext", ctypes.c_void_p), ("flags", u32),
                ("pApplicationInfo", ctypes.POINTER(VkApplicationInfo)), ("enabledLayerCount", u32),
                ("ppEnabledLayerNames", ctypes.c_void_p), ("enabledExtensionCount", u32),
                ("ppEnabledExtensionNames", ctypes.c_void_p)]


def _version(v):
    return f"{(v >> 22) & 0x7F}.{(v >> 12) & 0x3FF}.{v & 0xFFF}"


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    type: str
    vendor_id: int
    device_id: int
    api_version: str
    driver_version: int
    driver_name: str
    driver_info: str
    max_storage_buffer_range: int
    max_workgroup_count: Tuple[int, int, int]
    max_workgroup_size: Tuple[int, int, int]
    max_workgroup_invocations: int
    max_push_constants_size: int
    max_shared_memory: int
    timestamp_period_ns: float
    timestamps: bool
    heaps: Tuple[Tuple[int, bool], ...] = field(default=())   # (bytes, device_local)
    subgroup_size: int = 1
    subgroup_ops: Tuple[str, ...] = ()     # subgroup operations compute shaders may use
    memory_types: Tuple[Tuple[int, int], ...] = field(default=())   # (VkMemoryPropertyFlags, heap index)

    @property
    def device_local_bytes(self) -> int:
        local = [size for size, is_local in self.heaps if is_local]
        return max(local) if local else max((s for s, _ in self.heaps), default=0)

    def describe(self) -> str:
        return (f"[{self.index}] {self.name} ({self.type}; Vulkan {self.api_version}; "
                f"driver {self.driver_name} {self.driver_info})")


class VulkanUnavailable(RuntimeError):
    pass


# What vkconvt calls in the loader: a library without them is not a Vulkan loader.
LOADER_FUNCTIONS = ("vkCreateInstance", "vkDestroyInstance", "vkEnumeratePhysicalDevices",
                    "vkGetPhysicalDeviceProperties", "vkGetPhysicalDeviceMemoryProperties")
_warned = set()


def _load_loader():
    """The Vulkan loader: the one VKCONVT_VULKAN_LIBRARY names when it is set (never silently
    another), else the system's libvulkan.so.1."""
    chosen = env.vulkan_library()
    if chosen is not None:
        return _load_chosen(chosen)
    errors = []
    for name in filter(None, ["libvulkan.so.1", ctypes.util.find_library("vulkan")]):
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
    raise VulkanUnavailable("no Vulkan loader (libvulkan.so.1) could be loaded: " + "; ".join(errors)
                            + " (Debian: apt-get install libvulkan1 mesa-vulkan-drivers)")


def _load_chosen(value):
    """The library VKCONVT_VULKAN_LIBRARY names (a path, or a library name the dynamic linker
    finds), checked to be a Vulkan loader; VulkanUnavailable naming the variable, and a warning
    once per process (calls that do not insist on Vulkan then run on the NumPy backend)."""
    why = None
    if os.sep in value or os.path.lexists(value):
        try:
            st = os.stat(value)
            if not stat.S_ISREG(st.st_mode):
                why = "is not a file" + (" (a directory)" if stat.S_ISDIR(st.st_mode) else "")
            elif st.st_size == 0:
                why = "is an empty file"
        except OSError as exc:
            why = f"cannot be read: {exc.strerror or exc}"
    lib = None
    if why is None:
        try:
            lib = ctypes.CDLL(value)
        except OSError as exc:
            why = f"cannot be loaded: {exc}"
    if lib is not None:
        missing = [f for f in LOADER_FUNCTIONS if not hasattr(lib, f)]
        if not missing:
            return lib
        why = f"is not a Vulkan loader (it has no {missing[0]})"
    msg = (f"VKCONVT_VULKAN_LIBRARY={value!r} {why}; point it at a Vulkan loader such as libvulkan.so.1, "
           "or unset it")
    if msg not in _warned:
        _warned.add(msg)
        warnings.warn(f"vkconvt: {msg} (the Vulkan backend is unavailable)", RuntimeWarning, stacklevel=2)
    raise VulkanUnavailable(msg)


@functools.lru_cache(maxsize=1)
def list_devices() -> Tuple[DeviceInfo, ...]:
    """Every physical device the loader reports, in kp.Manager's index order."""
    env.apply_layer_policy()
    lib = _load_loader()
    app = VkApplicationInfo(0, None, b"vkconvt", 1, b"vkconvt", 1, (1 << 22) | (1 << 12))
    info = VkInstanceCreateInfo(1, None, 0, ctypes.pointer(app), 0, None, 0, None)
    inst = ctypes.c_void_p()
    lib.vkCreateInstance.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    res = lib.vkCreateInstance(ctypes.byref(info), None, ctypes.byref(inst))
    if res != 0:
        raise VulkanUnavailable(f"vkCreateInstance failed (VkResult {res}): no usable Vulkan driver "
                                "(Debian: apt-get install mesa-vulkan-drivers)")
    try:
        count = u32(0)
        lib.vkEnumeratePhysicalDevices(inst, ctypes.byref(count), None)
        handles = (ctypes.c_void_p * count.value)()
        lib.vkEnumeratePhysicalDevices(inst, ctypes.byref(count), handles)
        out = []
        for i, h in enumerate(handles):
            props2 = VkProperties2(1000059001, None)
            sub = VkSubgroupProperties(1000094000, None)
            drv = VkDriverProperties(1000196000, ctypes.cast(ctypes.pointer(sub), ctypes.c_void_p))
            props2.pNext = ctypes.cast(ctypes.pointer(drv), ctypes.c_void_p)
            lib.vkGetPhysicalDeviceProperties(ctypes.c_void_p(h), ctypes.byref(props2.properties))
            p = props2.properties
            driver_name, driver_info, sg_size, sg_ops = "", "", 1, ()
            if p.apiVersion >= (1 << 22) | (2 << 12):
                try:
                    lib.vkGetPhysicalDeviceProperties2(ctypes.c_void_p(h), ctypes.byref(props2))
                    driver_name, driver_info = drv.driverName.decode(), drv.driverInfo.decode()
                    if sub.supportedStages & COMPUTE_STAGE:
                        sg_size = int(sub.subgroupSize)
                        sg_ops = tuple(n for i, n in enumerate(SUBGROUP_OPS) if sub.supportedOperations & (1 << i))
                except AttributeError:
                    pass
            mem = VkMemoryProperties()
            lib.vkGetPhysicalDeviceMemoryProperties(ctypes.c_void_p(h), ctypes.byref(mem))
            heaps = tuple((int(mem.memoryHeaps[j].size), bool(mem.memoryHeaps[j].flags & 1))
                          for j in range(mem.memoryHeapCount))
            types = tuple((int(mem.memoryTypes[j].propertyFlags), int(mem.memoryTypes[j].heapIndex))
                          for j in range(mem.memoryTypeCount))
            lim = p.limits
            out.append(DeviceInfo(
                index=i, name=p.deviceName.decode(errors="replace"),
                type=DEVICE_TYPES.get(p.deviceType, "other"), vendor_id=p.vendorID, device_id=p.deviceID,
                api_version=_version(p.apiVersion), driver_version=p.driverVersion,
                driver_name=driver_name, driver_info=driver_info,
                max_storage_buffer_range=int(lim.maxStorageBufferRange),
                max_workgroup_count=tuple(int(v) for v in lim.maxComputeWorkGroupCount),
                max_workgroup_size=tuple(int(v) for v in lim.maxComputeWorkGroupSize),
                max_workgroup_invocations=int(lim.maxComputeWorkGroupInvocations),
                max_push_constants_size=int(lim.maxPushConstantsSize),
                max_shared_memory=int(lim.maxComputeSharedMemorySize),
                timestamp_period_ns=float(lim.timestampPeriod),
                timestamps=bool(lim.timestampComputeAndGraphics), heaps=heaps, subgroup_size=sg_size,
                subgroup_ops=sg_ops, memory_types=types))
        return tuple(out)
    finally:
        lib.vkDestroyInstance(inst, None)
