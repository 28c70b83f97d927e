#!/usr/bin/env bash
# Idempotent set-up for vkconvt on a Debian machine (run as root, or with sudo available).
#   * Debian packages: Vulkan loader + headers, glslang, spirv-tools, validation layer, Mesa's
#     lavapipe (from bookworm-backports on bookworm: Mesa 25 runs compute 2-6x faster than 22.3),
#     and what Kompute's sdist needs to build (cmake, g++, libfmt-dev, pybind11-dev).
#   * A virtual environment in $VKCONVT_VENV (default: <repo>/.venv) with NumPy (1 or 2), Kompute
#     kp==0.9.0 built once from its sdist with vkconvt's patch (the wheel is cached in $VKCONVT_CACHE/wheels), and
#     vkconvt itself installed editable (its build hook compiles shaders/ to SPIR-V).
#   * With --test: the test and benchmark dependencies too (pytest, torch CPU, tqdm, matplotlib), and
#     numpy<2 in $VKCONVT_VENV/numpy1, an overlay the NumPy 1 test puts first on PYTHONPATH.
# A second run on a set-up machine returns within seconds (stamp file keyed by this script's inputs).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VKCONVT_VENV:-$here/.venv}"
cache="${VKCONVT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vkconvt}"
python="${PYTHON:-python3}"
with_test=0
for arg in "$@"; do
  case "$arg" in
    --test) with_test=1 ;;
    *) echo "setup.sh: unknown argument '$arg' (valid: --test)" >&2; exit 2 ;;
  esac
done

log() { printf '[vkconvt setup] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# ---------------------------------------------------------------- Debian packages
debs=(glslang-tools spirv-tools mesa-vulkan-drivers libvulkan-dev libvulkan1 vulkan-tools
      vulkan-validationlayers libfmt-dev cmake g++ patch python3-venv python3-dev)

missing_debs() {
  local p
  for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
  done
}

codename="$( . /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}")"
backports="${codename:+$codename-backports}"
bp_list=/etc/apt/sources.list.d/vkconvt-backports.sources

# Mesa older than 24 runs compute shaders far slower; on bookworm take it from backports.
mesa_is_old() {
  local v
  v="$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)"
  [ -z "$v" ] && return 0
  dpkg --compare-versions "$v" lt 24 
}

