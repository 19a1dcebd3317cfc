#!/usr/bin/env bash
# Installs the Debian packages ferry needs to build, test and demo, but only
# those that are missing (so a prepared machine does no network work).
set -euo pipefail

pkgs=(build-essential cmake pkg-config git
      librocksdb-dev rocksdb-tools
      libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
      libevent-dev libcurl4-openssl-dev libjansson-dev libyaml-dev libxxhash-dev
      libgoogle-perftools-dev
      libcmocka-dev clang libclang-rt-14-dev
      wrk curl procps psmisc nodejs npm)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere on the machine; only ask apt when absent
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
