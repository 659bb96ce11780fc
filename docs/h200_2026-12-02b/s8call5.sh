#!/usr/bin/env bash
# session 8 call 5: the next item claimed and described one item ahead (warp 8, local LibSegs nx); built here, carried.
# tests (kernel cases, np 1), the timeline with the last P V's wait split from the stores, ncu cycles at the base clock, timed rows
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; unset OUT; mkdir -p /tmp/o bt bl; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xzf scratch/bin.tar.gz -C bl && ln -sf libcpcl.so.0.2.0 bl/src/libcpcl.so.0
tar xzf scratch/bin.tar.gz -C bt && tar xzf scratch/trace.tar.gz -C bt && ln -sf libcpcl.so.0.2.0 bt/src/libcpcl.so.0
P=bl/tools/prefill_perf; PT=bt/tools/prefill_perf; T=bl/tests/gpu/test_gpu_prefill; S=tools/kernel_bench/torch_prefill_same_protocol.py
timeout 90 env CPCL_TEST_PREFILL_KERNELS_ONLY=1 $T > $R/test_kernels.txt 2>&1; echo "kernels-only rc $? $(tail -1 $R/test_kernels.txt) $(el) s"
timeout 100 mpirun -np 1 $T > $R/test_np1.txt 2>&1; echo "np1 rc $? $(tail -1 $R/test_np1.txt) $(el) s"
B8="-B 8 -l 4096 -L 4096 -H 32 -K 8"; B16="-B 1 -l 16384 -L 16384 -H 32 -K 8"; B4="-B 4 -l 4096 -L 4096 -H 32 -K 8"
{ for c in "b8_4k|$B8" "b1_16k|$B16"; do n=${c%%|*}; a=${c#*|}
  CPCL_PREFILL_SM90_TRACE=/tmp/o/$n.bin timeout 60 $PT -g 1 -a allgather -n 2 -w 1 $a 2>&1 | grep "trace:" | tail -1
  echo "== trace $n"; python3 tools/kernel_bench/prefill_trace.py /tmp/o/$n.bin
done; } 2>&1 | tee $R/trace.txt; echo "trace $(el) s"
M=gpu__time_duration.sum,sm__cycles_elapsed.max,smsp__inst_executed.sum
for c in "b8_4k|$B8" "b4_4k|$B4" "b1_16k|$B16"; do n=${c%%|*}; a=${c#*|}; echo "== $n base clock"
  timeout 90 ncu --clock-control base --metrics $M -k regex:prefillSm90Lib --launch-skip 3 --launch-count 1 $P -g 1 -a allgather -n 3 -w 2 $a 2>&1 | grep -E "gpu__|sm__|smsp__" | sed 's/^ *//'
done 2>&1 | tee $R/ncu.txt; echo "ncu $(el) s"
r() { timeout 60 $P -g 1 -a allgather -w 5 "$@" | grep -vE "^#|seqs" | awk '{print $5, $6, $7, $11}'; }
for row in "gqa_h32_kv8_d128_L4k_b1|-n 30 -B 1 -l 4096 -L 4096 -H 32 -K 8" "gqa_h32_kv8_d128_L4k_b4|-n 30 $B4" "gqa_h32_kv8_d128_L4k_b8|-n 30 $B8" \
  "gqa_h32_kv8_d128_L8k_b8|-n 30 -B 8 -l 8192 -L 8192 -H 32 -K 8" "gqa_h32_kv8_d128_L16k_b1|-n 30 $B16"; do
  n=${row%%|*}; a=${row#*|}
  echo "== $n (min median max one_us)"; echo "cudnn  $(python3 $S -n 30 -w 5 $n | tail -1)"; echo "cpcl   $(r $a)"; echo "cudnn  $(python3 $S -n 30 -w 5 $n | tail -1)"
done 2>&1 | tee $R/rows.txt
echo "done $(el) s"
