#!/usr/bin/env bash
# The whole test suite (after tools/setup.sh), what CI runs (.ci/run): the format check, the
# include-graph check (tools/check_layers.py, its self-test first), every suite of the main build
# (unit, mpi, fault; gpu runs where there is a GPU and reports itself skipped elsewhere), the
# CUDA code compiled and linked under AddressSanitizer + UndefinedBehaviorSanitizer wherever nvcc
# is found (GPU or not: so the .cu files keep compiling in CI), the CPU suites and the tools under
# ASan + UBSan (dcp_decode_perf on CPU ranks with -c 1 as a smoke test), then the validation
# fuzzer for FUZZ_SECONDS (default 60) from its committed corpus. Exits non-zero on the first
# failure; prints each stage's duration.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
start=$SECONDS
stage() { echo "== [$((SECONDS - start)) s] $*"; }

stage "format: .clang-format (clang-format 14, Debian 12's)"
if command -v clang-format >/dev/null && clang-format --version | grep -q "version 14" && git rev-parse --git-dir >/dev/null 2>&1; then
  git ls-files '*.c' '*.h' '*.cu' '*.cuh' | xargs clang-format --dry-run --Werror
  echo "formatted"
else
  echo "SKIP: the format check needs clang-format 14 and a git checkout"
fi

stage "include graph: tools/check_layers.py (self-test on synthetic trees, then this tree)"
python3 tools/check_layers.py --self-test 2>&1 | tail -1
python3 tools/check_layers.py

stage "kernel sources: tools/lint_kernels.py (a braceless if constexpr over a loop, which nvcc 13.0 miscompiles)"
python3 tools/lint_kernels.py --self-test
python3 tools/lint_kernels.py kernels tools tests
stage "barrier model of the Hopper prefill kernel: tools/kernel_bench/prefill_sm90_sync_model.py (random schedules, then mutations that must fail)"
python3 tools/kernel_bench/prefill_sm90_sync_model.py 3000
for m in early-next no-workEmpty-wait turn-twice; do python3 tools/kernel_bench/prefill_sm90_sync_model.py 100 "$m"; done
python3 tools/kernel_bench/prefill_sm90_sync_model.py 3000 store-cache-anywhere # rarer: about 1 schedule in 100
python3 tools/kernel_bench/prefill_sm90_sync_model.py 300 store-no-margin

stage "main build: all suites"
meson test -C "$BUILD_DIR" --print-errorlogs

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# the CUDA build under the sanitizers: everything compiles and links (kernel_perf included), and
# the tools start. Without a GPU nothing of it runs on a device; tools/gpu_check.sh does that.
# A release build with assertions: meson's debug builds pass -G to nvcc (device debug code, far
# slower to compile and not what runs).
nvcc_dir=""
if command -v nvcc >/dev/null; then
  nvcc_dir=$(dirname "$(command -v nvcc)")
else
  for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
    if [ -n "$d" ] && [ -x "$d/bin/nvcc" ]; then nvcc_dir="$d/bin"; break; fi
  done
fi
if [ -n "$nvcc_dir" ]; then
  stage "CUDA, AddressSanitizer + UndefinedBehaviorSanitizer: compile and link everything ($nvcc_dir/nvcc)"
  if [ ! -f build-cuda-asan/build.ninja ]; then
    PATH="$nvcc_dir:$PATH" meson setup build-cuda-asan -Dcuda=enabled -Dtools=enabled -Dbuildtype=release -Db_ndebug=false \
      -Db_sanitize=address,undefined >/dev/null
  fi
  PATH="$nvcc_dir:$PATH" ninja -C build-cuda-asan >/dev/null
  for f in tools/kernel_perf tools/dcp_decode_perf tests/gpu/test_gpu_kernels; do
    [ -x "build-cuda-asan/$f" ] || { echo "build-cuda-asan/$f was not built"; exit 1; }
  done
  # they start, and a CUDA-linked library runs host-memory ranks under the sanitizers
  ASAN_OPTIONS=detect_leaks=0 build-cuda-asan/tools/kernel_perf -h >/dev/null
  ASAN_OPTIONS=detect_leaks=0 build-cuda-asan/tools/cpcl_info >/dev/null
  ASAN_OPTIONS=detect_leaks=0 mpirun -np 2 build-cuda-asan/tools/dcp_decode_perf -b 1 -e 1 -l 256 -L 256 -H 2 -w 0 -n 1 \
    -c 1 >/dev/null
  echo "compiled and linked under ASan+UBSan: every .cu, kernel_perf, dcp_decode_perf, the gpu tests; the tools ran"
