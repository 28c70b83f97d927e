"""The Khronos validation layer, synchronization validation on, reports nothing for vkconvt's
dispatches (plain, split into pieces and chunks, staged), and does report the hazard of two
dependent dispatches recorded in one sequence without vkconvt's barrier (proving the check is live).
Every call records its dispatches, copies and barriers in one command buffer, in both memory modes."""
import os
import subprocess
import sys

import pytest

from vkconvt import backends

HERE = os.path.dirname(os.path.abspath(__file__))
VULKAN = backends.vulkan_reason()
LAYER_JSON = ["/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json",
              "/etc/vulkan/explicit_layer.d/VkLayer_khronos_validation.json"]
pytestmark = [
    pytest.mark.skipif(VULKAN is not None, reason=f"Vulkan backend unavailable: {VULKAN}"),
    pytest.mark.skipif(not any(os.path.exists(p) for p in LAYER_JSON),
                       reason="VK_LAYER_KHRONOS_validation not installed (Debian vulkan-validationlayers)"),
]
MARKERS = ("VUID", "SYNC-HAZARD", "Validation Error", "Validation Warning", "UNASSIGNED")


def probe(mode):
    env = dict(os.environ, VKCONVT_VALIDATE="1", PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("VK_LOADER_LAYERS_DISABLE", None)
    env.pop("VK_LAYER_SETTINGS_PATH", None)
    return subprocess.run([sys.executable, os.path.join(HERE, "vk_validation_probe.py"), mode],
                          capture_output=True, text=True, env=env, timeout=600)


def layer_messages(text):
    return [ln for ln in text.splitlines() if any(m in ln for m in MARKERS)]


def test_validation_layer_catches_a_missing_barrier():
    r = probe("hazard")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "hazard sequence evaluated" in r.stdout
    assert any("SYNC-HAZARD-READ-AFTER-WRITE" in ln for ln in layer_messages(r.stdout + r.stderr)), \
        "the validation layer did not report the hazard: is it really on?\n" + r.stdout[-3000:]


def test_vkconvt_dispatches_are_validation_clean():
    r = probe("cases")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("ok ") >= 4 * 18, r.stdout[-2000:]
    msgs = layer_messages(r.stdout + r.stderr)
    assert not msgs, "validation messages:\n" + "\n".join(msgs[:20])
