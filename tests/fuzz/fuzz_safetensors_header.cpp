// libFuzzer target for the safetensors header parser (io/safetensors.hpp). Input: 8 bytes, the data buffer's size
// (little-endian, taken modulo 2^32), then the header text. A dsv3::Error is the expected answer to bad input;
// any other exception, a crash or a sanitizer report is a bug. Build with -DDSV3_BUILD_FUZZERS=ON and clang:
//   fuzz_safetensors_header -max_total_time=300 tests/fuzz/corpus_safetensors_header
#include "dsv3/core/error.hpp"
#include "dsv3/io/safetensors.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 8) return 0;
  std::uint64_t buffer_bytes = 0;
  for (int i = 3; i >= 0; --i) buffer_bytes = (buffer_bytes << 8) | data[i];
  const std::string_view header(reinterpret_cast<const char*>(data + 8), size - 8);
  try {
    const dsv3::io::SafetensorsHeader parsed = dsv3::io::parse_safetensors_header(header, buffer_bytes, "fuzz");
    // What the parser promises: the tensors tile the buffer, each exactly numel × dtype size.
    std::uint64_t covered = 0;
    for (const auto& tensor : parsed.tensors) {
      if (tensor.begin != covered || tensor.end > buffer_bytes ||
          tensor.bytes() != static_cast<std::uint64_t>(tensor.numel()) * dsv3::io::safetensors_dtype_size(tensor.dtype))
        std::abort();
      covered = tensor.end;
    }
    if (covered != buffer_bytes) std::abort();
  } catch (const dsv3::Error&) {
  }
  return 0;
}
