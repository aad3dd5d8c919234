# Extracts the attention kernels for the host emulator (main.cpp): usage gen.py REPO_ROOT OUT_DIR.
# attention.cuh is copied with its inline-PTX helpers (ldmatrix, mma, cp.async) replaced by calls into emu.hpp;
# OUT_DIR/dsv3/ops/cuda/attention.cuh then shadows the original on the include path. The .cu files are cut
# before their host wrappers, whose launches main.cpp repeats with its own launch().
import os
import sys

repo, out = sys.argv[1], sys.argv[2]
cuda_dir = os.path.join(repo, 'lib/dsv3/ops/cuda')


def replace_function(text, head, end_marker, body):
    start = text.index(head)
    end = text.index(end_marker, start)
    return text[:start] + body + text[end:]


header = open(os.path.join(cuda_dir, 'attention.cuh')).read()
header = replace_function(header, '__device__ __forceinline__ std::uint32_t shared_address', '// The A fragment of rows', '''\
__device__ __forceinline__ void load_matrices(std::uint32_t fragment[4], const bfloat16* row) { emu_ldmatrix(fragment, row, false); }
__device__ __forceinline__ void load_matrices_transposed(std::uint32_t fragment[4], const bfloat16* row) { emu_ldmatrix(fragment, row, true); }
''')
header = replace_function(header, '__device__ __forceinline__ void mma(', '// s[b] = rows_tile', '''\
__device__ __forceinline__ void mma(float c[4], const std::uint32_t a[4], std::uint32_t b0, std::uint32_t b1) { emu_mma(c, a, b0, b1); }
''')
header = replace_function(header, '__device__ __forceinline__ void copy16_async(', '// Waits for this thread', '''\
__device__ __forceinline__ void copy16_async(void* shared, const void* global, bool valid) { emu_copy16(shared, global, valid); }
''')
header = replace_function(header, '__device__ __forceinline__ void wait_for_tiles()', '\n', '''\
__device__ __forceinline__ void wait_for_tiles() { emu_wait(); }''')
os.makedirs(os.path.join(out, 'dsv3/ops/cuda'), exist_ok=True)
open(os.path.join(out, 'dsv3/ops/cuda/attention.cuh'), 'w').write(header)

for name in ['forward', 'backward']:
    text = open(os.path.join(cuda_dir, f'attention_{name}.cu')).read()
    cut = text.index('}  // namespace attention_kernels')
    open(os.path.join(out, f'attention_{name}_kernels.inc'), 'w').write(
        text[:cut] + '}  // namespace attention_kernels\n}  // namespace dsv3::cuda\n')
