#!/usr/bin/env bash
# Installs what cpcl's build and tests need on Debian/Ubuntu (only what is missing, so a second
# run is quick), then configures and builds into ./build (CUDA only with a GPU or CPCL_CUDA=1).
# Usage: [CPCL_CUDA=0|1] tools/setup.sh [extra meson options]    (BUILD_DIR overrides ./build)
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

# CUDA: compiling the kernels takes minutes on a small machine, so it happens only when asked
# for (CPCL_CUDA=1, or -Dcuda=enabled/auto among the arguments) or when a GPU is present
# (nvidia-smi -L lists one); otherwise -Dcuda=disabled. CPCL_CUDA=0 turns it off on a GPU host.
# tools/test.sh compiles the CUDA code anyway wherever nvcc is found (its sanitizer CUDA build).
find_nvcc() {
  command -v nvcc >/dev/null && return 0
  for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
    if [ -n "$d" ] && [ -x "$d/bin/nvcc" ]; then export PATH="$d/bin:$PATH"; return 0; fi
  done
  return 1
}
cuda_arg=""
for a in "$@"; do
  case "$a" in -Dcuda=*) cuda_arg="$a" ;; esac
done
if [ -z "$cuda_arg" ]; then
  if [ "${CPCL_CUDA:-}" = 1 ]; then
    cuda_arg=-Dcuda=enabled
    why="CPCL_CUDA=1"
  elif [ "${CPCL_CUDA:-}" != 0 ] && command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q "^GPU "; then
    cuda_arg=-Dcuda=auto
    why="a GPU is present"
  else
    cuda_arg=-Dcuda=disabled
  fi
  set -- "$@" "$cuda_arg"
else
  why="$cuda_arg"
fi
if [ "$cuda_arg" = -Dcuda=disabled ]; then
  echo "setup: CUDA off (no GPU found, or CPCL_CUDA=0 / -Dcuda=disabled); CPCL_CUDA=1 ./tools/setup.sh compiles the kernels"
else
  find_nvcc || [ "$cuda_arg" != -Dcuda=enabled ] || { echo "setup: $why but no nvcc (PATH, CUDA_HOME, /usr/local/cuda)"; exit 1; }
fi

if [ -f "$BUILD_DIR/build.ninja" ]; then
  meson configure "$BUILD_DIR" "$@" >/dev/null
else
  meson setup "$BUILD_DIR" "$@" >/dev/null || { cat "$BUILD_DIR/meson-logs/meson-log.txt" | tail -30; exit 1; }
fi
if grep -q "cuda=yes" "$BUILD_DIR/config.h"; then
  # the CUDA kernels are most of the build: show ninja's progress rather than minutes of silence
  echo "setup: compiling the CUDA kernels too ($why; several minutes on 2 cores), ninja's progress:"
  ninja -C "$BUILD_DIR"
else
  ninja -C "$BUILD_DIR" >/dev/null
fi
echo "setup: built $(grep -o 'CPCL_BUILD_CONFIG.*' "$BUILD_DIR/config.h" | cut -d'"' -f2)"
