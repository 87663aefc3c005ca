#!/usr/bin/env bash
# Unpacks the engine's non-CUDA build dependencies (SentencePiece, nlohmann/json, PCRE2) from Debian packages into a
# folder that travels to a GPU machine with CUDA and CMake but no package registry; pass it to run-gpu-checks.sh.
# Usage: packaging/gpu/prepare-deps.sh [DEST]   (default: .devdeps in the current folder)
set -euo pipefail
dest=$(realpath -m "${1:-.devdeps}")
pkgs="libsentencepiece0 libsentencepiece-dev nlohmann-json3-dev libpcre2-8-0 libpcre2-dev libutf8proc2 libutf8proc-dev"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download $pkgs >/dev/null 2>&1) || { apt-get update -qq && (cd "$tmp" && apt-get download $pkgs); }
mkdir -p "$dest"
chmod 755 "$tmp"
for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$dest"; done
echo "unpacked into $dest: $(du -sh "$dest" | cut -f1)"
