#!/usr/bin/env bash
# Installs what cpcl's build and tests need on Debian/Ubuntu (only what is missing, so a second
# run is quick), then configures and builds into ./build.
# Usage: tools/setup.sh [extra meson options]    (BUILD_DIR overrides ./build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

pkgs=(meson ninja-build pkg-config gcc clang clang-format libclang-rt-14-dev libucx-dev ucx-utils libhwloc-dev libcmocka-dev openmpi-bin
      libopenmpi-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The python suite (tests/python): numpy, mpi4py (built against the system OpenMPI), ml_dtypes.
python3 -c "import numpy, mpi4py, ml_dtypes" 2>/dev/null || python3 -m pip install -q numpy mpi4py ml_dtypes ||
  echo "setup: pip could not install numpy/mpi4py/ml_dtypes: the python suite will be skipped"

# CUDA is optional: use it when nvcc is on PATH, or under CUDA_HOME / the usual prefix.
if ! command -v nvcc >/dev/null; then
  for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
    if [ -n "$d" ] && [ -x "$d/bin/nvcc" ]; then export PATH="$d/bin:$PATH"; break; fi
  done
fi

if [ -f "$BUILD_DIR/build.ninja" ]; then
  [ $# -gt 0 ] && meson configure "$BUILD_DIR" "$@" >/dev/null
else
  meson setup "$BUILD_DIR" "$@" >/dev/null || { cat "$BUILD_DIR/meson-logs/meson-log.txt" | tail -30; exit 1; }
fi
ninja -C "$BUILD_DIR" >/dev/null
echo "setup: built $(grep -o 'CPCL_BUILD_CONFIG.*' "$BUILD_DIR/config.h" | cut -d'"' -f2)"
