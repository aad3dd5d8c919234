#!/usr/bin/env bash
# Re-checks the CUDA kernels of lib/dsv3/ops/cuda on the host, without a GPU: a manual validation step after
# kernel edits, not part of ctest. Usage: validation/cuda_emulation/run.sh [BUILD_DIR] (default: build-emu).
#   attention/  flash-attention kernels vs a double reference (OS threads per CTA, emulated ldmatrix/mma)
#   kernels/    routing, elementwise, norm, loss, optim, rope, activation, fp8, embedding vs the CPU ops
#               (fiber CTAs), each suite run in every EMU_ORDER (thread order between barriers)
# Not covered: matmul.cu (cuBLAS) and runtime.cu; real GPU arithmetic (FMA, ftz, mma internals); thread orders
# other than the ones tried between barriers; CUB (replaced by a stable host sort). Needs x86-64 (emu_switch.S).
# Exits non-zero if any suite fails; one summary line per suite; logs under BUILD_DIR/cuda_emulation.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(realpath -m "${1:-$repo/build-emu}")
work="$build/cuda_emulation"

# The kernel tests compare against the CPU ops, so they link the CPU-only (DSV3_WITH_CUDA=OFF) dsv3_ops.
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDSV3_WITH_CUDA=OFF > /dev/null
fi
grep -q '^DSV3_WITH_CUDA:[A-Z]*=OFF$' "$build/CMakeCache.txt" || { echo "$build is not a DSV3_WITH_CUDA=OFF build" >&2; exit 1; }
cmake --build "$build" -j2 --target dsv3_ops > /dev/null

rm -rf "$work"; mkdir -p "$work/attention" "$work/kernels"
kernel_sources=(routing elementwise norm loss optim rope activation fp8 embedding checks)
python3 "$here/attention/gen.py" "$repo" "$work/attention"
python3 "$here/kernels/gen.py" "$repo" "$work/kernels" "${kernel_sources[@]}"

# The generated attention.cuh comes first on the include path so it shadows the original.
g++ -std=c++20 -O2 -pthread -I "$work/attention" -I "$here/attention" -I "$here/common" -I "$repo/lib" \
  "$here/attention/main.cpp" -o "$work/attention_emu" -lfmt &
flags=(-std=c++20 -O1 -DFMT_SHARED -I "$here/kernels/shim" -I "$here/common" -I "$repo/lib")
printf '%s\n' "${kernel_sources[@]}" |
  xargs -P 2 -I NAME g++ "${flags[@]}" -c "$work/kernels/NAME.cpp" -o "$work/kernels/NAME.o"
wait $!
gcc -c "$here/kernels/shim/emu_switch.S" -o "$work/kernels/emu_switch.o"
libs="$build/lib/dsv3"
link=(-L "$libs/ops" -L "$libs/tensor" -L "$libs/core" -ldsv3_ops -ldsv3_tensor -ldsv3_core -lfmt
      "-Wl,-rpath,$libs/ops:$libs/tensor:$libs/core")
build_test() {  # build_test NAME SOURCES...: links tests/test_NAME.cpp with the generated kernels it needs.
  local name=$1; shift
  g++ "${flags[@]}" "$here/kernels/tests/test_$name.cpp" "${@/#/$work/kernels/}" "$work/kernels/checks.o" \
    "$work/kernels/emu_switch.o" -o "$work/test_$name" "${link[@]}"
}
build_test routing routing.o
build_test elementwise elementwise.o
build_test rest norm.o loss.o optim.o rope.o activation.o fp8.o embedding.o

failures=0
suite() {  # suite NAME COMMAND...: runs one suite, logs it, prints PASS/FAIL with its last output line.
  local name=$1; shift
  local log="$work/$name.log" start=$SECONDS status=PASS
  "$@" > "$log" 2>&1 || { status=FAIL; failures=$((failures + 1)); }
  printf '%-4s %-24s %4ds  %s\n' "$status" "$name" $((SECONDS - start)) "$(tail -n 1 "$log")"
}
suite attention-matrix "$work/attention_emu" matrix
suite attention-long "$work/attention_emu" long
for order in 0 1 2; do
  export EMU_ORDER=$order
  suite "routing-order$order" "$work/test_routing" 400
  suite "routing-nan-order$order" "$work/test_routing" 0 nan
  suite "elementwise-order$order" "$work/test_elementwise"
  suite "rest-order$order" "$work/test_rest"
done
[ "$failures" -eq 0 ] && echo "cuda_emulation: all suites passed" || echo "cuda_emulation: $failures suite(s) failed (logs in $work)"
exit $((failures != 0))
