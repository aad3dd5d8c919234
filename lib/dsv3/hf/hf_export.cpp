#include "dsv3/hf/hf_export.hpp"

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

#include <fstream>
#include <map>
#include <memory>

namespace dsv3::hf {

namespace {

using io::SafetensorsDType;

// One HF tensor to write (with its scale tensor when quantized) and where its values come from.
struct Item {
  std::string dataset;  // /model/<dataset>
  std::int64_t begin = 0;
  std::vector<std::int64_t> shape;
  std::string name;
  DType dtype = DType::f32;  // fp8_e4m3: quantized, with a scale tensor
  std::size_t shard = 0;     // index into the shard layouts
  std::size_t index = 0;     // of the tensor in its shard (the scale tensor follows it)
  std::uint64_t bytes = 0;   // f32 bytes read
};

// The released FP8 checkpoint quantizes the projections inside the layers, never the router gate or the norms.
bool quantized_in_fp8(const std::string& name, std::size_t rank) {
  return rank == 2 && name.starts_with("model.layers.") && name.find("_proj") != std::string::npos;
}

DType stored_dtype(ExportDType dtype, const std::string& name, std::size_t rank) {
  if (name.ends_with("e_score_correction_bias")) return DType::f32;
  switch (dtype) {
    case ExportDType::f32: return DType::f32;
    case ExportDType::bf16: return DType::bf16;
    case ExportDType::fp8: return quantized_in_fp8(name, rank) ? DType::fp8_e4m3 : DType::bf16;
  }
  return DType::f32;
}

struct Plan {
  std::vector<Item> items;
  std::vector<io::SafetensorsLayout> shards;
  std::map<std::string, std::string> weight_map;
  std::uint64_t data_bytes = 0;
};

Plan plan_export(const train::ModelCheckpointReader& reader, const ExportOptions& options) {
  Plan plan;
  std::vector<std::vector<io::SafetensorsTensorSpec>> shard_specs(1);
  std::uint64_t shard_bytes = 0;
  for (const train::ModelDataset& dataset : reader.datasets()) {
    const std::vector<std::string> names = hf_tensor_names(dataset.name, reader.args().n_routed_experts);
    std::vector<std::int64_t> shape = dataset.shape;
    if (dataset.name.find(".moe.experts.") != std::string::npos) shape.erase(shape.begin());
    const std::int64_t numel = dataset.numel() / static_cast<std::int64_t>(names.size());
    for (std::size_t j = 0; j < names.size(); ++j) {
      Item item{dataset.name, static_cast<std::int64_t>(j) * numel, shape, names[j],
                stored_dtype(options.dtype, names[j], shape.size()), 0, 0, static_cast<std::uint64_t>(numel) * 4};
      std::vector<io::SafetensorsTensorSpec> specs = {{names[j], io::safetensors_dtype(item.dtype), shape}};
      if (item.dtype == DType::fp8_e4m3)
        specs.push_back({hf_scale_name(names[j]), SafetensorsDType::F32,
                         {ceil_div(shape[0], ops::kFp8BlockSize), ceil_div(shape[1], ops::kFp8BlockSize)}});
      std::uint64_t bytes = 0;
      for (const auto& spec : specs) {
        std::uint64_t n = io::safetensors_dtype_size(spec.dtype);
        for (const std::int64_t extent : spec.shape) n *= static_cast<std::uint64_t>(extent);
        bytes += n;
      }
      if (shard_bytes > 0 && shard_bytes + bytes > options.shard_bytes) {
        shard_specs.emplace_back();
        shard_bytes = 0;
      }
      item.shard = shard_specs.size() - 1;
      item.index = shard_specs.back().size();
      shard_bytes += bytes;
      plan.data_bytes += bytes;
      for (auto& spec : specs) shard_specs.back().push_back(std::move(spec));
      plan.items.push_back(std::move(item));
    }
  }
  for (std::size_t s = 0; s < shard_specs.size(); ++s) {
    plan.shards.push_back(io::safetensors_layout(shard_specs[s], {{"format", "pt"}}));
    for (const auto& spec : shard_specs[s])
      plan.weight_map[spec.name] = io::safetensors_shard_name(s + 1, shard_specs.size());
  }
  return plan;
}

std::span<const std::byte> bytes_of(const Tensor& tensor) {
  return {static_cast<const std::byte*>(tensor.raw()), tensor.nbytes()};
}

void export_item(train::ModelCheckpointReader& reader, const Item& item, std::int64_t chunk_bytes,
                 const io::SafetensorsWriter& writer, Progress& progress) {
  const std::int64_t rows = item.shape.size() == 2 ? item.shape[0] : 1;
  std::int64_t cols = 1;
  for (const std::int64_t extent : item.shape) cols *= extent;
  cols /= rows;
  const bool fp8 = item.dtype == DType::fp8_e4m3;
  std::int64_t step = std::max<std::int64_t>(1, chunk_bytes / std::max<std::int64_t>(4 * cols, 1));
  if (fp8) step = std::max<std::int64_t>(1, step / ops::kFp8BlockSize) * ops::kFp8BlockSize;
  for (std::int64_t row = 0; row < rows; row += step) {
    const std::int64_t end = std::min(rows, row + step);
    const Tensor values = reader.read(item.dataset, item.begin + row * cols, (end - row) * cols);
    if (fp8) {
      const std::int64_t scale_cols = ceil_div(cols, ops::kFp8BlockSize);
      const Tensor q = Tensor::empty(Shape{end - row, cols}, DType::fp8_e4m3);
      const Tensor scale_inv = Tensor::empty(Shape{ceil_div(end - row, ops::kFp8BlockSize), scale_cols}, DType::f32);
      ops::fp8_quantize_blocks(q, scale_inv, values.view(Shape{end - row, cols}));
      writer.write(item.index, static_cast<std::uint64_t>(row * cols), bytes_of(q));
      writer.write(item.index + 1, static_cast<std::uint64_t>(row / ops::kFp8BlockSize * scale_cols) * 4,
                   bytes_of(scale_inv));
    } else if (item.dtype == DType::f32) {
      writer.write(item.index, static_cast<std::uint64_t>(row * cols) * 4, bytes_of(values));
    } else {
      const Tensor converted = Tensor::empty(values.shape(), item.dtype);
      ops::convert(converted, values);
      writer.write(item.index, static_cast<std::uint64_t>(row * cols) * dtype_size(item.dtype), bytes_of(converted));
    }
    progress.advance(values.nbytes());
  }
}

}  // namespace

ConversionReport export_hf_checkpoint(const ExportOptions& options, MPI_Comm comm) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  std::unique_ptr<train::ModelCheckpointReader> reader;
  Plan plan;
  io::agree_on_failure(comm, [&] {
    reader = std::make_unique<train::ModelCheckpointReader>(options.checkpoint);
    plan = plan_export(*reader, options);
  });
  // Rank 0 creates the folder and every shard at its full size; then each rank fills in its tensors.
  io::agree_on_failure(comm, [&] {
    if (rank != 0) return;
    std::filesystem::create_directories(options.output);
    for (std::size_t s = 0; s < plan.shards.size(); ++s) {
      io::SafetensorsWriter(options.output / io::safetensors_shard_name(s + 1, plan.shards.size()), plan.shards[s],
                            io::SafetensorsWriter::Mode::create)
          .close();
    }
  });
  std::vector<std::uint64_t> bytes;
  for (const Item& item : plan.items) bytes.push_back(item.bytes);
  const std::vector<int> owner = split_by_bytes(bytes, ranks);
  std::uint64_t total = 0, mine = 0;
  for (std::size_t i = 0; i < plan.items.size(); ++i) {
    total += bytes[i];
    if (owner[i] == rank) mine += bytes[i];
  }
  Progress progress("export", total, mine, rank == 0 && options.progress);
  io::agree_on_failure(comm, [&] {
    std::map<std::size_t, io::SafetensorsWriter> writers;
    for (std::size_t i = 0; i < plan.items.size(); ++i) {
      if (owner[i] != rank) continue;
      const Item& item = plan.items[i];
      auto writer = writers.find(item.shard);
      if (writer == writers.end()) {
        writer = writers.emplace(item.shard, io::SafetensorsWriter(
            options.output / io::safetensors_shard_name(item.shard + 1, plan.shards.size()), plan.shards[item.shard],
            io::SafetensorsWriter::Mode::open_existing)).first;
      }
      export_item(*reader, item, options.chunk_bytes, writer->second, progress);
    }
    for (auto& [shard, writer] : writers) writer.close();
  });
  io::agree_on_failure(comm, [&] { reader->verify(comm); });
  io::agree_on_failure(comm, [&] {
    if (rank != 0) return;
    io::write_safetensors_index(options.output, plan.data_bytes, plan.weight_map);
    HfConfig config;
    config.args = reader->args();
    config.fp8 = options.dtype == ExportDType::fp8;
    config.max_position_embeddings = static_cast<std::int64_t>(
        static_cast<double>(config.args.original_seq_len) * std::max(1.0, config.args.yarn ? config.args.rope_factor : 1.0));
    std::ofstream stream(options.output / "config.json");
    stream << hf_config_json(config);
    stream.close();
    DSV3_CHECK(stream, "{}: cannot write", (options.output / "config.json").string());
  });
  ConversionReport report{total, static_cast<std::int64_t>(plan.items.size()), progress.seconds()};
  if (rank == 0 && options.progress)
    log(LogLevel::info, "export: {:.2f} GB of f32 in {:.1f} s ({:.2f} GB/s on {} rank(s)) -> {} shard(s) in {}",
        gigabytes(total), report.seconds, gigabytes(total) / report.seconds, ranks, plan.shards.size(),
        options.output.string());
  return report;
}

}  // namespace dsv3::hf
