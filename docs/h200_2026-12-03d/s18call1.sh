#!/usr/bin/env bash
# Session 18, call 1 (issues 13 and 12): the MLA fused patch (docs/h200_2026-12-03c/mla_fused_wip.patch
# on 22a815c, "new") against main at 22a815c ("old"), the same dcp_decode_perf over each: the gpu tests
# of the new one (test_gpu_decode compares fused MLA with a2a bitwise), one-rank a2a / fused MLA rows of
# issue 13's shapes for both libraries, then racecheck of main's GQA shape 0 with every hazard pair kept
# whole (session 17's sort | uniq split the pairs) and a hazard-level sample with addresses and threads.
# Usage: bash s18call1.sh; carry scratch/s18a.tar.xz.
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/${1:-s18a}.tar.xz -C /tmp || exit 1
N=/tmp/s18new; O=/tmp/s18old; T=$R/tests.txt
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
timeout 150 $N/tests/gpu/test_gpu_kernels > /tmp/tk.txt 2>&1; echo "test_gpu_kernels rc $? $(tail -n 1 /tmp/tk.txt) $(el) s"
grep -iE "fail|error" /tmp/tk.txt | head -n 20 >> $T
for np in 1 2 4; do CPCL_TIMEOUT_MS=60000 timeout 150 mpirun -np $np $N/tests/gpu/test_gpu_decode > /tmp/td$np.txt 2>&1
  echo "test_gpu_decode np$np rc $? $(tail -n 1 /tmp/td$np.txt) $(el) s"; echo "== np$np" >> $T; grep -iE "fail|error|expect" /tmp/td$np.txt | head -n 30 >> $T; done
P=$R/perf.txt
G="1,16,4096,16 64,16,16384,16 32,128,16384,16 32,128,16384,64 128,128,16384,16 128,128,4096,16"
row() { # lib B H L page
  local d=$N; [ $1 = old ] && d=$O; local left=$(( 400 - $(el) )); [ $left -lt 20 ] && { echo "$1 B$2 H$3 L$4 p$5 skipped"; return; }
  timeout $left mpirun -np 1 $d/tools/dcp_decode_perf -g 1 -a a2a,fused -b $2 -e $2 -l $4 -L $4 -m 1 -H $3 -t bf16 -p $5 -c 0 -n 20 > /tmp/row.txt 2>&1
  echo "$1 mla B$2 H$3 L$4 p$5 | $(grep -E ' (a2a|fused) ' /tmp/row.txt | sed 's/  */ /g' | tr '\n' '|')"; }
for lib in new old new; do
  for r in $G; do IFS=, read B H L pg <<< "$r"; row $lib $B $H $L $pg; done
done | tee $P
echo "perf $(el) s"
S=$R/sanitizer.txt; left=$(( 560 - $(el) ))
[ $left -gt 30 ] && { CPCL_TEST_SHAPE=0 timeout $left compute-sanitizer --tool racecheck $O/tests/gpu/test_gpu_decode > /tmp/rc.txt 2>&1
  echo "racecheck old shape 0 rc $? $(grep -E 'RACECHECK SUMMARY' /tmp/rc.txt | tail -n 1) $(el) s"
  echo "== racecheck old shape 0: pairs (write line | read line)" >> $S
  sed -E 's/0x[0-9a-f]+/X/g; s/\(const CUtensorMap_st[^)]*\)//g; s/cpcl::(gqa90|mla90):://g' /tmp/rc.txt |
    awk '/Race reported between/{w=$0; next} w!="" && /and .* access at/{print w " || " $0; w=""}' | sed -E 's/=+ *//g' |
    sort | uniq -c | sort -rn | head -n 40 >> $S; }
left=$(( 590 - $(el) ))
[ $left -gt 20 ] && { CPCL_TEST_SHAPE=0 timeout $left compute-sanitizer --tool racecheck --racecheck-report hazard $O/tests/gpu/test_gpu_decode > /tmp/rh.txt 2>&1
  echo "racecheck hazard rc $? $(el) s"; echo "== racecheck hazard-level, gqa lines" >> $S
  grep -B1 -A8 -m 12 "gqa_sm90.cuh" /tmp/rh.txt | grep -vE "Saved host|Host Frame" | cut -c1-300 >> $S; }
echo "done $(el) s"
