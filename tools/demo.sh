#!/usr/bin/env bash
# The main job: a 4-rank fused DCP decode with checking on, on the machine's default (CPU ranks
# over UCX on host memory), for a Qwen3-like GQA shape and a DeepSeek-like MLA shape, scaled to
# finish in seconds on two cores. Prints dcp_decode_perf's table: every schedule side by side.
# Usage: tools/demo.sh [np]    (after tools/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${1:-4}
BUILD_DIR=${BUILD_DIR:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# MPI only launches and bootstraps; cpcl's own traffic goes over UCX.
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
perf="mpirun -np $NP $BUILD_DIR/tools/dcp_decode_perf"
# Qwen3-235B-like: 64 q / 4 KV heads over TP 8 -> 8 q heads, 1 KV head per rank (scaled: 4 per rank)
$perf -T "Qwen3-like GQA" -H 4 -K 1 -d 128 -v 128 -b 1 -e 16 -f 4 -l 1024 -L 4096 -F 4 -p 16 -i 1 -c 1 -n 10
# DeepSeek-like MLA: one latent KV head, 576/512, 16 q heads per rank (scaled: 4), interleave 16
$perf -T "DeepSeek-like MLA" -m 1 -H 4 -b 1 -e 4 -f 4 -l 2048 -L 2048 -p 64 -i 16 -c 1 -n 10
