#!/usr/bin/env bash
# Installs what is missing on a Debian 12 machine, then configures and builds afd into build/.
#   scripts/setup.sh            build dependencies + build
#   scripts/setup.sh --tests    also the Python test oracles (numpy, safetensors, tokenizers, ...)
# Safe to run again: it installs nothing that is already there and rebuilds incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
[ "${1:-}" = "--tests" ] && want_tests=1

APT_PKGS=(build-essential cmake pkg-config libopenblas-dev nlohmann-json3-dev libcli11-dev
          libfmt-dev libgtest-dev libgmock-dev libucx-dev libboost-dev python3 python3-pip)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$want_tests" = 1 ]; then
  # Test oracles only; the engine itself has no Python.
  PY_PKGS=("numpy>=1.24" "safetensors>=0.4" "ml_dtypes>=0.3" "tokenizers>=0.20" "pytest>=7"
           "openai>=1.40")
  if ! python3 -c "import numpy, safetensors, ml_dtypes, tokenizers, pytest, openai" 2>/dev/null; then
    echo "setup: installing Python test oracles: ${PY_PKGS[*]}"
    python3 -m pip install -q "${PY_PKGS[@]}" 2>/dev/null ||
      python3 -m pip install -q --break-system-packages "${PY_PKGS[@]}"
  fi
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > build.configure.log 2>&1 || {
  cat build.configure.log; exit 1; }
rm -f build.configure.log
cmake --build build -j"$jobs"
