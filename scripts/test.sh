#!/usr/bin/env bash
# The whole test suite, set-up included (idempotent): bash scripts/test.sh [pytest args]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VKCONVT_VENV:-$here/.venv}"
bash "$here/scripts/setup.sh" --test
# The package is installed editable: recompile the shaders so an edited .comp is what runs.
"$venv/bin/python" "$here/scripts/compile_shaders.py" --check
cd "$here"
"$venv/bin/python" -m ruff check vkconvt scripts tests      # the linter (settings: pyproject.toml)
exec "$venv/bin/python" -m pytest tests "$@"