add_backports_source() {
  # Copy the machine's own Debian source stanza(s) for the release suite, with the suite
  # renamed to <codename>-backports. No mirror address is written here: it comes from the machine.
  [ -n "$backports" ] || return 1
  [ -f "$bp_list" ] && return 0
  local src=/etc/apt/sources.list.d/debian.sources out
  if [ -f "$src" ]; then
    out="$(awk -v rel="$codename" -v bp="$backports" '
      BEGIN { RS=""; ORS="\n\n" }
      {
        n = split($0, lines, "\n"); keep = 0; body = ""
        for (i = 1; i <= n; i++) {
          if (lines[i] ~ /^#/) continue
          if (lines[i] ~ /^Suites:/) {
            m = split(lines[i], w, /[ \t]+/)
            for (j = 2; j <= m; j++) if (w[j] == rel) keep = 1
            lines[i] = "Suites: " bp
          }
          body = body lines[i] "\n"
        }
        if (keep) print body
      }' "$src")"
  elif [ -f /etc/apt/sources.list ]; then
    out="$(awk -v rel="$codename" -v bp="$backports" '$1 == "deb" && $3 == rel { $3 = bp; print }' /etc/apt/sources.list)"
  fi
  if [ -z "${out:-}" ]; then log "no Debian '$codename' source found to copy for $backports"; return 1; fi
  if [ -f "$src" ]; then printf '%s\n' "$out" | as_root tee "$bp_list" >/dev/null
  else bp_list=/etc/apt/sources.list.d/vkconvt-backports.list; printf '%s\n' "$out" | as_root tee "$bp_list" >/dev/null; fi
  log "added $backports from the machine's own Debian source ($bp_list)"
}

need="$(missing_debs | tr '\n' ' ')"
if [ -n "${need// /}" ] || { [ "$codename" = bookworm ] && mesa_is_old; }; then
  export DEBIAN_FRONTEND=noninteractive
  have_bp=0
  if [ "$codename" = bookworm ] && add_backports_source; then have_bp=1; fi
  log "apt-get install: ${need:-mesa-vulkan-drivers (upgrade)}"
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null
  if [ "$have_bp" = 1 ]; then
    as_root apt-get install -y -qq --no-install-recommends -t "$backports" mesa-vulkan-drivers >/dev/null
  fi
fi

# ---------------------------------------------------------------- virtual environment
stamp_key="$(cat "${BASH_SOURCE[0]}" "$here/pyproject.toml" "$here/scripts/kp/"*.patch | sha256sum | cut -c1-16)"
stamp="$venv/.vkconvt-setup-$stamp_key-test$with_test"
if [ -x "$venv/bin/python" ] && { [ -f "$stamp" ] || [ -f "$venv/.vkconvt-setup-$stamp_key-test1" ]; } &&
   { [ "$with_test" = 0 ] || [ -d "$venv/numpy1/numpy" ]; }; then
  exit 0    # already set up by this version of the script (a --test set-up covers the plain one)
fi

if [ ! -x "$venv/bin/python" ]; then
  log "creating virtual environment $venv ($("$python" --version 2>&1))"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" 'numpy>=1.22' 'hatchling>=1.18' editables wheel

# Kompute 0.9.0: sdist only on PyPI. Build it once against Debian's Vulkan headers and fmt, with
# pybind11 2.13 from PyPI (Debian's 2.10 predates NumPy 2: under NumPy 2 its array conversion reads
# the wrong dtype fields and kp silently computes on zeros), and with vkconvt's patch
# (scripts/kp/kp-0.9.0-vkconvt.patch; the local version label +vkconvt.<patch hash> names it):
#   * setup.py: the missing comma (CMake never got PYTHON_EXECUTABLE), no numpy<2 pin, extra CMake
#     arguments from KOMPUTE_CMAKE_ARGS;
#   * what one command buffer per call needs: OpGlobalBarrier (a compute/transfer memory barrier),
#     OpCopyRegions and OpFill (device-side copies and fills), byte-range OpTensorSyncDevice/Local;
#   * Sequence.eval/eval_await without the GIL, eval_async() really asynchronous, is_done();
#     timestamp queries reset on every replay;
#   * kp.set_memory_type_override (vkconvt picks memory types by their flags), Tensor.memory_type_indices;
#   * Manager.clear() (Kompute otherwise keeps every object it ever made), and Tensor.data() of a
#     destroyed tensor raises instead of crashing.
kp_ver=0.9.0
kp_patch="$here/scripts/kp/kp-$kp_ver-vkconvt.patch"
kp_build="$kp_ver+vkconvt.$(sha256sum "$kp_patch" | cut -c1-10)"
wheels="$cache/wheels"
mkdir -p "$wheels"
pyver="$("$venv/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
if ! ls "$wheels"/kp-"$kp_build"-"$pyver"-*.whl >/dev/null 2>&1; then
  log "building kp==$kp_ver from its sdist with vkconvt's patch (about 2 minutes, once; cached in $wheels)"
  "${pip[@]}" cmake 'pybind11==2.13.6' setuptools
  tmp="$(mktemp -d)"
  "$venv/bin/python" -m pip download -q --no-deps --no-binary :all: -d "$tmp" "kp==$kp_ver"
  tar -xzf "$tmp"/kp-$kp_ver.tar.gz -C "$tmp"
  src="$tmp/kp-$kp_ver"
  patch -s -p1 -d "$src" < "$kp_patch" || { log "could not apply $kp_patch to kp's sources"; exit 1; }
  sed -i "s/version='$kp_ver',/version='$kp_build',/" "$src/setup.py"
  grep -q "version='$kp_build'" "$src/setup.py" || { log "could not set kp's version label"; exit 1; }
  KOMPUTE_CMAKE_ARGS="-Dpybind11_DIR=$("$venv/bin/python" -m pybind11 --cmakedir)" \
  KOMPUTE_OPT_INSTALL=OFF KOMPUTE_OPT_USE_BUILT_IN_VULKAN_HEADER=OFF \
  KOMPUTE_OPT_USE_BUILT_IN_FMT=OFF KOMPUTE_OPT_USE_BUILT_IN_PYBIND11=OFF \
  KOMPUTE_OPT_DISABLE_VULKAN_VERSION_CHECK=ON CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$venv/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$tmp" "$src"
  mv "$tmp"/kp-*.whl "$wheels"/
  rm -rf "$tmp"
fi
"${pip[@]}" --no-deps "$(ls "$wheels"/kp-"$kp_build"-"$pyver"-*.whl | head -n1)"

if [ "$with_test" = 1 ]; then
  # torch is only the independent oracle for tests and the benchmark (CPU build).
  "${pip[@]}" pytest tqdm matplotlib 'torch==2.13.0' ruff
  # NumPy 1 in an overlay folder beside the environment's NumPy 2: tests/test_numpy_versions.py runs
  # the Vulkan case table in a process with it first on PYTHONPATH (the one kp build, both NumPy ABIs).
  numpy1="$venv/numpy1"
  if ! { [ -d "$numpy1/numpy" ] && PYTHONPATH="$numpy1" "$venv/bin/python" -c \
         'import numpy, sys; sys.exit(int(numpy.__version__.split(".")[0]) >= 2)' 2>/dev/null; }; then
    log "installing numpy<2 into $numpy1 (the NumPy 1 test overlay)"
    rm -rf "$numpy1"
    "${pip[@]}" --only-binary=:all: --target "$numpy1" 'numpy<2'
  fi
fi

# vkconvt itself, editable: the build hook compiles shaders/*.comp into vkconvt/spv/.
"${pip[@]}" --no-build-isolation --no-deps -e "$here"

find "$venv" -maxdepth 1 -name '.vkconvt-setup-*' ! -name ".vkconvt-setup-$stamp_key-*" -delete
touch "$stamp"
log "ready: $venv"
