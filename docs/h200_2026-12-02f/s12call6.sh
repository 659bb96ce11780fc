#!/usr/bin/env bash
# Session 12, call 6: the library with this session's kernels (MLA 19 for the seesaw, sparse 20, the GQA Q fragments
# loaded before the row's work at <= 32 heads a CTA) against main (476fcf8), and the gpu suite's kernel and decode
# tests. Binaries (built on the development machine, meson -Dgpu_arch=90a -Dcuda=enabled, carried as
# scratch/s12lib.tar.xz): s12old/tools/kernel_perf (main, a worktree at 476fcf8), s12new/{tools/kernel_perf,
# tests/gpu/test_gpu_kernels, tests/gpu/test_gpu_decode} (static).
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/s12lib.tar.xz -C /tmp || exit 1
O=/tmp/s12old N=/tmp/s12new
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu --format=csv,noheader
[ "${PART:-tests}" = tests ] && { timeout 150 $N/tests/gpu/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? $(el) s: $(tail -1 $R/test_kernels.txt)"
grep FAIL $R/test_kernels.txt | sort | uniq -c | head
for np in 1 2 4; do
  CPCL_TIMEOUT_MS=60000 timeout 200 mpirun -np $np $N/tests/gpu/test_gpu_decode > $R/test_decode_np$np.txt 2>&1
  echo "test_gpu_decode np$np rc $? $(el) s: $(tail -1 $R/test_decode_np$np.txt)"
done; }
GQA="-s 64,16,1,128,8192 -s 16,16,1,128,32768 -s 128,64,8,128,4096 -s 1,16,1,128,4096 -s 32,64,1,128,32768 -s 8,64,1,128,131072"
MLA="-s 1,16,1,576,4096 -s 64,16,1,576,16384 -s 32,128,1,576,16384 -s 128,128,1,576,16384 -s 128,128,1,576,4096"
SP="-k 2048 -W 8 -s 64,128,1,576,32768 -s 128,128,1,576,32768"
# PART=tests: the tests and memcheck, then GQA; PART=mla: MLA and sparse only (two calls: one would pass 10 minutes)
if [ "${PART:-tests}" = tests ]; then
  for v in old new new old; do
    B=$O; [ $v = new ] && B=$N
    echo "== $v ($(el) s)"
    timeout 120 $B/tools/kernel_perf -n 50 $GQA 2>&1 | grep -E "auto/sm90|merge" | sed 's/  */ /g' | cut -c1-120
  done
else
  for v in old new new old; do
    B=$O; [ $v = new ] && B=$N
    echo "== $v ($(el) s)"
    for pg in 16 64; do
      timeout 150 $B/tools/kernel_perf -n 20 -p $pg $MLA 2>&1 | grep -E "auto/sm90" | sed "s/  */ /g; s/^/pg$pg /" | cut -c1-120
    done
    timeout 150 $B/tools/kernel_perf -n 20 -p 16 $SP 2>&1 | grep -E "sparse (topk|attn)" | grep sm90 | sed "s/  */ /g; s/^/pg16 /" | cut -c1-120
  done
  echo "done $(el) s"; exit 0
fi
for s in 1,16,1,576,4096 1,16,1,128,4096; do timeout 120 compute-sanitizer --tool memcheck $N/tools/kernel_perf -E 1 -n 2 -s $s 2>&1 | grep -E "ERROR SUMMARY" ; done
timeout 120 compute-sanitizer --tool memcheck $N/tools/kernel_perf -E 1 -n 2 -p 64 -s 32,128,1,576,4096 2>&1 | grep -E "ERROR SUMMARY"
echo "done $(el) s"
