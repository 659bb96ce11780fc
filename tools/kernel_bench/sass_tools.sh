#!/usr/bin/env bash
# cuobjdump and nvdisasm on a machine whose CUDA toolkit lacks them (this project's build machines carry
# nvcc and ptxas only): NVIDIA's PyPI wheels (nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm), unpacked into
# scratch/cutools (ignored). Prints the folder to put on PATH. With them the SASS of a unit compiled here
# can be read without the GPU machine, e.g.
#   cuobjdump -res-usage X.o                      (registers, stack bytes, per kernel)
#   cuobjdump -sass -fun '<mangled name>' X.o     (where the spill stores / loads sit: STL / LDL)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
dst=$root/scratch/cutools
if [ ! -x "$dst/nvidia/cu13/bin/cuobjdump" ]; then
  mkdir -p "$dst/wheels"
  python3 -m pip download -q --no-deps -d "$dst/wheels" nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm
  for w in "$dst"/wheels/*.whl; do python3 -m zipfile -e "$w" "$dst"; done
  chmod +x "$dst"/nvidia/*/bin/* 2>/dev/null || true
fi
ls -d "$dst"/nvidia/*/bin
