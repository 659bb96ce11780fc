#!/usr/bin/env bash
# Session 12, call 11: the final kernels (176ade9's plus the sBad publication fix: a __syncwarp before lane 0's
# arrivals in the lane-a-box producers, a block fence after a bad page's sBad write): test_gpu_kernels, test_gpu_decode
# np 1 and 2, and kernel_perf's MLA rows against main once more (old / new). Carry scratch/s12lib2.tar.xz (as
# s12call6.sh's, s12new rebuilt from this tree).
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/s12lib2.tar.xz -C /tmp || exit 1
O=/tmp/s12old N=/tmp/s12new
timeout 150 $N/tests/gpu/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? $(el) s: $(tail -1 $R/test_kernels.txt)"
grep FAIL $R/test_kernels.txt | sort | uniq -c | head
for np in 1 2; do
  CPCL_TIMEOUT_MS=60000 timeout 200 mpirun -np $np $N/tests/gpu/test_gpu_decode > $R/test_decode_np$np.txt 2>&1
  echo "test_gpu_decode np$np rc $? $(el) s: $(tail -1 $R/test_decode_np$np.txt)"
done
MLA="-s 1,16,1,576,4096 -s 32,128,1,576,16384 -s 128,128,1,576,4096"
for v in old new; do B=$O; [ $v = new ] && B=$N
  echo "== $v ($(el) s)"
  timeout 100 $B/tools/kernel_perf -n 20 -p 64 $MLA 2>&1 | grep -E "auto/sm90" | sed "s/  */ /g; s/^/pg64 /" | cut -c1-120
  timeout 100 $B/tools/kernel_perf -n 20 -p 16 -k 2048 -W 8 -s 64,128,1,576,32768 2>&1 | grep -E "sparse topk" | grep sm90 | sed "s/  */ /g; s/^/pg16 /" | cut -c1-120
done
timeout 120 compute-sanitizer --tool memcheck $N/tools/kernel_perf -E 1 -n 2 -p 64 -s 32,128,1,576,4096 2>&1 | grep -E "ERROR SUMMARY"
echo "done $(el) s"
