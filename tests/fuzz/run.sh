#!/usr/bin/env bash
# Runs fuzz targets (tests/fuzz/targets.txt) for SECONDS each and prints their executions and findings; exits non-zero
# when any target found something. Usage: tests/fuzz/run.sh [--build DIR] TARGET|all SECONDS [libFuzzer flags...]
# DIR is the QLS_BUILD_FUZZERS build tree (default: $QLS_FUZZ_BUILD, else build-san in the checkout). What a run
# learns stays in DIR/fuzz/corpus/TARGET (the committed seeds in tests/fuzz/corpus/TARGET are only read); a finding
# is written to DIR/fuzz/artifacts/TARGET/ and replays with: DIR/bin/fuzz_TARGET FILE. Long runs by hand:
#   nice -n 15 tests/fuzz/run.sh all 1800
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${QLS_FUZZ_BUILD:-$here/../../build-san}"
if [ "${1:-}" = "--build" ]; then
  build="$2"
  shift 2
fi
if [ $# -lt 2 ]; then
  echo "usage: tests/fuzz/run.sh [--build DIR] TARGET|all SECONDS [libFuzzer flags...]" >&2
  exit 2
fi
if [ -d "$build" ]; then build="$(cd "$build" && pwd)"; fi
which="$1"
seconds="$2"
shift 2

mapfile -t entries < <(grep -E '^[a-z]' "$here/targets.txt")
names=()
declare -A dicts
for e in "${entries[@]}"; do
  read -r n d _ <<<"$e"
  names+=("$n")
  dicts[$n]="$d"
done
if [ "$which" != all ]; then
  if [ -z "${dicts[$which]+x}" ]; then
    echo "run.sh: no fuzz target '$which'; the targets are: ${names[*]}" >&2
    exit 2
  fi
  names=("$which")
fi

# Leaks are findings. Undefined behaviour already aborts (-fno-sanitize-recover); print its stack.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=()
for n in "${names[@]}"; do
  bin="$build/bin/fuzz_$n"
  if [ ! -x "$bin" ]; then
    echo "run.sh: $bin is missing: configure $build with -DQLS_BUILD_FUZZERS=ON (clang) and build fuzz_$n" >&2
    failed+=("$n")
    continue
  fi
  work="$build/fuzz/corpus/$n"
  artifacts="$build/fuzz/artifacts/$n"
  log="$build/fuzz/logs/$n.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  args=(-max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -malloc_limit_mb=1024 -print_final_stats=1
        -artifact_prefix="$artifacts/")
  if [ "${dicts[$n]}" != - ]; then args+=(-dict="$here/dict/${dicts[$n]}.dict"); fi
  start=$(date +%s)
  "$bin" "${args[@]}" "$@" "$work" "$here/corpus/$n" >"$log" 2>&1
  rc=$?
  took=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  corpus=$(find "$work" -type f | wc -l)
  if [ $rc -eq 0 ]; then
    echo "fuzz_$n: ${execs:-?} executions in ${took} s, no findings (corpus: $corpus learned inputs; log $log)"
  else
    echo "fuzz_$n: FINDING (exit $rc) after ${execs:-?} executions in ${took} s; log $log"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|qls::error internal|terminate called|artifact_prefix|Test unit written)' "$log" | head -20
    tail -n 60 "$log"
    failed+=("$n")
  fi
done
if ((${#failed[@]})); then
  echo "run.sh: findings or failures in: ${failed[*]}" >&2
  exit 1
fi
