#!/usr/bin/env bash
# Session 20, call 1: the first GPU run of session 19's code (5ab57b5 .. 6cc1205: the bulk tail merge, the
# split / stage knobs, the top-k filter inside the MLA attention, the shared-state-space smem bases).
# Binaries: built here (this machine: 2 cores) from this tree with
#   meson setup /tmp/bcuda -Dgpu_arch=90a -Dcuda=enabled -Dbuildtype=release && ninja -C /tmp/bcuda
# packed as scratch/s20lib.tar.xz holding s20lib/{src,tools,tests/gpu} without the libcpcl.so.*.p folders
# (tests link libcpcl statically; tools take $ORIGIN/../src). Carry scratch/s20lib.tar.xz.
#   1. the gpu suite (the order below puts the new paths first, so a short call still checks them): test_gpu_kernels (run 7: the two tail forms bitwise; raw vs filtered sparse MLA bitwise),
#      test_gpu_prefill np 1/2, test_gpu_decode np 1/2/4 with the bulk tail, np 1/2 with the top-k filter in
#      the MLA attention (CPCL_MLA_SM90_TOPK=1);
#   2. as time allows: kernel_perf (bare) with the rule's merge and with the bulk tail merge in its place;
#      dcp_decode_perf a2a / fused with CPCL_GQA_SM90_TAIL=ld / bulk; kernel_perf's sparse rows (topk / inattn).
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
LIMIT=${LIMIT:-575}
[ -d /tmp/s20lib ] || { tar xJf scratch/s20lib.tar.xz -C /tmp || exit 1; }
N=/tmp/s20lib; P=$R/perf.txt; T=$R/tests.txt
cap() { local l=$(( LIMIT - $(el) )); [ $l -lt $1 ] && echo $l || echo $1; } # a test's timeout within LIMIT
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,memory.total --format=csv,noheader | tee $R/gpu.txt
timeout $(cap 200) $N/tests/gpu/test_gpu_kernels > $R/kernels.txt 2>&1; echo "test_gpu_kernels rc $? $(tail -n 1 $R/kernels.txt) $(el) s"
grep -iE "fail|error" $R/kernels.txt | head -n 20 >> $T
dec() { # np env-name env-value cap
  [ $(( LIMIT - $(el) )) -lt 20 ] && { echo "test_gpu_decode np$1 $2=$3 skipped"; return; }
  env $2=$3 CPCL_TIMEOUT_MS=60000 timeout $(cap $4) mpirun -np $1 -x $2 $N/tests/gpu/test_gpu_decode > /tmp/td.txt 2>&1
  echo "test_gpu_decode ($2=$3) np$1 rc $? $(tail -n 1 /tmp/td.txt) $(el) s"; echo "== decode $2=$3 np$1" >> $T; grep -iE "fail|error|expect" /tmp/td.txt | head -n 30 >> $T; }
pre() { # np
  [ $(( LIMIT - $(el) )) -lt 20 ] && { echo "test_gpu_prefill np$1 skipped"; return; }
  CPCL_TIMEOUT_MS=60000 timeout $(cap 120) mpirun -np $1 $N/tests/gpu/test_gpu_prefill > /tmp/tp.txt 2>&1
  echo "test_gpu_prefill np$1 rc $? $(tail -n 1 /tmp/tp.txt) $(el) s"; echo "== prefill np$1" >> $T; grep -iE "fail|error|expect" /tmp/tp.txt | head -n 10 >> $T; }
K=$N/tools/kernel_perf
bare() { # the rule's merge against the bulk tail merge in its place (the kernel_perf rows of issue 12)
  for ENVS in "" "CPCL_GQA_SM90_TAIL=bulk CPCL_GQA_SM90_MERGE=tail"; do
    left=$(( LIMIT - 30 - $(el) )); [ $left -lt 20 ] && break
    echo "== kernel_perf [$ENVS] ($(el) s)"
    timeout $left env $ENVS $K -n 30 -C 0 -s 64,16,1,128,8192 -s 16,16,1,128,32768 -s 128,64,8,128,4096 -s 1,16,1,128,4096 2>&1 | grep -vE "^#|^$"
  done | tee $R/bare.txt; }
dec 1 CPCL_GQA_SM90_TAIL bulk 200
dec 1 CPCL_MLA_SM90_TOPK 1 150
dec 2 CPCL_GQA_SM90_TAIL bulk 200
bare
pre 1
dec 4 CPCL_GQA_SM90_TAIL bulk 200
dec 2 CPCL_MLA_SM90_TOPK 1 150
pre 2
G="64,16,1,8192 32,64,1,32768 8,64,1,131072 1,16,1,4096"
row() { # label B H K L, env in $ENVS
  local left=$(( LIMIT - 60 - $(el) )); [ $left -lt 20 ] && { echo "$1 B$2 H$3 L$5 skipped"; return; }
  timeout $left env $ENVS mpirun -np 1 $(for v in $ENVS; do echo -n "-x ${v%%=*} "; done) $N/tools/dcp_decode_perf -g 1 -a a2a,fused -b $2 -e $2 -l $5 -L $5 \
    -H $3 -K $4 -d 128 -v 128 -t bf16 -p 16 -c 0 -n 20 > /tmp/row.txt 2>&1
  echo "$1 B$2 H$3/$4 L$5 | $(grep -E ' (a2a|fused) ' /tmp/row.txt | sed 's/  */ /g' | tr '\n' '|')"; }
for r in $G; do IFS=, read B H K L <<< "$r"
  for ENVS in "CPCL_GQA_SM90_TAIL=ld" "CPCL_GQA_SM90_TAIL=bulk"; do row "[$ENVS]" $B $H $K $L; done
done | tee $P
left=$(( LIMIT - $(el) )); echo "== sparse, page 64: topk (filter kernel) vs inattn ($(el) s)"
[ $left -gt 15 ] && timeout $left $K -n 20 -C 0 -k 2048 -W 8 -p 64 -s 64,128,1,576,32768 -s 128,128,1,576,32768 -c 1 2>&1 | grep -vE "^#|^$" | tee $R/sparse.txt
echo "done $(el) s"
