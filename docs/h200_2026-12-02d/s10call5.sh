#!/usr/bin/env bash
# Session 10, call 5: the final form of the change (rows of more than 32 heads staged, 16- and 32-head rows stored from
# the fragments as before), against main: the library's kernel tests, the bench's checks, timing ABBA, the B1 timeline,
# decode np 1, memcheck. Binaries in scratch/s10e.tar.xz: old/ = main 7919775 (kernel_perf, the bench's trace build),
# new/ = the change (kernel_perf, test_gpu_kernels, test_gpu_decode, mla_sm90_bench and its trace build).
# Run: run(command="bash docs/h200_2026-12-02d/s10call5.sh", carry=["scratch/s10e.tar.xz"])
export PATH=/usr/local/cuda/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
R=$OUT; unset OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
tar xJf scratch/s10e.tar.xz -C /tmp && O=/tmp/s10e/old N=/tmp/s10e/new; echo "unpacked $(el) s"
timeout 200 $N/test_gpu_kernels > $R/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $? $(el) s"; tail -2 $R/test_kernels.txt
grep -iE "fail|off\b|wrong" $R/test_kernels.txt | grep -v " 0 fail" | head -5
for v in 13 18; do timeout 60 $N/mla_sm90_bench --check-only --variants $v 2>&1 | grep correctness; done
M="-s 1,16,1,576,4096 -s 64,16,1,576,16384 -s 32,128,1,576,16384 -s 128,128,1,576,16384 -s 128,128,1,576,4096"
mla() { for p in 16 64; do timeout 40 $1/kernel_perf -n 30 -C 0 -p $p $M -T "$2 mla p$p"; done; }
sps() { timeout 50 $1/kernel_perf -k 2048 -W 8 -p 64 -s 64,128,1,576,32768 -s 128,128,1,576,32768 -c 1 -C 0 -T "$2 sparse"; }
{ mla $O old; mla $N new; sps $O old; sps $N new; sps $N new; sps $O old; mla $N new; mla $O old; } > $R/perf.txt 2>&1
echo "perf $(el) s"
awk '/^# kernel_perf/{split($0,a,":"); lab=a[1]; sub("# kernel_perf ","",lab)} /auto\/sm90|sparse (topk|attn)/{print lab" | "$1,$2,$4,$5,$8,$10}' $R/perf.txt
for b in $O $N; do echo "== trace v13 1,16,4096,16 $b"; MLA_TRACE=1 MLA_ONLY=1,16,4096,16 timeout 60 $b/mla_sm90_bench.trace --perf-only --variants 13 2>&1 | grep -E "CTA|^perf" | head -2; done
timeout 120 mpirun -np 1 $N/test_gpu_decode > $R/decode_np1.txt 2>&1; echo "decode np1 rc $? $(el) s: $(tail -1 $R/decode_np1.txt)"
timeout 90 compute-sanitizer --tool memcheck $N/mla_sm90_bench --check-only --variants 13 2>&1 | grep -E "SUMMARY|correctness"
echo "done $(el) s"
