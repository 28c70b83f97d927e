#!/usr/bin/env bash
# The whole test suite, set-up included (idempotent): bash scripts/test.sh [pytest args]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VKCONVT_VENV:-$here/.venv}"
bash "$here/scripts/setup.sh" --test
# The package is installed editable: recompile the shaders so an edited .comp is what runs.
"$venv/bin/python" "$here/scripts/compile_shaders.py" --check
cd "$here"
# tests/test_numpy_versions.py: the NumPy 1 overlay setup.sh --test installed is required here (a
# missing overlay fails the test instead of skipping it)
export VKCONVT_TEST_NUMPY1="$venv/numpy1"
"$venv/bin/python" -m ruff check vkconvt scripts tests      # the linter (settings: pyproject.toml)
exec "$venv/bin/python" -m pytest tests "$@"
