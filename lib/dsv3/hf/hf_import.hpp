// Hugging Face checkpoint → dsv3 model-only checkpoint (DESIGN.md "dsv3_convert_hf", REFERENCE.md §4).
//
// BF16, F32 (and F64) tensors are converted to f32, F8_E4M3 weights dequantized with their 128×128
// weight_scale_inv blocks; routed experts are stacked [E, out, in]; e_score_correction_bias becomes
// /model/layers.<l>.moe.expert_bias; the MTP layers are skipped with a message (dsv3 does not train MTP).
//
// Parallel: the tensors are split over the ranks of `comm` into contiguous runs of about equal bytes (so each rank
// reads its shards sequentially), each rank reads only its tensors, converts them in chunks of `chunk_bytes` and
// writes them into the one HDF5 file with independent transfers; checksums are summed at the end. No rank holds
// more than a chunk of the model. Before anything is written, every tensor the config needs is checked: present,
// of the right shape and a supported dtype, FP8 scales of the right shape; an unexpected tensor is an error too.
#pragma once

#include "dsv3/core/dtype.hpp"
#include "dsv3/model/model_args.hpp"

#include <mpi.h>

#include <cstdint>
#include <filesystem>

namespace dsv3::hf {

struct ImportOptions {
  std::filesystem::path hf_dir;  // config.json + model.safetensors[.index.json] and shards
  std::filesystem::path output;  // the checkpoint, written as <output>.partial and renamed when complete
  DType dtype = DType::f32;      // of the stored parameters: f32 or bf16
  model::MaskType mask = model::MaskType::causal;  // HF models are causal; document_causal for packed training
  std::int64_t chunk_bytes = 64 << 20;             // f32 bytes converted at once
  bool progress = true;                            // rank 0 logs GB/s and ETA
};

struct ConversionReport {
  std::uint64_t bytes = 0;  // input bytes converted, all ranks together
  std::int64_t tensors = 0;
  double seconds = 0.0;
};

// Collective over `comm`; an error on any rank is thrown on every rank.
ConversionReport import_hf_checkpoint(const ImportOptions& options, MPI_Comm comm);

}  // namespace dsv3::hf
