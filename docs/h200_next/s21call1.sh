#!/usr/bin/env bash
# Next session's first call (prepared in session 20; run it on the H200: kind nvidia-h200, or whatever comes, and
# rerun the anchor there). The tree as of session 20's last commit, built on this (CPU) machine:
#   meson setup /tmp/bcuda -Dgpu_arch=90a -Dcuda=enabled -Dbuildtype=release && ninja -C /tmp/bcuda
#   mkdir -p /tmp/s21lib/src /tmp/s21lib/tools /tmp/s21lib/tests/gpu
#   cp -a /tmp/bcuda/src/libcpcl.so /tmp/bcuda/src/libcpcl.so.0 /tmp/bcuda/src/libcpcl.so.0.2.0 /tmp/s21lib/src/; cp the
#   tools (cpcl_info dcp_decode_perf kernel_perf prefill_perf) and tests/gpu binaries
#   (tar -C /tmp -cf - s21lib | xz -T2 -3 > scratch/s21lib.tar.xz)   # ~56 MB, under the 64 MiB carry
#   cp ../shared/bench/torch_decode_anchor.py scratch/
# carry ["scratch/s21lib.tar.xz", "scratch/torch_decode_anchor.py"].
#   1. the gpu suite on the final tree: kernels (plain, CL 1 and CL 2 forced), decode np 1/2/4 (+ CL 1 np 1, and
#      the top-k filter forced to each place: CPCL_MLA_SM90_TOPK 0 / 1),
#      prefill np 1/2, faults;
#   2. issue 12's kernel_perf rows (the CL-1 rule: B128 H64/8 now 1 split) beside PyTorch's cuDNN anchor;
#   3. the split sweep that decides the wave question: CL forced on B128 H16/1, B64 H16/1, B32 H64/1, B8 H64/1.
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
LIMIT=${LIMIT:-570}
cap() { local l=$(( LIMIT - $(el) )); [ $l -lt $1 ] && echo $l || echo $1; }
[ -d /tmp/s21lib ] || { tar xJf scratch/s21lib.tar.xz -C /tmp || exit 1; }
N=/tmp/s21lib; K=$N/tools/kernel_perf; T=$R/tests.txt
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,memory.total --format=csv,noheader | tee $R/gpu.txt
for cl in "" 1 2; do
  env CPCL_GQA_SM90_SPLITS=$cl timeout $(cap 120) $N/tests/gpu/test_gpu_kernels > /tmp/k.txt 2>&1
  echo "test_gpu_kernels [SPLITS=$cl] rc $? $(tail -n 1 /tmp/k.txt) $(el) s"; grep FAIL /tmp/k.txt | head -n 10 >> $T; done
dec() { # np splits
  env CPCL_GQA_SM90_SPLITS=$2 CPCL_TIMEOUT_MS=60000 timeout $(cap 150) mpirun -np $1 -x CPCL_GQA_SM90_SPLITS -x CPCL_TIMEOUT_MS \
    $N/tests/gpu/test_gpu_decode > /tmp/d.txt 2>&1
  echo "test_gpu_decode np$1 [SPLITS=$2] rc $? $(tail -n 1 /tmp/d.txt) $(el) s"; grep -iE "fail|expect" /tmp/d.txt | head -n 10 >> $T; }
dec 1 ""; dec 2 ""; dec 4 ""; dec 1 1
for tk in 0 1; do CPCL_MLA_SM90_TOPK=$tk CPCL_TIMEOUT_MS=60000 timeout $(cap 120) mpirun -np 1 -x CPCL_MLA_SM90_TOPK -x CPCL_TIMEOUT_MS $N/tests/gpu/test_gpu_decode > /tmp/d.txt 2>&1
  echo "test_gpu_decode np1 [MLA_SM90_TOPK=$tk] rc $? $(tail -n 1 /tmp/d.txt) $(el) s"; done
for np in 1 2; do CPCL_TIMEOUT_MS=60000 timeout $(cap 120) mpirun -np $np $N/tests/gpu/test_gpu_prefill > /tmp/p.txt 2>&1
  echo "test_gpu_prefill np$np rc $? $(tail -n 1 /tmp/p.txt) $(el) s"; done
timeout $(cap 60) $N/tests/gpu/test_gpu_faults > /tmp/f.txt 2>&1; echo "test_gpu_faults rc $? $(tail -n 1 /tmp/f.txt) $(el) s"
echo "== kernel_perf, issue 12's rows ($(el) s)"
timeout $(cap 120) $K -n 50 -C 0 -s 64,16,1,128,8192 -s 16,16,1,128,32768 -s 128,64,8,128,4096 -s 1,16,1,128,4096 \
  -s 32,64,1,128,32768 -s 8,64,1,128,131072 2>&1 | grep -vE "^#|^$" | tee $R/kernel_perf.txt
[ -f scratch/torch_decode_anchor.py ] && timeout $(cap 200) python3 scratch/torch_decode_anchor.py > $R/anchor.txt 2>&1; tail -n 20 $R/anchor.txt
echo "== split sweep ($(el) s)" | tee $R/sweep.txt
for s in "128,16,1,128,4096:1 2 4" "64,16,1,128,8192:2 4 8" "32,64,1,128,32768:4 8" "8,64,1,128,131072:16 32"; do
  shape=${s%%:*}
  for cl in ${s#*:}; do left=$(( LIMIT - $(el) )); [ $left -lt 15 ] && break 2
    echo "CL $cl $(CPCL_GQA_SM90_SPLITS=$cl timeout $left $K -n 50 -C 0 -s $shape 2>&1 | grep -E 'auto/sm90')"; done
done | tee -a $R/sweep.txt
echo "done $(el) s"
