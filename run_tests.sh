#!/usr/bin/env bash
# Installs what dsv3 needs, builds it, and runs every test that needs no GPU, in parallel.
#   ./run_tests.sh                 # the release preset (CUDA backend compiled when nvcc is found)
#   DSV3_PRESET=cpu-debug ./run_tests.sh   # ASan/UBSan build
# Extra arguments go to ctest, e.g. ./run_tests.sh -R test_ops_attention
set -euo pipefail
DSV3_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$DSV3_ROOT/tools/bootstrap.sh"

dsv3_install_packages
dsv3_build
dsv3_cpu_environment
ctest --test-dir "$DSV3_BUILD_DIR" -LE gpu -j "$(nproc)" --output-on-failure "$@"
