#!/usr/bin/env bash
# The python package on the GPU machine (torch there, no network): build cpcl with CUDA into
# BUILD_DIR (default build-gpu, shared with tools/gpu_check.sh), then tests/python/test_torch.py
# on 1, 2 and 4 processes (CUDA tensors: torch.ops.cpcl.*, opcheck, torch.compile fullgraph with
# inductor, CUDA-graph capture and replay with new contents, cpcl.vllm against vLLM's reference
# semantics), the same on host tensors, and examples/decode_torch.py on 2 processes. Processes
# share the GPUs round-robin (one GPU: all on it, over ipc). Needs python3 with torch and numpy.
# Usage (device tool): tests/python/gpu_python.sh            logs under $OUT (or /tmp/cpcl-out)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/cpcl-out}
mkdir -p "$OUT"
BUILD=${BUILD_DIR:-build-gpu}
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" -Dgpu_arch=90a >"$OUT/py_setup.log" 2>&1 || { tail -40 "$OUT/py_setup.log"; exit 1; }
fi
ninja -C "$BUILD" >"$OUT/py_build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/py_build.log" | head -30; exit 1; }
export CPCL_LIBRARY="$PWD/$BUILD/src/libcpcl.so" PYTHONPATH="$PWD/python" CPCL_TIMEOUT_MS=${CPCL_TIMEOUT_MS:-20000}
python3 -c "import torch, numpy, cpcl; print('torch', torch.__version__, 'gpus', torch.cuda.device_count(), '|', cpcl.build_config())"
status=0
run() { # name, command...
  local name=$1
  shift
  echo "== $name"
  "$@" >"$OUT/py_$name.log" 2>&1
  local rc=$?
  grep -vE "^ok|flop_counter|^W[0-9]{4}|OMP_NUM_THREADS|^\*+$" "$OUT/py_$name.log" | tail -25
  [ $rc -ne 0 ] && { echo "   -> exit $rc"; status=1; }
}
for np in 1 2 4; do
  run "torch_cuda_np$np" torchrun --nproc-per-node "$np" --master-port $((29600 + np)) tests/python/test_torch.py
done
# host tensors on several ranks need the ucx transport (the GPU machine has no UCX headers)
if python3 -c "import cpcl, sys; sys.exit(0 if 'ucx=yes' in cpcl.build_config() else 1)"; then
  run torch_host_np2 torchrun --nproc-per-node 2 --master-port 29610 tests/python/test_torch.py --cpu
else
  echo "== torch_host_np2: SKIP (this build has no ucx transport: host tensors on several ranks need it)"
  run torch_host_np1 torchrun --nproc-per-node 1 --master-port 29610 tests/python/test_torch.py --cpu
fi
run example_np2 torchrun --nproc-per-node 2 --master-port 29611 examples/decode_torch.py
exit $status
