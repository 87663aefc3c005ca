#!/usr/bin/env bash
# Runs `qlora check-gpu` under NVIDIA compute-sanitizer (memcheck, racecheck, initcheck), one check-gpu part per run,
# and prints one line a run: the tool, the part, its errors and seconds; exits non-zero when any run reports an error
# or fails its checks. For the GPU machine, after packaging/gpu/run-gpu-checks.sh (or a build-gpu/ by hand).
# Usage: packaging/gpu/run-compute-sanitizer.sh QLORA [MODEL_DIR] [LOG_DIR]
#   QLORA: the CUDA build's qlora; MODEL_DIR: a model for the generate and finetune parts (stories260K), left out:
#   those parts are skipped; LOG_DIR (default ./sanitizer-logs): each run's whole output, TOOL-PART.log.
#   Env: QLS_SAN_TOOLS (default "memcheck racecheck initcheck"), QLS_SAN_PARTS (default "ops decode generate finetune
#        families", the parts of `qlora check-gpu --only`), QLS_SAN_TIMEOUT (seconds a run, default 1500),
#        QLS_SAN_SEED (default 1).
# Each kernel launch under memcheck costs tens of times its normal time, so split long sets over several calls with
# QLS_SAN_TOOLS / QLS_SAN_PARTS. The fine-tune part runs 2 steps here (the sanitizers look at every launch, and one
# step launches every kernel of the pass).
set -uo pipefail

if [ $# -lt 1 ]; then
  echo "usage: packaging/gpu/run-compute-sanitizer.sh QLORA [MODEL_DIR] [LOG_DIR]" >&2
  exit 2
fi
qlora="$1"
model="${2:-}"
logs="${3:-sanitizer-logs}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
text="$here/datasets/stories/pip_the_lighthouse_mouse.txt"
sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
if [ ! -x "$sanitizer" ]; then
  echo "run-compute-sanitizer.sh: compute-sanitizer not found (it comes with the CUDA toolkit)" >&2
  exit 2
fi
mkdir -p "$logs"
seed="${QLS_SAN_SEED:-1}"
status=0
printf '%-10s %-9s %8s %8s  %s\n' tool part errors seconds result
for tool in ${QLS_SAN_TOOLS:-memcheck racecheck initcheck}; do
  for part in ${QLS_SAN_PARTS:-ops decode generate finetune families}; do
    args=(check-gpu --only "$part" --seed "$seed")
    if [ "$part" = generate ] || [ "$part" = finetune ]; then
      if [ -z "$model" ]; then
        printf '%-10s %-9s %8s %8s  %s\n' "$tool" "$part" - - "skipped (no MODEL_DIR)"
        continue
      fi
      args+=(--model "$model" --text "$text" --finetune-steps 2)
    fi
    # the family models of this checkout (check-gpu's default is the tree the binary was built in)
    [ "$part" = families ] && args+=(--families "$here/tests/data/families")
    tool_args=(--tool "$tool" --error-exitcode 99 --print-limit 50)
    [ "$tool" = racecheck ] && tool_args+=(--racecheck-report all)
    log="$logs/$tool-$part.log"
    start=$(date +%s)
    timeout "${QLS_SAN_TIMEOUT:-1500}" "$sanitizer" "${tool_args[@]}" "$qlora" "${args[@]}" > "$log" 2>&1
    rc=$?
    seconds=$(( $(date +%s) - start ))
    # compute-sanitizer's summary: "========= ERROR SUMMARY: N errors" (racecheck: "RACECHECK SUMMARY: N hazards")
    errors=$(grep -Eo '(ERROR SUMMARY|RACECHECK SUMMARY): [0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
    result=clean
    if [ "$rc" = 124 ]; then result="timed out after ${QLS_SAN_TIMEOUT:-1500} s"
    elif [ "$rc" = 99 ] || [ "${errors:-0}" != 0 ]; then result="ERRORS (see $log)"
    elif [ "$rc" != 0 ]; then result="check-gpu failed, exit $rc (see $log)"
    fi
    [ "$result" = clean ] || status=1
    printf '%-10s %-9s %8s %8s  %s\n' "$tool" "$part" "${errors:--}" "$seconds" "$result"
  done
done
exit $status
