#!/usr/bin/env bash
# The main job: installs what dsv3 needs, builds it, and trains the debug model on 2 MPI ranks on the
# bundled sample data, as torchtitan's run_train.sh does.
#   ./run_train.sh
#   CONFIG_FILE=inputs/debug_model.toml NGPU=2 ./run_train.sh --training.steps=20
set -euo pipefail
DSV3_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$DSV3_ROOT/tools/bootstrap.sh"

CONFIG_FILE="${CONFIG_FILE:-$DSV3_ROOT/inputs/debug_model.toml}"
NRANKS="${NGPU:-2}"

dsv3_install_packages
dsv3_build

source "$DSV3_ROOT/tools/sample_data.sh"
CONFIG_FILE="$(realpath "$CONFIG_FILE")"
# The configs name their data relative to the repository root, as torchtitan's do.
cd "$DSV3_ROOT"
dsv3_prepare_sample_data "$DSV3_BUILD_DIR" "$DSV3_ROOT/data/sample"
dsv3_cpu_environment

trainer="$DSV3_BUILD_DIR/apps/dsv3_train/dsv3_train"
# shellcheck disable=SC2046
exec mpiexec -n "$NRANKS" $(dsv3_mpiexec_flags) "$trainer" --job.config_file "$CONFIG_FILE" "$@"
