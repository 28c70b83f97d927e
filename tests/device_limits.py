"""Compute limits of real Vulkan devices, for testing vkconvt's spec choice and planner against
devices this project has no access to (tests/test_gpu_compile.py, scripts/gpu_compile).

Each row: the limits vkconvt's spec choice reads (maxComputeSharedMemorySize,
maxComputeWorkGroupInvocations, maxComputeWorkGroupSize x/y, the subgroup size the driver reports
and, where it varies, the min..max range of VK_EXT_subgroup_size_control, maxStorageBufferRange),
with the source of every figure. Figures were taken from public vulkaninfo output and device
feature tables found on 2026-12-04 (vulkan.gpuinfo.org itself could not be opened from here, so
the sources are vulkaninfo dumps quoted in public issue threads and feature sets generated from
gpuinfo reports). Where no figure for the named device was found, the value is a CONSERVATIVE
stand-in (a lower bound seen on related devices, or the issue's own target), marked
`conservative` with the reason: a chosen spec that fits it fits the real device too.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

KIB = 1024


@dataclass(frozen=True)
class Limits:
    name: str
    max_shared: int                      # maxComputeSharedMemorySize, bytes
    max_invocations: int                 # maxComputeWorkGroupInvocations
    max_size: Tuple[int, int, int]       # maxComputeWorkGroupSize
    subgroup: int                        # VkPhysicalDeviceSubgroupProperties.subgroupSize
    subgroup_range: Optional[Tuple[int, int]]   # (minSubgroupSize, maxSubgroupSize) when it varies
    max_buffer: int                      # maxStorageBufferRange, bytes
    sources: Dict[str, str] = field(default_factory=dict, compare=False)
    conservative: Tuple[str, ...] = ()   # the fields that are stand-ins, not the device's own figures

    @property
    def large(self):
        """What vkconvt's GPU spec choice calls a large GPU (kernels/gpu.py: >= 48 KiB, >= 1024)."""
        return self.max_shared >= 48 * KIB and self.max_invocations >= 1024

    def subgroup_sizes(self):
        """Every power-of-two subgroup size a shader may run with on this device."""
        lo, hi = self.subgroup_range or (self.subgroup, self.subgroup)
        return sorted({1 << b for b in range(lo.bit_length() - 1, hi.bit_length())} | {self.subgroup})


