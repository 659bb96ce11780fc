#!/usr/bin/env bash
# Session 12, call 12: test_gpu_kernels of the final tree (sparse 20 now checked bitwise against 18). Carry
# scratch/s12t.tar.xz (s12t/test_gpu_kernels, built with meson -Dgpu_arch=90a -Dcuda=enabled).
tar xJf scratch/s12t.tar.xz -C /tmp || exit 1
timeout 150 /tmp/s12t/test_gpu_kernels > $OUT/test_kernels.txt 2>&1; echo "test_gpu_kernels rc $?: $(tail -1 $OUT/test_kernels.txt)"
grep FAIL $OUT/test_kernels.txt | sort | uniq -c | head
