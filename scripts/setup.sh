#!/usr/bin/env bash
# Installs qmesh's build and test dependencies (Debian packages) on a fresh machine, as root.
# Safe to run again: packages already present are not downloaded.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config libpcre2-dev libutf8proc-dev libcjson-dev libcmocka-dev libmicrohttpd-dev
      libopenmpi-dev openmpi-bin bc procps curl jq)
optional=(gnuplot-nox clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}" "${optional[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${optional[@]}" \
    || echo "setup: gnuplot not installed (only 'qmesh eval report --png' needs it)"
else
  echo "setup: all dependencies present"
fi
