#!/usr/bin/env bash
# Several GPUs of one host (issue 7): one device call per machine size. Builds, runs the gpu
# suite with one process per GPU (ipc over NVLink and nccl; W = 2, 4, 8 up to the GPUs present;
# dcp = W and dcp < W inside the test), then dcp_decode_perf with every schedule side by side:
#   GQA Qwen3-235B-like (64 q / 4 KV heads, TP 8: 8 q heads and 1 KV head per rank), DCP 2..8;
#   MLA DeepSeek-like (16 q heads per rank, 576/512), DCP 8;
#   batch 1, 8, 32, 128; total context 8k, 32k, 128k; over ipc (all four schedules) and nccl;
# and the one-GPU references: TP-only (one GPU per head group holding the whole context, the
# crossover) and one GPU holding all DCP x 8 heads and the whole context (parallel efficiency).
# NVLink multicast stays off (the machines' rule). Usage (device tool): tools/multi_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/cpcl-out}
mkdir -p "$OUT"
BUILD=${BUILD_DIR:-build-gpu}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader CPCL_TIMEOUT_MS=20000
MPIRUN="mpirun -x NCCL_NVLS_ENABLE -x TORCH_SYMM_MEM_DISABLE_MULTICAST -x NVSHMEM_DISABLE_NVLS -x CPCL_TIMEOUT_MS"
N=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | sort | uniq -c
nvidia-smi topo -m >"$OUT/topo.txt" 2>&1; head -$((N + 1)) "$OUT/topo.txt" | cut -c1-100
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" -Dgpu_arch=90a >"$OUT/setup.log" 2>&1 || { tail -40 "$OUT/setup.log"; exit 1; }
fi
ninja -C "$BUILD" >"$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -30; exit 1; }
"$BUILD/tools/cpcl_info" | sed -n '4,8p'

echo "== gpu suite, one process per GPU"
fail=0
for np in 1 2 4 8; do
  [ "$np" -gt "$N" ] && continue
  timeout 900 $MPIRUN -np $np "$BUILD/tests/gpu/test_gpu_decode" >"$OUT/suite_np$np.txt" 2>&1 || fail=1
  grep -E "passed|gave up|\[rank" "$OUT/suite_np$np.txt" | sort -u | head -6
done

P="$BUILD/tools/dcp_decode_perf"
perf() { # np, label, args...
  local np=$1 label=$2
  shift 2
  for b in "-b 1 -e 1" "-b 8 -e 32 -f 4" "-b 128 -e 128"; do
    $MPIRUN -np $np $P -g 1 $b -l 8192 -L 131072 -F 4 -n 20 -T "$label" "$@" 2>&1 || echo "# FAILED: $b"
  done | awk '!/^#/ || !seen[$0]++' >"$OUT/perf_${label// /_}.txt"
  echo "== $label"
  cat "$OUT/perf_${label// /_}.txt"
}
for D in 2 4 8; do
  [ "$D" -gt "$N" ] && continue
  perf $D "GQA DCP$D ipc" -H 8 -K 1
  perf $D "GQA DCP$D nccl" -H 8 -K 1 -X nccl -a agrs,a2a,pipelined
done
[ "$N" -ge 8 ] && perf 8 "MLA DCP8 ipc" -m 1 -H 16
# one-GPU references (same batches and total contexts)
perf 1 "GQA TP-only 1 GPU" -H 8 -K 1 -a a2a
perf 1 "GQA all heads 1 GPU" -H 64 -K 1 -a a2a
[ "$N" -ge 8 ] && perf 1 "MLA all heads 1 GPU" -m 1 -H 128 -a a2a
exit $fail
