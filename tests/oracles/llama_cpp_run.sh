#!/bin/sh
# CTest entry llama_cpp_gguf (label llamacpp): runs llama_cpp_gguf_check.py in a venv under the build folder, made on
# first use from ../shared/wheels (llama-cpp-python, a CPU build of llama.cpp) and PyPI (numpy, gguf, ...); exits 77
# (CTest: skipped) with a message when the wheel is absent.
# usage: llama_cpp_run.sh SOURCE_DIR BUILD_TESTS_DIR QLORA_EXE
set -eu
SRC=$1
BUILD=$2
QLORA=$3
SHARED=$(cd "$SRC/.." && pwd)/shared
WHEEL=$(ls "$SHARED"/wheels/llama_cpp_python-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$WHEEL" ]; then
    echo "SKIP: no llama_cpp_python-*.whl in $SHARED/wheels (see the README there); the llama.cpp oracle did not run"
    exit 77
fi
VENV=$BUILD/llamacpp-venv
if ! "$VENV/bin/python" -c "import llama_cpp, gguf, numpy" 2>/dev/null; then
    echo "creating $VENV (once)"
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" || ! "$VENV/bin/pip" install -q numpy typing-extensions diskcache jinja2 gguf ||
        ! "$VENV/bin/pip" install -q --no-deps "$WHEEL"; then
        echo "SKIP: could not make the oracle's venv in $VENV (python3-venv and PyPI are needed for numpy and gguf);" \
             "the llama.cpp oracle did not run"
        rm -rf "$VENV"
        exit 77
    fi
fi
exec "$VENV/bin/python" "$SRC/tests/oracles/llama_cpp_gguf_check.py" --qlora "$QLORA" --src "$SRC" \
    --shared "$SHARED" --work "$BUILD/llamacpp-oracle"