else
  stage "SKIP: no nvcc (PATH, CUDA_HOME, /usr/local/cuda): the CUDA code is not compiled"
fi

stage "AddressSanitizer + UndefinedBehaviorSanitizer: unit, mpi, fault, the tools"
if [ ! -f build-asan/build.ninja ]; then
  meson setup build-asan -Dcuda=disabled -Dtools=enabled -Dbuildtype=debug -Db_sanitize=address,undefined >/dev/null
fi
ninja -C build-asan >/dev/null
ASAN_OPTIONS=detect_leaks=1 meson test -C build-asan --print-errorlogs --suite unit
# OpenMPI and UCX keep allocations past exit: leak checks only where the process is all ours
ASAN_OPTIONS=detect_leaks=0 meson test -C build-asan --print-errorlogs --suite mpi --suite fault
# cpcl_info probes UCX, whose dlopened modules keep allocations past exit
ASAN_OPTIONS=detect_leaks=0 build-asan/tools/cpcl_info >/dev/null
perf=build-asan/tools/dcp_decode_perf
json=$(mktemp)
trap 'rm -f "$json"' EXIT
# the perf driver: checked rows pass, the results file is JSON, a bad flag is exit 2 with usage
ASAN_OPTIONS=detect_leaks=0 mpirun -np 2 $perf -T "ASan smoke" -b 1 -e 4 -f 4 -l 256 -L 1024 -F 4 -H 4 -K 1 -r 2 \
  -w 1 -n 2 -c 1 -J "$json"
ASAN_OPTIONS=detect_leaks=0 mpirun -np 2 $perf -T "ASan smoke, MLA" -m 1 -H 2 -b 2 -e 2 -l 512 -L 512 -p 32 -i 16 \
  -a a2a -w 0 -n 1 -c 1 >/dev/null
python3 -m json.tool "$json" >/dev/null && echo "-J: valid JSON, $(grep -c '"schedule"' "$json") rows"
# prefill: both schedules, pcp 2 with cached context (the context part), checked
ASAN_OPTIONS=detect_leaks=0 mpirun -np 2 build-asan/tools/prefill_perf -T "ASan smoke, prefill" -l 200 -L 200 -C 37 \
  -B 2 -D 1 -H 2 -K 1 -d 64 -v 64 -w 0 -n 1 -c 1 >/dev/null
echo "prefill_perf: checked rows pass"
set +e
ASAN_OPTIONS=detect_leaks=0 $perf -b 0 >/dev/null 2>"$json"
status=$?
set -e
[ $status -eq 2 ] && grep -q "^usage:" "$json" || { echo "a bad flag gave exit $status, not 2 with usage"; exit 1; }
echo "a bad flag: exit 2 with usage"

stage "fuzzing the validation of configs, descriptors and batches"
if command -v clang >/dev/null && [ -n "$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null | grep /)" ]; then
  if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz -Dfuzz=enabled -Dcuda=disabled -Dtools=disabled -Db_lundef=false \
      -Db_sanitize=address,undefined >/dev/null
  fi
  ninja -C build-fuzz tests/fuzz/fuzz_validate >/dev/null
  corpus=$(mktemp -d)
  cp tests/fuzz/corpus/* "$corpus"/
  (cd "$corpus" && ASAN_OPTIONS=detect_leaks=1 "$OLDPWD/build-fuzz/tests/fuzz/fuzz_validate" "$corpus" \
    -max_total_time="${FUZZ_SECONDS:-60}" -print_final_stats=1 2>&1 | grep -E "^stat::(number_of_executed_units|new_units_added)|Done|ERROR|SUMMARY")
  status=${PIPESTATUS[0]}
  rm -rf "$corpus"
  [ "$status" -eq 0 ] || { echo "fuzzer found a failure"; exit 1; }
  # prefill batches: no committed corpus yet, it starts from nothing
  ninja -C build-fuzz tests/fuzz/fuzz_prefill >/dev/null
  corpus=$(mktemp -d)
  (cd "$corpus" && ASAN_OPTIONS=detect_leaks=1 "$OLDPWD/build-fuzz/tests/fuzz/fuzz_prefill" "$corpus" \
    -max_total_time="${FUZZ_SECONDS:-60}" -print_final_stats=1 2>&1 | grep -E "^stat::(number_of_executed_units|new_units_added)|Done|ERROR|SUMMARY")
  status=${PIPESTATUS[0]}
  rm -rf "$corpus"
  [ "$status" -eq 0 ] || { echo "prefill fuzzer found a failure"; exit 1; }
else
  echo "SKIP: fuzzing needs clang with libFuzzer (Debian: clang, libclang-rt-14-dev)"
fi
stage "all tests passed"
