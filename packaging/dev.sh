#!/usr/bin/env bash
# Developer entry point behind README's quick start: installs the Debian packages, configures, builds, then
# `studio` launches qlora-studio and `test` runs the whole CTest suite. `sanitize` builds a second tree with clang,
# AddressSanitizer + UndefinedBehaviorSanitizer and the libFuzzer targets (build-san/, CPU only, no UI) and runs its
# CTest suite: every engine and CLI test sanitized plus each fuzz target for QLS_FUZZ_SECONDS (label fuzz).
# Usage: packaging/dev.sh studio|test|sanitize [ctest args]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${QLS_BUILD_DIR:-$here/build}"
jobs="${QLS_JOBS:-$(nproc)}"
what="${1:-}"
shift || true

case "$what" in
  studio|test) ;;
  sanitize) build="${QLS_SAN_BUILD_DIR:-$here/build-san}" ;;
  *) echo "usage: packaging/dev.sh studio|test|sanitize" >&2; exit 2 ;;
esac

# --- Debian packages (Debian 12 names) -------------------------------------------------------------
pkgs=(build-essential cmake ninja-build pkg-config git qt6-base-dev libqcustomplot-dev nlohmann-json3-dev
      libsentencepiece-dev libpcre2-dev libutf8proc-dev libgl-dev libqt6svg6 xvfb xauth python3-numpy
      python3-venv)
# clang 14 with its sanitizer and libFuzzer runtimes, and its OpenMP
if [ "$what" = sanitize ]; then pkgs+=(clang libclang-rt-14-dev libomp-dev); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo_cmd=(sudo)
  fi
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# nvcc is found on PATH or in the toolkit's usual place; without it the build is CPU-only (QLS_WITH_CUDA=AUTO).
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi

# --- configure + build ---------------------------------------------------------------------------------
if [ "$what" = sanitize ]; then
  # the engine, the CLI and their tests; the studio's UI tests run in the normal tree (Qt is not instrumented)
  cmake -S "$here" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DQLS_WITH_CUDA=OFF -DQLS_BUILD_FUZZERS=ON \
    -DQLS_BUILD_UI=OFF ${QLS_CMAKE_ARGS:-}
else
  cmake -S "$here" -B "$build" -G Ninja ${QLS_CMAKE_ARGS:-}
fi
cmake --build "$build" -j "$jobs"

if [ "$what" = studio ]; then
  exec "$build/bin/qlora-studio" "$@"
fi
cd "$build"
exec ctest --output-on-failure -j "$jobs" "$@"
