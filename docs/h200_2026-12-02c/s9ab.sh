#!/usr/bin/env bash
# Session 9, calls 4-5: library B against library A, interleaved row by row, 300 replays on the 4k rows; both
# timelines (GQA B8 4k); B's kernel cases and schedules np 1-2. Run: bash s9ab.sh A B (call 4: fix pdiv; call 5:
# pdiv pnext). REPS (2), NPS ("1 2"), SAN and LIMIT below. Carry: scratch (bins.tar.xz: prefill_perf, test_gpu_prefill; libs/{A,A_trace,B,B_trace}.so.xz).
A=${1:?A}; B=${2:?B}
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; unset OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
for v in $A ${A}_trace $B ${B}_trace; do
  mkdir -p v/$v/src && tar xJf scratch/bins.tar.xz -C v/$v && xz -dc scratch/libs/$v.so.xz > v/$v/src/libcpcl.so.0.2.0 && ln -sf libcpcl.so.0.2.0 v/$v/src/libcpcl.so.0
done
T=v/$B/tests/gpu/test_gpu_prefill
timeout 60 env CPCL_TEST_PREFILL_KERNELS_ONLY=1 $T > $R/${B}_kernels.txt 2>&1; echo "$B kernels-only rc $? $(tail -1 $R/${B}_kernels.txt) $(el) s"
B8="-B 8 -l 4096 -L 4096 -H 32 -K 8"
for v in $A $B; do
  CPCL_PREFILL_SM90_TRACE=/tmp/$v.bin timeout 60 v/${v}_trace/tools/prefill_perf -g 1 -a allgather -n 2 -w 1 $B8 2>&1 | grep "trace:" | tail -1
  python3 tools/kernel_bench/prefill_trace.py /tmp/$v.bin > $R/trace_${v}_b8_4k.txt 2>&1; echo "== $v"; cut -c1-240 $R/trace_${v}_b8_4k.txt | head -5
done
rows=("-n 300 -B 4 -l 4096 -L 4096 -H 32 -K 8 -T GQA_B4_4k" "-n 300 $B8 -T GQA_B8_4k" "-n 300 -B 1 -l 4096 -L 4096 -H 32 -K 8 -T GQA_B1_4k"
  "-n 300 -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 -T MHA_B4_4k" "-n 60 -B 8 -l 8192 -L 8192 -H 32 -K 8 -T GQA_B8_8k"
  "-n 60 -B 1 -l 16384 -L 16384 -H 32 -K 8 -T GQA_B1_16k" "-n 10 -B 1 -l 65536 -L 65536 -H 32 -K 8 -T GQA_B1_64k")
for rep in $(seq ${REPS:-2}); do for row in "${rows[@]}"; do for v in $A $B; do
  o=$(timeout 60 v/$v/tools/prefill_perf -g 1 -a allgather -w 20 $row 2>&1 | grep -vE "^#|^$" | grep -v seqs | awk '{print $5,$6,$7,$11}')
  echo "${row##*-T } $v $o"; done; done; [ $(el) -gt 300 ] && break; done | tee $R/rows.txt; echo "rows $(el) s"
{ for np in ${NPS:-1 2}; do timeout 80 mpirun -np $np $T | tail -1; echo "np$np rc ${PIPESTATUS[0]}"; done; } > $R/${B}_tests.txt 2>&1; cat $R/${B}_tests.txt; echo "tests $(el) s"
# SAN="B:racecheck B:synccheck ...": compute-sanitizer tools on a library's kernel cases, while time is left (LIMIT s)
for job in ${SAN:-}; do v=${job%%:*}; tool=${job#*:}; left=$(( ${LIMIT:-500} - $(el) )); [ $left -lt 30 ] && { echo "$job skipped (time)"; continue; }
  CPCL_TEST_PREFILL_KERNELS_ONLY=1 timeout $left compute-sanitizer --tool $tool v/$v/tests/gpu/test_gpu_prefill > $R/${v}_$tool.txt 2>&1
  echo "$job rc $? $(el) s: $(grep -E 'SUMMARY|kernel cases' $R/${v}_$tool.txt | tail -2 | tr '\n' ' ')"; done
echo "done $(el) s"
