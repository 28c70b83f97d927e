"""Real devices' memory-type lists (VkPhysicalDeviceMemoryProperties), each copied from a public report
whose address is given: DXVK's adapter log (its "Memory Heap[i]: Size, Flags" and "Memory Type[j]:
Property Flags" lines, printed from vkGetPhysicalDeviceMemoryProperties) or a vulkaninfo dump quoted in
a GitHub issue. Heap sizes in MiB as printed; heap flags 0x1 = DEVICE_LOCAL (0x2, MULTI_INSTANCE, is
left out). `complete` is False where the report shows only the first types (the rest unknown).

What was looked for and not found in any report this project could read (so not here): an RTX 4090
(NVIDIA's layout is the same from Turing to Blackwell: the RTX 3090, 5070 Ti and GTX 1060 below), an
RX 7900 XTX (RADV gives every RDNA part one layout: the RX 5700 XT and the RDNA 3.5 APU below), an
Intel Arc A770, a Mali GPU and an Adreno 7xx.
"""
from dataclasses import dataclass
from typing import Tuple

MIB = 1 << 20


@dataclass(frozen=True)
class Report:
    name: str
    kind: str                                   # "discrete" or "integrated" (vkconvt stages only on discrete)
    heaps: Tuple[Tuple[int, bool], ...]         # (bytes, device_local), as vkinfo.DeviceInfo.heaps
    types: Tuple[Tuple[int, int], ...]          # (propertyFlags, heapIndex), as DeviceInfo.memory_types
    source: str
    complete: bool = True


def _types(by_heap, count):
    """Memory types from a DXVK log's per-heap listing {heap: {type index: flags}}."""
    flat = {t: (flags, heap) for heap, types in by_heap.items() for t, flags in types.items()}
    assert sorted(flat) == list(range(count)), sorted(flat)
    return tuple(flat[t] for t in range(count))


REPORTS = [
    Report("NVIDIA GeForce RTX 3090 (NVIDIA 531.41, Windows; resizable BAR)", "discrete",
           ((24340 * MIB, True), (65484 * MIB, False)),
           _types({0: {1: 0x1, 4: 0x7}, 1: {0: 0x0, 2: 0x6, 3: 0xe}}, 5),
           "https://github.com/NVIDIAGameWorks/rtx-remix/issues/74 (DXVK-Remix log)"),
    Report("NVIDIA GeForce RTX 5070 Ti (NVIDIA 610.88; 214 MiB BAR heap)", "discrete",
           ((15997 * MIB, True), (16309 * MIB, False), (214 * MIB, True)),
           _types({0: {1: 0x1}, 1: {0: 0x0, 2: 0x6, 3: 0xe}, 2: {4: 0x7}}, 5),
           "https://github.com/xoxor4d/gta4-rtx/issues/138 (DXVK log)"),
    Report("NVIDIA GeForce GTX 1060 (NVIDIA 460.56; 246 MiB BAR heap)", "discrete",
           ((6144 * MIB, True), (11887 * MIB, False), (246 * MIB, True)),
           _types({0: {7: 0x1}, 1: {0: 0x0, 1: 0x0, 2: 0x0, 3: 0x0, 4: 0x0, 5: 0x0, 6: 0x0, 8: 0x6, 9: 0xe},
                   2: {10: 0x7}}, 11),
           "https://github.com/doitsujin/dxvk/issues/1971 (DXVK 1.8.1 log)"),
    Report("AMD Radeon RX 5700 XT (RADV NAVI10, Mesa 23.1.9; resizable BAR, AMD device-coherent types)", "discrete",
           ((8176 * MIB, False), (8176 * MIB, True)),
           _types({0: {2: 0x6, 5: 0xe, 6: 0xe, 8: 0xc6, 10: 0xce},
                   1: {0: 0x1, 1: 0x1, 3: 0x7, 4: 0x7, 7: 0xc1, 9: 0xc7}}, 11),
           "https://github.com/bottlesdevs/programs/issues/281 (DXVK 2.3 log; heap 1's types 4, 7 and 9 from "
           "the same log's listing just before the one that is cut off)"),
    Report("AMD RADV POLARIS10 (Mesa 21.3.8; 256 MiB BAR heap)", "discrete",
           ((3840 * MIB, True), (4096 * MIB, False), (256 * MIB, True)),
           _types({0: {0: 0x1}, 1: {1: 0x6, 3: 0xe}, 2: {2: 0x7}}, 4),
           "https://github.com/doitsujin/dxvk/issues/2822 (DXVK 1.10.3 log)"),
    Report("AMD RADV POLARIS10 (Mesa 19.1.4; no plain device-local type)", "discrete",
           ((8192 * MIB, True), (8192 * MIB, False)),
           _types({0: {1: 0x7}, 1: {0: 0x6, 2: 0xe}}, 3),
           "https://github.com/ValveSoftware/Proton/issues/1237 (DXVK log, turn 22)"),
    Report("AMD Radeon Graphics (RADV GFX1150, Mesa 25.1.3; Ryzen AI 300 APU)", "integrated",
           ((5891 * MIB, False), (11782 * MIB, True)),
           _types({0: {2: 0x6, 5: 0xe, 6: 0xe, 8: 0xc6, 10: 0xce},
                   1: {0: 0x1, 1: 0x1, 3: 0x7, 4: 0x7, 7: 0xc1, 9: 0xc7}}, 11),
           "https://github.com/Heroic-Games-Launcher/HeroicGamesLauncher/issues/4676 (DXVK log)"),
    Report("AMD RADV RAVEN (Mesa 19.1.4; Raven Ridge APU, 64 MiB carve-out heap)", "integrated",
           ((64 * MIB, True), (3072 * MIB, True)),
           _types({0: {1: 0x7}, 1: {0: 0x7, 2: 0xf}}, 3),
           "https://github.com/ValveSoftware/Proton/issues/1237 (DXVK log, turn 22)"),
    Report("Intel UHD Graphics 630 (CFL GT2, ANV Mesa 20.2.6)", "integrated",
           ((11887 * MIB, True),),
           _types({0: {0: 0xf}}, 1),
           "https://github.com/doitsujin/dxvk/issues/1971 (DXVK 1.8.1 log)"),
    Report("Adreno (TM) 620 (Qualcomm proprietary driver, Android; first 3 of 6 types)", "integrated",
           ((7819997184, True), (268435456, True)),
           ((0x1, 0), (0xb, 0), (0xf, 0)),
           "https://github.com/termux/termux-packages/pull/7165 (vulkaninfo, turn 2: memoryTypes[0..2] of 6; "
           "type 1 is HOST_CACHED without HOST_COHERENT)", complete=False),
]
