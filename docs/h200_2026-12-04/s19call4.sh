#!/usr/bin/env bash
# Session 19, call 4 (prepared; not run in session 19): racecheck's GQA epilogue hazards (issue 12's
# "racecheck clean") against a build with the tail's scratch out of the TMA stages
# (-DCPCL_GQA_RACECHECK_SCRATCH, gqa_sm90.cuh; never the library's build). Session 18 saw every GQA
# hazard as a consumer's write of the scratch, a __syncthreads, then the producer warp's read, which a
# probe of that pattern (racecheck_pdl_probe.cu) did not reproduce; if the scratch-apart build is clean,
# the TMA's (async proxy's) earlier writes of the same bytes are what racecheck mis-orders.
# Builds both benches here (4 units in parallel, ~2-3 min), then racecheck of the bench's checks of the
# workspace forms (GQA_ONLY=S, then F) for each build.
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
cd tools/kernel_bench || exit 1
build() { # out-dir extra-flags
  mkdir -p $1
  for f in ../../kernels/cuda/gqa_sm90.cu ../../kernels/cuda/gqa_sm90_fused.cu ../../kernels/cuda/errors.cu gqa_sm90_bench.cu; do
    nvcc -gencode arch=compute_90a,code=sm_90a -O3 -std=c++17 $2 -I../../kernels -I../../kernels/cuda -c -o $1/$(basename $f .cu).o $f &
  done; wait
  nvcc -gencode arch=compute_90a,code=sm_90a -o $1/gqa_sm90_bench $1/*.o -lcuda; }
build /tmp/bplain "" & build /tmp/brace "-DCPCL_GQA_RACECHECK_SCRATCH" & wait
echo "built $(el) s"
for b in plain race; do for f in S F; do
  left=$(( 580 - $(el) )); [ $left -lt 30 ] && break
  GQA_ONLY=$f timeout $(( left / 2 )) compute-sanitizer --tool racecheck /tmp/b$b/gqa_sm90_bench check > /tmp/rc_$b$f.txt 2>&1
  echo "racecheck $b GQA_ONLY=$f rc $? $(grep -E 'RACECHECK SUMMARY' /tmp/rc_$b$f.txt | tail -n 1) $(el) s"
  sed -E 's/0x[0-9a-f]+/X/g; s/\(const CUtensorMap_st[^)]*\)//g; s/cpcl::gqa90:://g' /tmp/rc_$b$f.txt |
    awk '/Race reported between/{w=$0; next} w!="" && /and .* access at/{print w " || " $0; w=""}' | sed -E 's/=+ *//g' |
    sort | uniq -c | sort -rn | head -n 20 > $R/racecheck_$b$f.txt
done; done
echo "done $(el) s"
