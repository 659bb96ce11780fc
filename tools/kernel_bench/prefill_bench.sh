#!/usr/bin/env bash
# One call on the GPU machine: the GPU prefill (tools/prefill_perf -g 1) on the issue-15 shapes,
# side by side with PyTorch's SDPA (flash, cuDNN) on the same causal shapes.
#   B 1..8, 4k-64k tokens, GQA H32/Hkv8 D128 and MHA H16 D192/128, bf16, one GPU.
# Each prefill_perf row times cpclAttnPrefill (schedule column) and the one-rank prefill of the
# same batch (one_us, one_TF/s: the bare kernel on one GPU plus its layout copy and K/V store),
# both as CUDA-graph replays; FLOPs are causal, as the anchor counts them. On the H200 these
# shapes (bf16, no context, one K/V block) take the Hopper body (cpclPrefillSm90Fits,
# docs/PREFILL_SM90.md "Wired"). TEST=1 runs the gpu prefill test first (np 1 and 2: its kernel
# cases print which body each ran), a few minutes more: the device call's 10 minutes may not hold
# both, so by default the suite is a call of its own. The rows are the standalone bench's
# shapes (tools/kernel_bench/prefill_sm90_bench.sh), so the two compare line by line.
# FORMS="0 1" (the default) times every row in the Hopper body's grid form, then in its persistent
# form (CPCL_PREFILL_SM90_PERSISTENT), the form in each row's title; FORMS=0 the grid form alone.
# Usage (device tool, from the repository root): tools/kernel_bench/prefill_bench.sh (the anchor,
# torch_prefill_anchor_rows.py, is in this folder)
# Logs under /tmp/cpcl-out; prefill.txt, prefill_check.txt, prefill_test.txt (TEST=1) and anchor.txt
# are copied to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
LOG=/tmp/cpcl-out
mkdir -p "$LOG"
BUILD=${BUILD_DIR:-build-gpu}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv \
  >"$LOG/gpu.txt" 2>&1
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" -Dgpu_arch=90a >"$LOG/setup.log" 2>&1 || { tail -40 "$LOG/setup.log"; exit 1; }
fi
ninja -C "$BUILD" tools/prefill_perf tests/gpu/test_gpu_prefill >"$LOG/build.log" 2>&1 ||
  { grep -E "error|FAILED" "$LOG/build.log" | head -30; exit 1; }
P="$BUILD/tools/prefill_perf"
rc=0
if [ "${TEST:-0}" != 0 ]; then
  echo "== the kernel cases and schedules np 1-2 (tests/gpu/test_gpu_prefill; each kernel line names its body)"
  { timeout 600 mpirun -np 1 "$BUILD/tests/gpu/test_gpu_prefill" &&
    timeout 600 mpirun -np 2 "$BUILD/tests/gpu/test_gpu_prefill"; } >"$LOG/prefill_test.txt" 2>&1 || rc=1
  grep -E "^kernel|FAIL|fail|Abort|error" "$LOG/prefill_test.txt" | head -40
  tail -3 "$LOG/prefill_test.txt"
fi
# FORMS: the Hopper body's forms to time, as CPCL_PREFILL_SM90_PERSISTENT values (0 the grid form,
# 1 persistent with the work counter, 2 persistent in the static order, 3 by shape, the library's
# default: persistent at D128, grid at D192; docs/PREFILL_SM90.md,
# "Persistent form"): every row once per form, the form in its title, so one call compares them
FORMS=${FORMS:-0 1}
formName() { case $1 in 0) echo grid ;; 1) echo persistent ;; 2) echo "persistent static" ;; 3) echo "by-shape (default)" ;; *) echo "form $1" ;; esac; }
echo "== correctness first: 2k tokens, checked against the one-rank prefill (CUDA), then 2 processes over ipc"
: >"$LOG/prefill_check.txt"
for f in $FORMS; do
  echo "# the Hopper body's $(formName "$f") form (CPCL_PREFILL_SM90_PERSISTENT=$f)" >>"$LOG/prefill_check.txt"
  {
    export CPCL_PREFILL_SM90_PERSISTENT=$f
    $P -g 1 -B 2 -l 2048 -L 2048 -H 32 -K 8 -a allgather,ring -c 1 -n 3 -w 1 -T "check GQA [$(formName "$f")]" &&
      $P -g 1 -B 1 -l 2048 -L 2048 -H 16 -K 16 -d 192 -v 128 -a allgather -c 1 -n 3 -w 1 -T "check MHA [$(formName "$f")]" &&
      $P -g 1 -B 1 -l 1024 -L 1024 -C 1024 -H 32 -K 8 -a allgather -c 1 -n 3 -w 1 -T "check chunked [$(formName "$f")]" &&
      mpirun -np 2 -x CPCL_PREFILL_SM90_PERSISTENT $P -g 1 -X ipc -B 2 -l 2048 -L 2048 -H 16 -K 4 -a allgather,ring -c 1 \
        -n 3 -w 1 -T "check np2 [$(formName "$f")]"
  } >>"$LOG/prefill_check.txt" 2>&1 || rc=1
