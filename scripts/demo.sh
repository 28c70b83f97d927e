#!/usr/bin/env bash
# The main job, set-up included (idempotent): a real HiFi-GAN layer on the default Vulkan device,
# cross-checked against the NumPy backend, with a small timing table.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VKCONVT_VENV:-$here/.venv}"
bash "$here/scripts/setup.sh"
"$venv/bin/python" "$here/scripts/compile_shaders.py" >/dev/null
"$venv/bin/python" -m vkconvt info
echo
exec "$venv/bin/python" -m vkconvt demo "$@"
