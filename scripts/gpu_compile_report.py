"""Compile every vkconvt kernel and float16 twin with real AMD GPU compilers, no GPU needed (Mesa
RADV's null device: RADV_FORCE_FAMILY=<chip>, ACO), with each kernel's default specs and the specs
vkconvt chooses for the bench's model layers and matmul 1024^3 on the devices of
tests/device_limits.py, and print VGPRs, SGPRs, spills, LDS, waves per SIMD and code size.

    python scripts/gpu_compile_report.py                         # everything, 5 families (~2 min)
    python scripts/gpu_compile_report.py --gpu-only --families navi31,vega10 --no-defaults

Needs only what scripts/setup.sh installs (gcc, libvulkan-dev, mesa-vulkan-drivers); the helper
program is built once into $VKCONVT_CACHE (default ~/.cache/vkconvt)/gpu-compile. See
scripts/gpu_compile/README.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gpu_compile import report  # noqa: E402

if __name__ == "__main__":
    sys.exit(report.main())
