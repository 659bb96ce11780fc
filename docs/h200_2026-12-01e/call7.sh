# session 5, call 7 (the machine still warm after call 6; the command as passed to the device tool)
export PATH=/usr/local/cuda/bin:$PATH; ninja -C build-gpu -j16 tools/kernel_perf > /tmp/b.log 2>&1 || tail -5 /tmp/b.log
timeout 40 build-gpu/tools/kernel_perf -n 50 -C 0 > $OUT/kernel_perf.txt 2>&1
timeout 90 python3 scratch/torch_decode_anchor.py > $OUT/anchor_decode.txt 2>&1   # scratch/: ../shared/bench/torch_decode_anchor.py
