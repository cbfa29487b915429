#!/usr/bin/env bash
# Sets up (including the Python test oracles), builds, and runs every test with CTest:
# the GoogleTest suites and the Python oracles (numpy Step-3 forward, safetensors writer).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
cd build
ctest --output-on-failure -j"$(nproc 2>/dev/null || echo 2)" "$@"
