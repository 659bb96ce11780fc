#!/usr/bin/env bash
# Session 18, call 3: (1) racecheck of tools/kernel_bench/racecheck_pdl_probe.cu's modes (which part
# of the GQA epilogue's pattern racecheck reports); (2) the SASS of the MLA units of call 2's build
# (mla_sm90.cu.o, mla_sm90_fused.cu.o), to set the fused kernel's attention path beside the
# standalone one (the fused attention CTAs take 8-15% longer: call 2's nomerge rows and ncu).
# Carry scratch/{racecheck_pdl_probe,mla_sm90.cu.o,mla_sm90_fused.cu.o}.
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
for m in ${MODES:-0 1 2 3 4 5 6}; do timeout 60 compute-sanitizer --tool racecheck scratch/racecheck_pdl_probe $m > /tmp/p$m.txt 2>&1
  echo "probe mode $m rc $? | $(grep -E '^mode' /tmp/p$m.txt) | $(grep -E 'RACECHECK SUMMARY' /tmp/p$m.txt)"; done | tee $R/probe.txt
[ -n "$MODES" ] || for u in mla_sm90 mla_sm90_fused; do cuobjdump -sass scratch/$u.cu.o 2>&1 | xz -T8 -6 > $R/$u.sass.xz; echo "$u sass rc $? $(el) s"; done
