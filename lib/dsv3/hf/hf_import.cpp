#include "dsv3/hf/hf_import.hpp"

#include "dsv3/core/error.hpp"
#include "dsv3/core/logging.hpp"
#include "dsv3/hf/conversion_plan.hpp"
#include "dsv3/hf/hf_config.hpp"
#include "dsv3/hf/hf_names.hpp"
#include "dsv3/io/collective.hpp"
#include "dsv3/io/safetensors_index.hpp"
#include "dsv3/ops/elementwise.hpp"
#include "dsv3/ops/fp8.hpp"
#include "dsv3/train/model_checkpoint.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <set>

namespace dsv3::hf {

namespace {

using io::SafetensorsDType;

// One HF tensor and where it goes: elements [begin, begin + numel) of dataset `dataset`.
struct Piece {
  std::size_t dataset = 0;
  std::int64_t begin = 0;
  std::string name;
  std::vector<std::int64_t> shape;  // as dsv3 expects it
  std::uint64_t bytes = 0;          // read from the HF files: the tensor and its scales
};

// Every piece of the checkpoint, each checked against the config: present, of the expected shape, of a dtype
// dsv3 converts, with well-formed FP8 scales; then every HF tensor is accounted for.
std::vector<Piece> plan_pieces(const io::SafetensorsCheckpoint& hf, const HfConfig& config,
                               const std::vector<train::ModelDataset>& datasets, bool verbose) {
  const std::string folder = hf.folder().string();
  std::vector<Piece> pieces;
  std::set<std::string> used;
  for (std::size_t d = 0; d < datasets.size(); ++d) {
    const train::ModelDataset& dataset = datasets[d];
    const std::vector<std::string> names = hf_tensor_names(dataset.name, config.args.n_routed_experts);
    std::vector<std::int64_t> shape = dataset.shape;
    if (names.size() > 1 || dataset.name.find(".moe.experts.") != std::string::npos) shape.erase(shape.begin());
    const std::int64_t numel = dataset.numel() / static_cast<std::int64_t>(names.size());
    for (std::size_t j = 0; j < names.size(); ++j) {
      const auto [file, tensor] = hf.find(names[j]);  // an error naming the folder and the tensor if missing
      DSV3_CHECK(tensor->shape == shape, "{}: tensor '{}' has shape [{}] but config.json gives [{}] ({})",
                 file->path().string(), names[j], fmt::join(tensor->shape, ", "), fmt::join(shape, ", "),
                 dataset.name);
      Piece piece{d, static_cast<std::int64_t>(j) * numel, names[j], shape, tensor->bytes()};
      used.insert(names[j]);
      if (tensor->dtype == SafetensorsDType::F8_E4M3) {
        DSV3_CHECK(shape.size() == 2, "{}: tensor '{}': F8_E4M3 is read only for 2-D weights", file->path().string(),
                   names[j]);
        const std::string scale_name = hf_scale_name(names[j]);
        DSV3_CHECK(hf.contains(scale_name), "{}: F8_E4M3 tensor '{}' has no scale tensor '{}'", folder, names[j],
                   scale_name);
        const auto [scale_file, scale] = hf.find(scale_name);
        const std::vector<std::int64_t> scale_shape = {ceil_div(shape[0], ops::kFp8BlockSize),
                                                       ceil_div(shape[1], ops::kFp8BlockSize)};
        DSV3_CHECK(scale->shape == scale_shape && (scale->dtype == SafetensorsDType::F32 ||
                                                   scale->dtype == SafetensorsDType::BF16),
                   "{}: scale tensor '{}' is {} [{}] but its weight '{}' [{}] needs F32 [{}] (128×128 blocks)",
                   scale_file->path().string(), scale_name, io::safetensors_dtype_name(scale->dtype),
                   fmt::join(scale->shape, ", "), names[j], fmt::join(shape, ", "), fmt::join(scale_shape, ", "));
        piece.bytes += scale->bytes();
        used.insert(scale_name);
      } else {
        const auto dtype = io::dsv3_dtype(tensor->dtype);
        DSV3_CHECK(dtype && is_floating(*dtype), "{}: tensor '{}' is {}: dsv3 imports F32, BF16, F64 and F8_E4M3",
                   file->path().string(), names[j], io::safetensors_dtype_name(tensor->dtype));
      }
      pieces.push_back(std::move(piece));
    }
  }
  std::vector<std::string> mtp;
  for (const std::string& name : hf.names()) {
    if (used.count(name)) continue;
    const auto layer = hf_layer_of(name);
    if (layer && *layer >= config.args.n_layers && *layer < config.args.n_layers + config.mtp_layers) {
      mtp.push_back(name);
      continue;
    }
    if (name.ends_with("rotary_emb.inv_freq")) continue;  // a buffer older exports saved; recomputed from the config
    fail("{}: tensor '{}' is not part of the model config.json describes (a mismatched config or checkpoint)", folder,
         name);
  }
  if (verbose && !mtp.empty())
    log(LogLevel::info, "import: skipping the {} tensors of the multi-token-prediction layer(s) {}..{} (dsv3 does "
        "not train MTP)", mtp.size(), config.args.n_layers, config.args.n_layers + config.mtp_layers - 1);
  return pieces;
}

// Copies bytes of the mapped file into a tensor of `dtype` (the mapping is read-only and unaligned for our types).
Tensor copy_of(std::span<const std::byte> bytes, DType dtype, Shape shape) {
  Tensor tensor = Tensor::empty(std::move(shape), dtype);
  std::memcpy(tensor.raw(), bytes.data(), bytes.size());
  return tensor;
}

// The values of a chunk ready for a checkpoint stored in `stored`: BF16 into an f32 checkpoint is widened in the
// same pass that reads the mapping (a bf16 is the upper half of an f32: exact, a shift), the rest copied as they
// are and converted by the writer.
Tensor read_values(std::span<const std::byte> bytes, SafetensorsDType dtype, std::int64_t count, DType stored) {
  if (dtype == SafetensorsDType::BF16 && stored == DType::f32) {
    Tensor values = Tensor::empty(Shape{count}, DType::f32);
    auto* out = static_cast<std::uint32_t*>(values.raw());
    const auto* in = reinterpret_cast<const unsigned char*>(bytes.data());
    for (std::int64_t i = 0; i < count; ++i)
      out[i] = (static_cast<std::uint32_t>(in[2 * i]) | static_cast<std::uint32_t>(in[2 * i + 1]) << 8) << 16;
    return values;
  }
  return copy_of(bytes, *io::dsv3_dtype(dtype), Shape{count});
}

Tensor as_f32(const Tensor& tensor) {
  if (tensor.dtype() == DType::f32) return tensor;
  Tensor result = Tensor::empty(tensor.shape(), DType::f32);
  ops::convert(result, tensor);
  return result;
}

// Converts one piece in chunks of rows and writes them. The next chunk's bytes are prefetched while this one is
// converted, and the pages read are handed back to the page cache.
void convert_piece(const io::SafetensorsCheckpoint& hf, const Piece& piece, std::int64_t chunk_bytes,
                   train::ModelCheckpointWriter& writer, Progress& progress) {
  const auto [file, tensor] = hf.find(piece.name);
  const std::int64_t rows = piece.shape.size() == 2 ? piece.shape[0] : 1;
  const std::int64_t cols = tensor->numel() / std::max<std::int64_t>(rows, 1);
  const std::span<const std::byte> data = file->data(*tensor);
  const bool fp8 = tensor->dtype == SafetensorsDType::F8_E4M3;
  std::int64_t step = std::max<std::int64_t>(1, chunk_bytes / std::max<std::int64_t>(4 * cols, 1));
  if (fp8) step = std::max<std::int64_t>(1, step / ops::kFp8BlockSize) * ops::kFp8BlockSize;
  const std::size_t element = io::safetensors_dtype_size(tensor->dtype);
  const auto rows_bytes = [&](std::int64_t begin, std::int64_t end) {
    return data.subspan(static_cast<std::size_t>(begin * cols) * element,
                        static_cast<std::size_t>((end - begin) * cols) * element);
  };
  file->prefetch(rows_bytes(0, std::min(rows, step)));
  for (std::int64_t row = 0; row < rows; row += step) {
    const std::int64_t end = std::min(rows, row + step);
    if (end < rows) file->prefetch(rows_bytes(end, std::min(rows, end + step)));
    const std::span<const std::byte> bytes = rows_bytes(row, end);
    Tensor values;
    std::uint64_t read = bytes.size();
    if (fp8) {
      const auto [scale_file, scale] = hf.find(hf_scale_name(piece.name));
      const std::int64_t scale_cols = scale->shape[1];
      const std::int64_t first = row / ops::kFp8BlockSize;
      const std::int64_t blocks = ceil_div(end - row, ops::kFp8BlockSize);
      const std::size_t scale_element = io::safetensors_dtype_size(scale->dtype);
      const std::span<const std::byte> scale_bytes = scale_file->data(*scale).subspan(
          static_cast<std::size_t>(first * scale_cols) * scale_element,
          static_cast<std::size_t>(blocks * scale_cols) * scale_element);
      const Tensor scale_inv = as_f32(copy_of(scale_bytes, *io::dsv3_dtype(scale->dtype), Shape{blocks, scale_cols}));
      values = Tensor::empty(Shape{end - row, cols}, DType::f32);
      ops::fp8_dequantize_blocks(values, copy_of(bytes, DType::fp8_e4m3, Shape{end - row, cols}), scale_inv);
      values = values.view(Shape{values.numel()});
      read += scale_bytes.size();
    } else {
      values = read_values(bytes, tensor->dtype, (end - row) * cols, writer.datasets()[piece.dataset].dtype);
    }
    writer.write(piece.dataset, piece.begin + row * cols, values);
    file->release(bytes);
    progress.advance(read);
  }
}

}  // namespace

ConversionReport import_hf_checkpoint(const ImportOptions& options, MPI_Comm comm) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  DSV3_CHECK(options.dtype == DType::f32 || options.dtype == DType::bf16,
             "import: the checkpoint dtype must be float32 or bfloat16, not {}", dtype_name(options.dtype));
  HfConfig config;
  std::optional<io::SafetensorsCheckpoint> hf;
  std::vector<train::ModelDataset> datasets;
  std::vector<Piece> pieces;
  io::agree_on_failure(comm, [&] {
    config = read_hf_config(options.hf_dir / "config.json");
    config.args.mask = options.mask;
    hf.emplace(io::SafetensorsCheckpoint::open(options.hf_dir));
    datasets = train::model_datasets(config.args, options.dtype);
    pieces = plan_pieces(*hf, config, datasets, rank == 0 && options.progress);
  });
  std::vector<std::uint64_t> bytes;
  for (const Piece& piece : pieces) bytes.push_back(piece.bytes);
  const std::vector<int> owner = split_by_bytes(bytes, ranks);
  std::uint64_t total = 0, mine = 0;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    total += bytes[i];
    if (owner[i] == rank) mine += bytes[i];
  }
  if (rank == 0 && options.progress)
    log(LogLevel::info, "import: {} tensors, {:.2f} GB, {} into {} datasets on {} rank(s)", pieces.size(),
        gigabytes(total), config.fp8 ? "FP8 dequantized" : "converted", datasets.size(), ranks);

  const std::filesystem::path partial = options.output.string() + ".partial";
  train::CheckpointContents contents{true, options.dtype, train::model_args_json(config.args),
                                     fmt::format("# imported by dsv3_convert_hf from {}\n", options.hf_dir.string())};
  train::ModelCheckpointWriter writer(partial, comm, contents, datasets);
  Progress progress("import", total, mine, rank == 0 && options.progress);
  io::agree_on_failure(comm, [&] {
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      if (owner[i] == rank) convert_piece(*hf, pieces[i], options.chunk_bytes, writer, progress);
    }
  });
  writer.finish();
  io::agree_on_failure(comm, [&] {
    if (rank == 0) std::filesystem::rename(partial, options.output);
  });
  ConversionReport report{total, static_cast<std::int64_t>(pieces.size()), progress.seconds()};
  if (rank == 0 && options.progress)
    log(LogLevel::info, "import: {:.2f} GB in {:.1f} s ({:.2f} GB/s on {} rank(s)) -> {}", gigabytes(total),
        report.seconds, gigabytes(total) / report.seconds, ranks, options.output.string());
  return report;
}

}  // namespace dsv3::hf
