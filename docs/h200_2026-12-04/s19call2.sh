#!/usr/bin/env bash
# Session 19, call 2 (prepared; not run in session 19, which had no device time): the library with the
# bulk tail merge (CPCL_GQA_SM90_TAIL=bulk) and the split / stage knobs (CPCL_GQA_SM90_SPLITS,
# CPCL_GQA_SM90_STAGES). Binaries: a tree built here with
#   meson setup /tmp/bcuda -Dgpu_arch=90a -Dcuda=enabled -Dbuildtype=release && ninja -C /tmp/bcuda
# and packed as scratch/s19lib.tar.xz holding s19new/{src,tools,tests/gpu} (tests link libcpcl statically,
# tools take $ORIGIN/../src; leave out the libcpcl.so.*.p folders). Carry scratch/s19lib.tar.xz.
#   1. the gpu suite (test_gpu_kernels' run 7 compares the two tail forms bitwise), then test_gpu_decode
#      np 1/2/4 with the bulk tail (fused bitwise equal to a2a, every unit of the fused kernel in its tail);
#   2. dcp_decode_perf fused / bare on issue 12's rows: default, TAIL=bulk, TAIL=bulk MERGE=tail;
#   3. kernel_perf (bare) on B64 / B16 / B128 with SPLITS / STAGES forced.
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
rm -rf /tmp/s19new; tar xJf scratch/s19lib.tar.xz -C /tmp || exit 1
N=/tmp/s19new; P=$R/perf.txt; T=$R/tests.txt
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
timeout 150 $N/tests/gpu/test_gpu_kernels > /tmp/tk.txt 2>&1; echo "test_gpu_kernels rc $? $(tail -n 1 /tmp/tk.txt) $(el) s"
grep -iE "fail|error" /tmp/tk.txt | head -n 20 >> $T
# the prefill kernels' shared-memory base changed too (bits must not): the kernel cases and np 1 / 2
for np in 1 2; do CPCL_TIMEOUT_MS=60000 timeout 120 mpirun -np $np $N/tests/gpu/test_gpu_prefill > /tmp/tp$np.txt 2>&1
  echo "test_gpu_prefill np$np rc $? $(tail -n 1 /tmp/tp$np.txt) $(el) s"; grep -iE "fail|error|expect" /tmp/tp$np.txt | head -n 10 >> $T; done
for np in 1 2 4; do CPCL_GQA_SM90_TAIL=bulk CPCL_TIMEOUT_MS=60000 timeout 200 mpirun -np $np -x CPCL_GQA_SM90_TAIL $N/tests/gpu/test_gpu_decode > /tmp/td$np.txt 2>&1
  echo "test_gpu_decode (bulk tail) np$np rc $? $(tail -n 1 /tmp/td$np.txt) $(el) s"; echo "== np$np" >> $T; grep -iE "fail|error|expect" /tmp/td$np.txt | head -n 30 >> $T; done
G="1,16,1,4096 16,16,1,32768 64,16,1,8192 128,64,8,4096 32,64,1,32768 8,64,1,131072"
row() { # label B H K L, env in $ENVS
  local left=$(( 560 - $(el) )); [ $left -lt 20 ] && { echo "$1 B$2 H$3 L$5 skipped"; return; }
  timeout $left env $ENVS mpirun -np 1 $(for v in $ENVS; do echo -n "-x ${v%%=*} "; done) $N/tools/dcp_decode_perf -g 1 -a a2a,fused -b $2 -e $2 -l $5 -L $5 \
    -H $3 -K $4 -d 128 -v 128 -t bf16 -p 16 -c 0 -n 20 > /tmp/row.txt 2>&1
  echo "$1 B$2 H$3/$4 L$5 | $(grep -E ' (a2a|fused) ' /tmp/row.txt | sed 's/  */ /g' | tr '\n' '|')"; }
for ENVS in "CPCL_GQA_SM90_TAIL=ld" "CPCL_GQA_SM90_TAIL=bulk" "CPCL_GQA_SM90_TAIL=bulk CPCL_GQA_SM90_MERGE=tail"; do
  for r in $G; do IFS=, read B H K L <<< "$r"; row "[$ENVS]" $B $H $K $L; done
done | tee $P
K=$N/tools/kernel_perf
for ENVS in "CPCL_GQA_SM90_SPLITS=2 CPCL_GQA_SM90_STAGES=6 CPCL_GQA_SM90_TAIL=bulk CPCL_GQA_SM90_MERGE=tail" \
            "CPCL_GQA_SM90_SPLITS=8 CPCL_GQA_SM90_STAGES=6" "CPCL_GQA_SM90_SPLITS=1 CPCL_GQA_SM90_STAGES=6" \
            "CPCL_GQA_SM90_SPLITS=2"; do
  left=$(( 580 - $(el) )); [ $left -lt 20 ] && break
  echo "== kernel_perf [$ENVS]"
  timeout $left env $ENVS $K -n 50 -C 0 -s 64,16,1,128,8192 -s 16,16,1,128,32768 -s 128,64,8,128,4096 2>&1 | grep -vE "^#|^$"
done | tee -a $P
echo "done $(el) s"
