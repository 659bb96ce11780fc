#!/usr/bin/env bash
# Session 18, call 7: compute-sanitizer of the MLA shapes of test_gpu_decode (3: 4 heads a rank,
# 4: 16 heads page 64, 5: 32 heads multi-row) on this tree's build (call 6's): memcheck of each,
# racecheck of shape 4 with the hazard pairs kept whole. Carry scratch/s18c.tar.xz.
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
[ -d /tmp/s18new/tests ] || { rm -rf /tmp/s18new; tar xJf scratch/s18c.tar.xz -C /tmp || exit 1; }
N=/tmp/s18new; S=$R/sanitizer.txt
for s in 3 4 5; do left=$(( 400 - $(el) )); [ $left -lt 30 ] && break
  CPCL_TEST_SHAPE=$s timeout $left compute-sanitizer --tool memcheck $N/tests/gpu/test_gpu_decode > /tmp/mc$s.txt 2>&1
  echo "memcheck shape $s rc $? $(grep -E 'ERROR SUMMARY' /tmp/mc$s.txt) $(grep -cE 'Invalid|out of bounds' /tmp/mc$s.txt) access errors $(tail -n 1 /tmp/mc$s.txt | cut -c1-120) $(el) s"
  grep -B2 -A12 -m 3 -E "Invalid|out of bounds" /tmp/mc$s.txt >> $S; done
left=$(( 560 - $(el) ))
[ $left -gt 30 ] && { CPCL_TEST_SHAPE=4 timeout $left compute-sanitizer --tool racecheck $N/tests/gpu/test_gpu_decode > /tmp/rc.txt 2>&1
  echo "racecheck shape 4 rc $? $(grep -E 'RACECHECK SUMMARY' /tmp/rc.txt | tail -n 1) $(el) s"
  echo "== racecheck shape 4: pairs (write line | read line)" >> $S
  sed -E 's/0x[0-9a-f]+/X/g; s/\(const CUtensorMap_st[^)]*\)//g; s/cpcl::(gqa90|mla90):://g' /tmp/rc.txt |
    awk '/Race reported between/{w=$0; next} w!="" && /and .* access at/{print w " || " $0; w=""}' | sed -E 's/=+ *//g' |
    sort | uniq -c | sort -rn | head -n 40 | cut -c1-400 >> $S; }
echo "done $(el) s"
