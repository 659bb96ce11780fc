#!/usr/bin/env bash
# The whole test suite (after tools/setup.sh): every suite of the main build (unit, mpi, fault;
# gpu runs where there is a GPU and reports itself skipped elsewhere), the CPU suites again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then the validation fuzzer for FUZZ_SECONDS
# (default 60) from its committed corpus. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

echo "== format: .clang-format (clang-format 14, Debian 12's)"
if command -v clang-format >/dev/null && clang-format --version | grep -q "version 14" && git rev-parse --git-dir >/dev/null 2>&1; then
  git ls-files '*.c' '*.h' '*.cu' '*.cuh' | xargs clang-format --dry-run --Werror
  echo "formatted"
else
  echo "SKIP: the format check needs clang-format 14 and a git checkout"
fi

echo "== main build: all suites"
meson test -C "$BUILD_DIR" --print-errorlogs

echo "== AddressSanitizer + UndefinedBehaviorSanitizer: unit, mpi, fault"
if [ ! -f build-asan/build.ninja ]; then
  meson setup build-asan -Dcuda=disabled -Dtools=disabled -Dbuildtype=debug -Db_sanitize=address,undefined >/dev/null
fi
ninja -C build-asan >/dev/null
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
ASAN_OPTIONS=detect_leaks=1 meson test -C build-asan --print-errorlogs --suite unit
# OpenMPI and UCX keep allocations past exit: leak checks only where the process is all ours
ASAN_OPTIONS=detect_leaks=0 meson test -C build-asan --print-errorlogs --suite mpi --suite fault

echo "== fuzzing the validation of configs, descriptors and batches"
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
else
  echo "SKIP: fuzzing needs clang with libFuzzer (Debian: clang, libclang-rt-14-dev)"
fi
echo "== all tests passed"
