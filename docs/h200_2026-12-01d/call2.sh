#!/usr/bin/env bash
# session 4, call 2: prefill racecheck after the all-thread arrivals; ncu of the short rows vs 16k
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; mkdir -p /tmp/o; t0=$(date +%s)
meson setup build-gpu -Dgpu_arch=90a > /tmp/o/setup.log 2>&1 || tail -20 /tmp/o/setup.log
ninja -C build-gpu tests/gpu/test_gpu_prefill tools/prefill_perf > /tmp/o/build.log 2>&1 || { grep -E "error|FAILED" /tmp/o/build.log | head; exit 1; }
echo "build $(( $(date +%s)-t0 )) s"
CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout 150 compute-sanitizer --tool racecheck --error-exitcode 9 build-gpu/tests/gpu/test_gpu_prefill > $R/san_race.txt 2>&1; echo "racecheck rc $? at $(( $(date +%s)-t0 )) s"
grep -E "RACECHECK SUMMARY|ERROR SUMMARY|kernel cases" $R/san_race.txt | tail -3
P=build-gpu/tools/prefill_perf
STALLS='regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio'
PIPES='regex:sm__pipe_tensor_op_.*cycles_active\.avg\.pct_of_peak_sustained_active'
n=0
for cfg in "0 4 4096 -d 192 -v 128 -H 16 -K 16" "1 4 4096 -d 192 -v 128 -H 16 -K 16" "0 4 16384 -d 192 -v 128 -H 16 -K 16" "0 1 4096 -H 32 -K 8" "0 1 16384 -H 32 -K 8"; do
  set -- $cfg; f=$1; B=$2; L=$3; shift 3
  n=$((n+1))
  CPCL_PREFILL_SM90_PERSISTENT=$f timeout 100 ncu --clock-control none -k regex:prefillSm90Lib --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section Occupancy --metrics "$STALLS,$PIPES,gpu__time_duration.sum,sm__cycles_active.avg,smsp__cycles_active.avg" \
    $P -g 1 -a allgather -n 1 -w 1 -B $B -l $L -L $L "$@" > /tmp/o/ncu_$n.txt 2>&1
  echo "== ncu form $f B$B L$L $* rc=$?"
  grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|stalled|pipe_tensor|cycles_active|Achieved Occ|Registers" /tmp/o/ncu_$n.txt |
    awk '{ if ($NF+0 >= 0.04 || $0 ~ /Duration|Throughput|pipe_tensor|cycles_active|Occ|Reg/) print }' | sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | head -40
done
echo "done at $(( $(date +%s)-t0 )) s"
