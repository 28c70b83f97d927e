"""Shared test helpers: the `needs_vulkan` marker (one reason, one place)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vkconvt import backends  # noqa: E402

VULKAN_REASON = backends.vulkan_reason()
needs_vulkan = pytest.mark.skipif(VULKAN_REASON is not None, reason=f"Vulkan backend unavailable: {VULKAN_REASON}")
