#!/usr/bin/env bash
# The CUDA backend on a machine with a GPU, in one run that fits a short device lease: configure and build, run the
# GPU tests (ctest -L gpu: test_backend_ops, test_nccl_communicator, e2e_train_cuda), the GPU benchmarks, the
# training step of a single-GPU proxy (the 16B flavor cut to a few layers) and, when torchtitan is importable, the
# same step in PyTorch; then write a short table of the results.
#   validation/device_check.sh OUT_DIR [LAYERS]
# Every log and the table (OUT_DIR/device_table.md) land in OUT_DIR. The build dependencies (Open MPI, parallel
# HDF5, Boost.ProgramOptions, fmt, doctest, OpenBLAS, CUDA, NCCL) come from the system, or from Debian packages in
# .devdeps/ made by validation/device_deps.sh and unpacked here into a private prefix.
set -uo pipefail
out="${1:?usage: device_check.sh OUT_DIR [LAYERS]}"
layers="${2:-4}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
log() { echo "device_check: $*" | tee -a "$out/device_check.log"; }

if compgen -G ".devdeps/*.deb" >/dev/null; then
  prefix=/tmp/dsv3-deps
  for deb in .devdeps/*.deb; do dpkg -x "$deb" "$prefix"; done
  arch_lib="$prefix/usr/lib/x86_64-linux-gnu"
  export PATH="$prefix/usr/bin:$PATH" LD_LIBRARY_PATH="$arch_lib:$arch_lib/openmpi/lib:${LD_LIBRARY_PATH:-}"
  export CMAKE_PREFIX_PATH="$prefix/usr" OPAL_PREFIX="$arch_lib/openmpi" CPATH="$prefix/usr/include"
  log "dependencies unpacked from .devdeps into $prefix"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$out/gpu.txt"

build=build-device
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
log "configure and build ($(nproc) cores)"
start=$(date +%s)
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DDSV3_WITH_CUDA=ON >"$out/build.log" 2>&1 &&
  cmake --build "$build" -j "$(nproc)" >>"$out/build.log" 2>&1
build_status=$?
log "build exit $build_status in $(( $(date +%s) - start )) s"
[ "$build_status" -eq 0 ] || { tail -40 "$out/build.log"; exit 1; }

log "ctest -L gpu"
(cd "$build" && timeout 300 ctest -L gpu --output-on-failure) >"$out/ctest_gpu.log" 2>&1
tests_status=$?
grep -E "tests passed|tests failed|Failed|Passed" "$out/ctest_gpu.log" | tail -8

bench="$build/apps/dsv3_bench/dsv3_bench"
log "dsv3_bench gpu"
timeout 180 "$bench" gpu >"$out/bench_gpu.txt" 2>&1
cat "$out/bench_gpu.txt"
step=(--config inputs/dsv3_16b.toml --layers "$layers" --set training.local_batch_size=2 --set training.seq_len=4096)
log "dsv3_bench step --device cuda ${step[*]}"
timeout 180 "$bench" step --device cuda "${step[@]}" >"$out/bench_step.txt" 2>&1
cat "$out/bench_step.txt"
if python3 -c "import torchtitan" 2>/dev/null; then
  log "torchtitan on the same step"
  timeout 180 python3 validation/torch_step_bench.py --device cuda --flavor 16B --layers "$layers" --batch 2 \
    --seq-len 4096 >"$out/torch_step.txt" 2>&1
  cat "$out/torch_step.txt"
fi

{
  echo "| measurement | result |"
  echo "| --- | --- |"
  echo "| GPU | $(cat "$out/gpu.txt") |"
  echo "| ctest -L gpu | $(grep -E 'tests passed' "$out/ctest_gpu.log" | tail -1) |"
  grep -E "^(cublasGemmEx|matmul|dense linear_forward|grouped_linear|attention_)" "$out/bench_gpu.txt" |
    awk '{ rate = ""; for (i = 1; i <= NF; ++i) if ($i == "TFLOP/s") rate = $(i - 1) " TFLOP/s"; print "| " $1 " " $2 " | " rate " |" }'
  grep -E "^(matmul bf16 /|grouped_linear_forward /|attention fwd\+bwd)" "$out/bench_gpu.txt" | sed 's/^/| /; s/  */ /g; s/$/ |/'
  grep -E "tokens/s" "$out/bench_step.txt" | sed 's/^/| dsv3 step (16B, '"$layers"' layers, 2 × 4096) | /; s/$/ |/'
  [ -f "$out/torch_step.txt" ] && grep -E "tokens/s" "$out/torch_step.txt" | sed 's/^/| torchtitan step, same | /; s/$/ |/'
} >"$out/device_table.md"
cat "$out/device_table.md"
exit "$tests_status"