done
unset CPCL_PREFILL_SM90_PERSISTENT
grep -vE "^#" "$LOG/prefill_check.txt" | tail -24
echo "== timing (one GPU, bf16, causal; -a allgather: on one rank every schedule is the same call), forms: $FORMS"
: >"$LOG/prefill.txt"
for f in $FORMS; do
  F=$(formName "$f")
  echo "# the Hopper body's $F form (CPCL_PREFILL_SM90_PERSISTENT=$f)" >>"$LOG/prefill.txt"
  run() { CPCL_PREFILL_SM90_PERSISTENT=$f timeout 300 $P -g 1 -a allgather -n 10 -w 2 "$@" >>"$LOG/prefill.txt" 2>&1 || rc=1; }
  run -B 1 -l 4096 -L 65536 -F 2 -H 32 -K 8 -T "GQA H32/Hkv8 D128, B1 [$F]"
  run -B 2 -l 8192 -L 16384 -F 2 -H 32 -K 8 -T "GQA H32/Hkv8 D128, B2 [$F]"
  run -B 4 -l 4096 -L 16384 -F 2 -H 32 -K 8 -T "GQA H32/Hkv8 D128, B4 [$F]"
  run -B 8 -l 4096 -L 8192 -F 2 -H 32 -K 8 -T "GQA H32/Hkv8 D128, B8 [$F]"
  run -B 1 -l 4096 -L 65536 -F 4 -H 16 -K 16 -d 192 -v 128 -T "MHA H16 D192/128, B1 [$F]"
  run -B 2 -l 16384 -L 16384 -F 2 -H 16 -K 16 -d 192 -v 128 -T "MHA H16 D192/128, B2 [$F]"
  run -B 4 -l 4096 -L 16384 -F 4 -H 16 -K 16 -d 192 -v 128 -T "MHA H16 D192/128, B4 [$F]"
  # with context: the cache shard's tiles (copied by the Hopper body's producer warps) next to the
  # new tokens' (TMA); FLOPs count every visible key, cached ones included
  run -B 1 -l 4096 -L 4096 -C 12288 -H 32 -K 8 -T "GQA H32/Hkv8 D128, B1, 12k cached + 4k new [$F]"
  run -B 1 -l 4096 -L 4096 -C 12288 -H 16 -K 16 -d 192 -v 128 -T "MHA H16 D192/128, B1, 12k cached + 4k new [$F]"
done
grep -vE "^#" "$LOG/prefill.txt" | grep -vE "^$"
echo "== PyTorch SDPA on the same shapes (tools/kernel_bench/torch_prefill_anchor_rows.py)"
ANCHOR=tools/kernel_bench/torch_prefill_anchor_rows.py # the shared anchor with every row above
if [ -f $ANCHOR ]; then
  OUT="$LOG" timeout 300 python3 $ANCHOR >"$LOG/anchor.txt" 2>&1 || rc=1
  cat "$LOG/anchor.txt"
else
  echo "$ANCHOR missing" | tee "$LOG/anchor.txt"
fi
if [ -n "${OUT:-}" ] && [ "$OUT" != "$LOG" ]; then
  mkdir -p "$OUT"
  cp "$LOG/prefill.txt" "$LOG/prefill_check.txt" "$LOG/prefill_test.txt" "$LOG/anchor.txt" "$LOG/gpu.txt" "$OUT/" \
    2>/dev/null
fi
exit $rc
