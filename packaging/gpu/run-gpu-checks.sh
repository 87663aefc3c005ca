#!/usr/bin/env bash
# Builds the engine and the qlora CLI with CUDA and without Qt, then runs `qlora check-gpu` (every CUDA kernel
# against the CPU reference, and a short fine-tune of a real model beside the CPU) and `qlora bench` (training steps
# of synthetic Llama shapes). For a machine with an NVIDIA GPU, the CUDA toolkit and CMake but no Qt.
# Usage: packaging/gpu/run-gpu-checks.sh [DEPS]
#   Env: QLS_CHECK_MODEL (a Hugging Face model directory for the fine-tune checks, check-gpu's beside the CPU and a
#        `qlora train` + `qlora resume` on the CUDA backend; skipped when unset),
#        QLS_BENCH (default "--shape 7b": `qlora bench` arguments, several runs separated by ';'; "" skips it).
#   DEPS: a folder with SentencePiece, nlohmann/json and PCRE2 unpacked from Debian packages (usr/...), for machines
#         without them installed; make one with packaging/gpu/prepare-deps.sh. Env: QLS_CUDA_ARCH (default 90 = Hopper), QLS_GPU_BUILD_DIR (default build-gpu).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${QLS_GPU_BUILD_DIR:-$here/build-gpu}"
deps="${1:-}"
shift || true
cmake_args=(-DQLS_BUILD_UI=OFF -DQLS_BUILD_TESTS=OFF -DQLS_WITH_CUDA=ON
            -DCMAKE_CUDA_ARCHITECTURES="${QLS_CUDA_ARCH:-90}" -DCMAKE_BUILD_TYPE=Release)
if [ -n "$deps" ]; then
  deps="$(cd "$deps" && pwd)"
  cmake_args+=(-DCMAKE_PREFIX_PATH="$deps/usr")
  export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

cmake -S "$here" -B "$build" "${generator[@]}" "${cmake_args[@]}"
cmake --build "$build" -j "$(nproc)" --target qlora
"$build/bin/qlora" devices
check_args=()
if [ -n "${QLS_CHECK_MODEL:-}" ]; then
  check_args=(--model "$QLS_CHECK_MODEL" --text "$here/datasets/stories/pip_the_lighthouse_mouse.txt")
fi
status=0
"$build/bin/qlora" check-gpu "${check_args[@]}" "$@" || status=$?
if [ -n "${QLS_CHECK_MODEL:-}" ]; then
  # `qlora train` on the CUDA backend, and stop + resume giving the same losses bit for bit
  python3 "$here/packaging/gpu/check-gpu-training.py" "$build/bin/qlora" "$QLS_CHECK_MODEL" "$here" || status=$?
fi
IFS=';' read -ra benches <<< "${QLS_BENCH---shape 7b}"
for b in "${benches[@]}"; do
  [ -n "${b// }" ] || continue
  # shellcheck disable=SC2086  # each entry is a list of flags
  "$build/bin/qlora" bench $b --json || status=$?
done
exit $status
