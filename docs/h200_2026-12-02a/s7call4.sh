#!/usr/bin/env bash
# session 7 call 4: idle producer waits (suspend hint) and banded item orders vs main (d36195f) vs cuDNN, same protocol
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; unset OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
for b in 1 2; do mkdir -p b$b; f=scratch/bin$([ $b = 2 ] && echo 2).tar.gz; tar xzf $f -C b$b && ln -sf libcpcl.so.0.2.0 b$b/src/libcpcl.so.0; done
timeout 90 env CPCL_TEST_PREFILL_KERNELS_ONLY=1 b2/tests/gpu/test_gpu_prefill > $R/test_new.txt 2>&1; echo "new kernels-only rc $? $(tail -1 $R/test_new.txt) $(el) s"
timeout 100 mpirun -np 2 b2/tests/gpu/test_gpu_prefill > /tmp/np2.txt 2>&1; echo "new np2 rc $? $(tail -1 /tmp/np2.txt) $(el) s"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw --format=csv,noheader -lms 100 > $R/smi.csv 2>&1 &
SMI=$!
S=tools/kernel_bench/torch_prefill_same_protocol.py
mark() { echo "MARK $1 $(date +%H:%M:%S.%N)" >> $R/marks.txt; }
r() { b=$1; shift; timeout 60 b$b/tools/prefill_perf -g 1 -a allgather -w 5 "$@" | grep -vE "^#|seqs" | awk '{print $5, $6, $7, $11, $14}'; }
for row in "gqa_h32_kv8_d128_L4k_b1|-B 1 -l 4096 -L 4096 -H 32 -K 8|8" "gqa_h32_kv8_d128_L4k_b8|-B 8 -l 4096 -L 4096 -H 32 -K 8|33" \
  "gqa_h32_kv8_d128_L8k_b8|-B 8 -l 8192 -L 8192 -H 32 -K 8|33" "gqa_h32_kv8_d128_L16k_b1|-B 1 -l 16384 -L 16384 -H 32 -K 8|33" \
  "mha_h16_d192_128_L4k_b4|-B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128|9" "gqa_h32_kv8_d128_L64k_b1|-B 1 -l 65536 -L 65536 -H 32 -K 8|33"; do
  n=${row%%|*}; a=${row#*|}; band=${a##*|}; a=${a%|*}; it=30; case $n in *64k*) it=15;; esac
  echo "== $n (min median max one_us one_TF/s)"
  mark "cudnn $n"; echo "cudnn    $(python3 $S -n $it -w 5 $n | tail -1)"
  mark "main $n"; echo "main     $(r 1 -n $it $a)"
  mark "new0 $n"; echo "new b0   $(CPCL_PREFILL_SM90_BAND=0 r 2 -n $it $a)"
  mark "newB $n"; echo "new b$band  $(CPCL_PREFILL_SM90_BAND=$band r 2 -n $it $a)"
  mark "new4 $n"; echo "new b4   $(CPCL_PREFILL_SM90_BAND=4 r 2 -n $it $a)"
  mark "cudnn2 $n"; echo "cudnn    $(python3 $S -n $it -w 5 $n | tail -1)"
done 2>&1 | tee $R/rows.txt
mark end; kill $SMI; echo "rows $(el) s"
