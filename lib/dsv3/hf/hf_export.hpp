// dsv3 checkpoint → Hugging Face checkpoint: safetensors shards of at most `shard_bytes`, the
// model.safetensors.index.json and config.json, loadable by transformers' DeepseekV3ForCausalLM.
//
// dtypes: f32 or bf16 for every tensor (e_score_correction_bias always F32), or the released FP8 format: every
// linear weight inside the layers except the router gate as F8_E4M3 with F32 128×128 weight_scale_inv, the rest
// BF16. Parallel as the import: the HF tensors split over the ranks in runs of about equal bytes, each rank reads
// its datasets from the HDF5 file in chunks and writes them at their offsets in the shards, which rank 0 created
// (header written, size set) beforehand; the checkpoint's checksums are verified over what the ranks read.
#pragma once

#include "dsv3/hf/hf_import.hpp"

#include <mpi.h>

#include <cstdint>
#include <filesystem>

namespace dsv3::hf {

enum class ExportDType { f32, bf16, fp8 };

struct ExportOptions {
  std::filesystem::path checkpoint;  // a dsv3 checkpoint (model-only or full: only /model is read)
  std::filesystem::path output;      // a folder, created when missing
  ExportDType dtype = ExportDType::bf16;
  std::uint64_t shard_bytes = 5'000'000'000;
  std::int64_t chunk_bytes = 64 << 20;
  bool progress = true;
};

// Collective over `comm`; an error on any rank is thrown on every rank.
ConversionReport export_hf_checkpoint(const ExportOptions& options, MPI_Comm comm);

}  // namespace dsv3::hf
