#!/usr/bin/env bash
# Session 18, call 5: per-instruction executed counts (ncu source page, SASS) of the standalone MLA
# kernel and the fused one on B128 H128 L4k p16, to find the ~10% more instructions the fused
# attention CTAs execute (call 4: 99.7M against 90.3M). Carry scratch/s18b.tar.xz.
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
[ -d /tmp/s18new ] || tar xJf scratch/s18b.tar.xz -C /tmp || exit 1
N=/tmp/s18new
for k in mlaSm90Kernel mlaFusedKernel; do
timeout 250 ncu --target-processes all --clock-control none -k regex:$k --launch-count 1 --section SourceCounters \
  --metrics smsp__inst_executed.sum --page source --csv --print-source sass \
  mpirun -np 1 $N/tools/dcp_decode_perf -g 1 -a fused -b 128 -e 128 -l 4096 -L 4096 -m 1 -H 128 -t bf16 -p 16 -c 0 -n 1 -w 0 > /tmp/src_$k.txt 2>&1
echo "ncu $k rc $? $(el) s $(wc -l < /tmp/src_$k.txt) lines"; xz -T8 < /tmp/src_$k.txt > $R/src_$k.txt.xz; head -c 600 /tmp/src_$k.txt; echo; done