DEVICES = [
    Limits("RX 7900 XTX", 64 * KIB, 1024, (1024, 1024, 1024), 64, (32, 64), 4294967295, sources={
        "max_shared, max_invocations, max_size, subgroup": "measured here: RADV's null device for navi31 "
        "(RADV_FORCE_FAMILY=navi31, Mesa 25.0.7) read through vkconvt.vkinfo, 2026-12-04",
        "subgroup_range": "RDNA under RADV and AMD's driver: minSubgroupSize 32, maxSubgroupSize 64 (vulkaninfo of "
        "an RX 6500 XT in KomputeProject/kompute#275)",
        "max_buffer": "vulkaninfo of an RX 7800 XT (same RDNA3 driver) in ggml-org/llama.cpp#5698: 4294967295"}),
    Limits("RTX 4090", 48 * KIB, 1024, (1024, 1024, 64), 32, None, 4294967295, sources={
        "max_shared, subgroup": "NVIDIA Ada under NVIDIA's driver: 'warp size: 32 | shared memory: 49152' for an "
        "RTX 4070 (ggml-org/llama.cpp#14903) and an RTX 3070 (ggml-org/llama.cpp#12833)",
        "max_invocations, max_size, max_buffer": "inferred, not the 4090's own report: the figures NVIDIA's driver "
        "gave on this project's H200 (1024, (1024, 1024, 64), 4294967295), which it reports alike across its "
        "recent GPUs"}),
    Limits("H200", 48 * KIB, 1024, (1024, 1024, 64), 32, None, 4294967295, sources={
        "all": "this project's run, 2026-12-04 (NVIDIA 580.159.04; scripts/bench-results/h200-v0.2.0/log.txt)"}),
    Limits("Intel UHD 770", 32 * KIB, 1024, (1024, 1024, 1024), 32, (8, 32), 1 << 30, sources={
        "max_shared": "CONSERVATIVE: the UHD 770 (Xe-LP) figure was not found; 32768 is what Gen9 reports "
        "(vulkaninfo of a UHD 620 in ValveSoftware/gamescope#361)",
        "max_invocations, max_size": "vulkaninfo of a UHD 620 (gamescope#361); gpuweb/gpuweb#6243: 'on Intel GPUs "
        "maxComputeWorkGroupInvocations is 1024'",
        "subgroup, subgroup_range": "Xe-LP (Tiger Lake, the UHD 770's architecture): subgroupSize 32, min 8, max 32 "
        "(google/uVkCompute#43)",
        "max_buffer": "vulkaninfo of a UHD 630 in KhronosGroup/Vulkan-Tools#491: 1073741824"},
        conservative=("max_shared",)),
    Limits("Apple M2 (MoltenVK)", 32 * KIB, 1024, (1024, 1024, 1024), 32, (4, 32), 1 << 30, sources={
        "max_shared, max_invocations, max_size, subgroup_range": "MoltenVK vulkaninfo on Apple silicon in "
        "gfx-rs/wgpu#5551 (32768; 1024; 1024^3; minSubgroupSize 4, maxSubgroupSize 32); Metal gives every "
        "Apple7/Apple8 GPU (M1, M2) 32 KiB of threadgroup memory and 1024 threads",
        "subgroup": "MoltenVK reports the SIMD-group width, 32 (KhronosGroup/MoltenVK#932)",
        "max_buffer": "CONSERVATIVE: not found; 1 GiB"}, conservative=("max_buffer",)),
    Limits("Mali-G78", 32 * KIB, 256, (256, 256, 64), 16, None, 128 << 20, sources={
        "max_shared": "every Mali from T830 to G76/G57 offers >= 32 KiB (azhirnov/as-en min_mobile_mali.as, generated "
        "from gpuinfo reports); a Mali-G720 reports 32768 (ggml-org/llama.cpp#27163)",
        "max_invocations, max_size": "CONSERVATIVE: the G78's figure was not found; 256, the issue's target "
        "(Bifrost reported 384 through OpenCL, 96boards-hikey/linux#59)",
        "subgroup": "Valhall warps are 16 wide (azhirnov/cpu-gpu-arch ARM-Mali-Valhall.md); a Mali-G720 reports "
        "subgroup size 16 (llama.cpp#27163)",
        "max_buffer": "as-en min_mobile_mali.as: minStorageBufferSize 128 MiB"},
        conservative=("max_invocations", "max_size")),
    Limits("Adreno 740", 32 * KIB, 512, (512, 512, 64), 64, (64, 128), 128 << 20, sources={
        "max_shared": "Adreno 7xx under Turnip report 32768 (Adreno 750 in ggml-org/ggml#1287, Adreno X1-85 in "
        "ggml-org/llama.cpp#22690); gpuweb/gpuweb#2832: only Adreno 610/612 are below 32 KiB",
        "max_invocations, max_size": "CONSERVATIVE: the 740's figure was not found; 512 x 512 x 64 is the least "
        "over Adreno 505/610/612/660/730 under Qualcomm's driver (as-en min_mobile_adreno.as)",
        "subgroup, subgroup_range": "Turnip reports 128 for an Adreno 750 (ggml#1287); Qualcomm's driver 64 (not "
        "verified here): both are tested",
        "max_buffer": "as-en min_mobile_adreno.as: minStorageBufferSize 128 MiB"},
        conservative=("max_invocations", "max_size")),
    Limits("Raspberry Pi V3D", 16 * KIB, 256, (256, 256, 256), 16, None, 128 << 20, sources={
        "max_shared, max_invocations, max_size": "vulkaninfo in LibreELEC/LibreELEC.tv#5884 (16384; 256; 256^3); "
        "davidscarth/edge-ai-study low-smem-shaders: '256 workgroup limit, 16KiB SMEM limit, 128MiB "
        "maxStorageBufferRange'",
        "max_buffer": "edge-ai-study (above)",
        "subgroup": "CONSERVATIVE: not found; 16 (the spec choice uses it only as a floor on threads)"},
        conservative=("subgroup",)),
    Limits("PowerVR (min over PVR-7..D)", 16 * KIB, 512, (512, 512, 64), 32, None, 128 << 20, sources={
        "max_shared, max_invocations, max_size, max_buffer": "azhirnov/as-en min_mobile_pvr.as (generated from "
        "gpuinfo reports of PowerVR series 7, 9, B and D): 16 KiB, 512, 512 x 512 x 64, 128 MiB",
        "subgroup": "CONSERVATIVE: not found; 32"}, conservative=("subgroup",)),
]

BY_NAME = {d.name: d for d in DEVICES}

# Not a device: the least any conformant Vulkan implementation may report (below the issue's
# 256-invocation target; tests/test_device_limits.py records where vkconvt does not fit it yet).
VULKAN_MINIMUM = Limits("Vulkan 1.x required minimum", 16 * KIB, 128, (128, 128, 64), 1, None, 1 << 27, sources={
    "all": "Vulkan specification, 'Required Limits' table: maxComputeSharedMemorySize 16384, "
    "maxComputeWorkGroupInvocations 128, maxComputeWorkGroupSize (128, 128, 64), maxStorageBufferRange 2^27; "
    "subgroupSize is at least 1"})


def smallest():
    """The row with the least shared memory, then the fewest invocations: the one lavapipe runs."""
    return min(DEVICES, key=lambda d: (d.max_shared, d.max_invocations, d.max_size[0]))
