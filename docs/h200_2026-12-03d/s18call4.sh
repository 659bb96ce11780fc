#!/usr/bin/env bash
# Session 18, call 4: ncu of the standalone MLA kernel against the fused one on B128 H128 L4k p16
# (one split a row: no split merge; the fused attention CTAs take ~14% more cycles, call 2), with
# instruction, warp-state, scheduler and source-counter sections. Carry scratch/s18b.tar.xz.
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/s18b.tar.xz -C /tmp || exit 1
N=/tmp/s18new
STALLS='regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio'
for k in mlaSm90Kernel mlaFusedKernel; do
timeout 200 ncu --target-processes all --clock-control none -k regex:$k --launch-count 1 \
  --section InstructionStats --section WarpStateStats --section SchedulerStats --section SourceCounters --section SpeedOfLight \
  --metrics $STALLS,smsp__inst_executed.sum,smsp__sass_inst_executed_op_branch.sum,sm__cycles_active.avg,smsp__inst_executed_pipe_uniform.sum \
  mpirun -np 1 $N/tools/dcp_decode_perf -g 1 -a fused -b 128 -e 128 -l 4096 -L 4096 -m 1 -H 128 -t bf16 -p 16 -c 0 -n 1 -w 0 > $R/ncu_$k.txt 2>&1
echo "ncu $k rc $? $(el) s"; grep -cE "mlaFusedKernel|mlaSm90Kernel" $R/ncu_$k.txt; done
