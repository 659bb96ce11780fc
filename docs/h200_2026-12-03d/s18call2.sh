#!/usr/bin/env bash
# Session 18, call 2 (issue 13's fused point): the MLA split merge with a quad of warps a head (Q 4,
# mlaSm90Combine's thread map and batch 16) beside a warp a head (Q 1, call 1's), chosen by items;
# the gpu tests of it (auto, and Q 1 forced at np 1), then one-rank fused MLA rows with the
# experiment knobs of this build: CPCL_MLA_SM90_FUSED_Q (1 / 4), _ROOM (waiting CTAs), _NOMERGE (no
# split merge: wrong out, the attention part's time). Then the SASS of main's GQA unit around
# racecheck's hazard (cuobjdump of the carried object). Usage: bash s18call2.sh; carry scratch/s18b.tar.xz.
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/${1:-s18b}.tar.xz -C /tmp || exit 1
N=/tmp/s18new; T=$R/tests.txt
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
for np in 1 2 4; do CPCL_TIMEOUT_MS=60000 timeout 150 mpirun -np $np $N/tests/gpu/test_gpu_decode > /tmp/td$np.txt 2>&1
  echo "test_gpu_decode np$np rc $? $(tail -n 1 /tmp/td$np.txt) $(el) s"; echo "== np$np" >> $T; grep -iE "fail|error|expect" /tmp/td$np.txt | head -n 30 >> $T; done
CPCL_MLA_SM90_FUSED_Q=1 CPCL_TEST_SHAPE=3 CPCL_TIMEOUT_MS=60000 timeout 100 mpirun -np 2 -x CPCL_MLA_SM90_FUSED_Q -x CPCL_TEST_SHAPE $N/tests/gpu/test_gpu_decode > /tmp/tq.txt 2>&1
echo "test_gpu_decode np2 shape 3 Q1 rc $? $(tail -n 1 /tmp/tq.txt) $(el) s"; grep -iE "fail|error|expect" /tmp/tq.txt | head -n 20 >> $T
P=$R/perf.txt
G="1,16,4096,16 64,16,16384,16 32,128,16384,16 128,128,16384,16 128,128,4096,16"
row() { # mode B H L page
  local left=$(( 520 - $(el) )); [ $left -lt 20 ] && { echo "$1 B$2 H$3 L$4 p$5 skipped"; return; }
  local env=""; case $1 in q1) env="-x CPCL_MLA_SM90_FUSED_Q=1";; q4) env="-x CPCL_MLA_SM90_FUSED_Q=4";; nomerge) env="-x CPCL_MLA_SM90_FUSED_NOMERGE=1";; room) env="-x CPCL_MLA_SM90_FUSED_ROOM=130";; esac
  timeout $left mpirun -np 1 $env $N/tools/dcp_decode_perf -g 1 -a fused -b $2 -e $2 -l $4 -L $4 -m 1 -H $3 -t bf16 -p $5 -c 0 -n 20 > /tmp/row.txt 2>&1
  echo "$1 mla B$2 H$3 L$4 p$5 | $(grep -E ' (a2a|fused) ' /tmp/row.txt | sed 's/  */ /g' | tr '\n' '|')"; }
for r in $G; do IFS=, read B H L pg <<< "$r"; for m in auto q1 q4 nomerge room auto; do row $m $B $H $L $pg; done; done | tee $P
echo "perf $(el) s"
for L in 4096; do timeout 120 ncu --target-processes all --clock-control none -k 'regex:mlaFusedKernel|mlaSm90Kernel' --launch-count 4 \
  --section SpeedOfLight --section LaunchStats --section Occupancy --metrics gpu__time_duration.sum,sm__cycles_active.avg \
  mpirun -np 1 $N/tools/dcp_decode_perf -g 1 -a fused -b 128 -e 128 -l $L -L $L -m 1 -H 128 -t bf16 -p 16 -c 0 -n 1 -w 0 > /tmp/ncu.txt 2>&1
  echo "ncu B128 H128 L$L rc $? $(el) s"; echo "== ncu B128 H128 L$L p16 (bare's kernel then fused's)" >> $P
  grep -E "mlaFusedKernel|mlaSm90Kernel|Duration|Throughput|Registers|Achieved Occ|Dynamic Shared|Static Shared|Waves|Block Limit|cycles_active" /tmp/ncu.txt | cut -c1-160 >> $P; done
cuobjdump -sass scratch/gqa_sm90.cu.o 2>&1 | xz -T4 > $R/gqa_sass.txt.xz; echo "sass rc $? $(el) s"
echo "done $(el) s"
