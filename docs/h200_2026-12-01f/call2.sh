#!/usr/bin/env bash
# session 6, call 2: the intermittent prefill launch failure: crash rate, cuda-gdb's exception, sanitizers on the persistent probe
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
which cuda-gdb
for b in pcopy pfs; do ( cd scratch/${b}_src && meson setup /tmp/b_$b -Dgpu_arch=90a > /tmp/o/setup_$b.log 2>&1 && ninja -C /tmp/b_$b -j8 tests/gpu/test_gpu_prefill tools/prefill_perf > /tmp/o/build_$b.log 2>&1; echo "$b build rc $?"; grep -E "error|FAILED" /tmp/o/build_$b.log | head -3 ) & done; wait
echo "build $(el) s"
export CPCL_TEST_PREFILL_KERNELS_ONLY=1
for b in pcopy pfs; do for i in 1 2 3; do timeout 60 /tmp/b_$b/tests/gpu/test_gpu_prefill > /tmp/o/t.txt 2>&1; echo "$b run $i rc $? ($(grep -c ': ok' /tmp/o/t.txt) ok) $(grep -E 'failure|error' /tmp/o/t.txt | head -1)"; done; done | tee $R/crash_rate.txt
echo "rates $(el) s"
timeout 150 cuda-gdb -batch -ex "set pagination off" -ex "set cuda api_failures ignore" -ex run -ex "info cuda kernels" -ex "info cuda lanes" -ex "x/12i \$pc-96" -ex "bt" -ex "info registers" --args /tmp/b_pfs/tests/gpu/test_gpu_prefill > $R/gdb_pfs.txt 2>&1
echo "gdb pfs rc $? $(el) s"; grep -iE "exception|signal|CUDA_EXCEPTION|focus|at 0x|=>" $R/gdb_pfs.txt | head -20
P=/tmp/b_pcopy/tools/prefill_perf; a="-B 1 -l 1024 -L 1024 -H 4 -K 1"
for f in 1 2; do CPCL_PREFILL_SM90_PERSISTENT=$f timeout 45 compute-sanitizer --tool racecheck $P -g 1 -a allgather -n 1 -w 0 $a > /tmp/o/rp.txt 2>&1; echo "racecheck form $f rc $?: $(grep -E 'SUMMARY' /tmp/o/rp.txt | tail -1) $(grep -ciE 'launch failure' /tmp/o/rp.txt)"; done | tee $R/probes.txt
CPCL_PREFILL_SM90_PERSISTENT=1 timeout 60 compute-sanitizer --tool memcheck --show-backtrace device $P -g 1 -a allgather -n 1 -w 0 $a > $R/memcheck_p1.txt 2>&1; echo "memcheck form 1 rc $?"; grep -vE "^ *$" $R/memcheck_p1.txt | grep -E "=====" | head -12
CPCL_PREFILL_SM90_PERSISTENT=1 timeout 60 compute-sanitizer --tool synccheck $P -g 1 -a allgather -n 1 -w 0 $a > $R/synccheck_p1.txt 2>&1; echo "synccheck form 1 rc $?"; grep -E "=====" $R/synccheck_p1.txt | head -12
CPCL_PREFILL_SM90_PERSISTENT=1 timeout 90 cuda-gdb -batch -ex "set pagination off" -ex "set cuda api_failures ignore" -ex run -ex "info cuda kernels" -ex "x/12i \$pc-96" -ex "bt" --args $P -g 1 -a allgather -n 20 -w 2 -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 > $R/gdb_p1.txt 2>&1; echo "gdb persistent perf rc $?"; grep -iE "exception|signal|=>" $R/gdb_p1.txt | head
echo "done at $(el) s"
