#!/usr/bin/env bash
# Builds the Debian package from a built tree (cpack -G DEB), validates its desktop entry and AppStream metainfo,
# unpacks it with dpkg-deb -x and runs the installed qlora and qlora-studio (offscreen) with --version.
# Usage: packaging/check-deb.sh [BUILD_DIR]   (default: build, as packaging/dev.sh builds it)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "${1:-${QLS_BUILD_DIR:-$here/build}}" && pwd)"

# CPack's DEB generator needs `file` and dpkg-shlibdeps (dpkg-dev); the validators come from Debian too.
need=()
command -v file >/dev/null || need+=(file)
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v desktop-file-validate >/dev/null || need+=(desktop-file-utils)
command -v appstreamcli >/dev/null || need+=(appstream)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install: ${need[*]}" >&2; exit 1; }
    sudo_cmd=(sudo)
  fi
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

version="$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")"
rm -f "$build"/qlora-studio_*.deb
(cd "$build" && cpack -G DEB >/dev/null)
deb="$(ls "$build"/qlora-studio_"$version"_*.deb)"
echo "package: $deb"
dpkg-deb -f "$deb" Package Version Depends

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
for f in "$tmp"/usr/share/applications/*.desktop; do desktop-file-validate "$f"; done
for f in "$tmp"/usr/share/metainfo/*.metainfo.xml; do appstreamcli validate --no-net "$f"; done
test -f "$tmp/usr/share/icons/hicolor/scalable/apps/qlora-studio.svg"

check_version() {  # NAME OUTPUT
  [ "$2" = "$1 $version" ] || { echo "$1 --version printed '$2', expected '$1 $version'" >&2; exit 1; }
  echo "$2"
}
check_version qlora "$("$tmp/usr/bin/qlora" --version)"
check_version qlora-studio "$(QT_QPA_PLATFORM=offscreen "$tmp/usr/bin/qlora-studio" --version 2>/dev/null)"
echo "package OK"
