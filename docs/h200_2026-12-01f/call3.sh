#!/usr/bin/env bash
# session 6, call 3: the persistent form's illegal arrive, state at the fault (cuda-gdb), synccheck of the grid form
export PATH=/usr/local/cuda/bin:$PATH
R=$OUT; unset OUT; mkdir -p /tmp/o; t0=$(date +%s); el() { echo $(( $(date +%s)-t0 )); }
if [ ! -x /tmp/b_pcopy/tools/prefill_perf ]; then ( cd scratch/pcopy_src && meson setup /tmp/b_pcopy -Dgpu_arch=90a > /tmp/o/setup.log 2>&1 && ninja -C /tmp/b_pcopy -j14 tools/prefill_perf > /tmp/o/build.log 2>&1; echo "build rc $?" ); fi
echo "build $(el) s"
P=/tmp/b_pcopy/tools/prefill_perf
CPCL_PREFILL_SM90_PERSISTENT=1 timeout 200 cuda-gdb -batch -x docs/h200_2026-12-01f/call3_gdb_cmds.txt --args $P -g 1 -a allgather -n 20 -w 2 -B 4 -l 4096 -L 4096 -H 16 -K 16 -d 192 -v 128 > $R/gdb_state.txt 2>&1
echo "gdb rc $? $(el) s"; grep -iE "exception" $R/gdb_state.txt | head -3
a="-B 1 -l 1024 -L 1024 -H 4 -K 1"
CPCL_PREFILL_SM90_PERSISTENT=0 timeout 60 compute-sanitizer --tool synccheck $P -g 1 -a allgather -n 1 -w 0 $a > $R/synccheck_p0.txt 2>&1; echo "synccheck form 0 rc $?"; grep -E "=====" $R/synccheck_p0.txt | head -8
echo "done at $(el) s"
