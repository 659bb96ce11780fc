#!/usr/bin/env bash
# session 7 call 2: where the D128 persistent attention loses to cuDNN at long rows (ncu full set + SASS stall samples), and clock/power during the rows
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
meson setup build-gpu -Dgpu_arch=90a > /tmp/o/setup.log 2>&1 || tail -20 /tmp/o/setup.log
ninja -C build-gpu -j16 tools/prefill_perf > /tmp/o/build.log 2>&1 || { grep -E "error|FAILED" /tmp/o/build.log | head; exit 1; }
echo "build $(el) s"
P=build-gpu/tools/prefill_perf
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active --format=csv -lms 250 > $R/smi.csv 2>&1 &
SMI=$!
r() { timeout 60 $P -g 1 -a allgather -n 30 -w 5 "$@"; }
{ r -B 1 -l 16384 -L 16384 -H 32 -K 8 -T "GQA B1 16k"; r -B 1 -l 65536 -L 65536 -H 32 -K 8 -T "GQA B1 64k"; r -B 8 -l 4096 -L 8192 -H 32 -K 8 -T "GQA B8 4k-8k"; } > $R/rows.txt 2>&1
kill $SMI; grep -vE "^#|^$" $R/rows.txt | grep -v seqs; echo "rows $(el) s"
ncu --clock-control base --set full --import-source no -k regex:prefillSm90LibKernel --launch-skip 3 --launch-count 1 -o /tmp/o/g16 $P -g 1 -a allgather -n 2 -w 2 -B 1 -l 16384 -L 16384 -H 32 -K 8 > /tmp/o/ncu1.log 2>&1; echo "ncu1 rc $? $(el) s"; tail -3 /tmp/o/ncu1.log
ncu --import /tmp/o/g16.ncu-rep --page details > $R/ncu_g16_details.txt 2>&1
ncu --import /tmp/o/g16.ncu-rep --page source --print-source sass --csv > /tmp/o/g16_src.csv 2>&1; gzip -c /tmp/o/g16_src.csv > $R/ncu_g16_sass.csv.gz; ls -la $R
ncu --clock-control base --set full --import-source no -k regex:prefillSm90LibKernel --launch-skip 3 --launch-count 1 -o /tmp/o/m4 $P -g 1 -a allgather -n 2 -w 2 -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 > /tmp/o/ncu2.log 2>&1; echo "ncu2 rc $? $(el) s"
ncu --import /tmp/o/m4.ncu-rep --page details > $R/ncu_m4_details.txt 2>&1
ncu --import /tmp/o/m4.ncu-rep --page source --print-source sass --csv > /tmp/o/m4_src.csv 2>&1; gzip -c /tmp/o/m4_src.csv > $R/ncu_m4_sass.csv.gz
grep -E "Duration|Compute \(SM\) Throughput|Tensor|Issue Slots|Warp Cycles Per Issued|No Eligible|SM Frequency" $R/ncu_g16_details.txt | head -20
echo "done $(el) s"
