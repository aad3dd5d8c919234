// Helpers of the trainer tests: synthetic token datasets, a model small enough to train in seconds, and a job
// config around them.
#pragma once

#include "dsv3/io/token_dataset.hpp"
#include "dsv3/model/model_args.hpp"
#include "dsv3/train/job_config.hpp"
#include "dsv3/train/trainer.hpp"

#include <mpi.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace dsv3::testing {

inline constexpr std::int32_t kBos = 0;
inline constexpr std::int32_t kEos = 1;
inline constexpr std::int64_t kTinyVocab = 64;

// Writes `documents` (token ids without BOS/EOS, each in [2, kTinyVocab)) as a token dataset; rank 0 of
// MPI_COMM_WORLD writes, every rank returns once the file is there.
inline void write_documents(const std::filesystem::path& path,
                            const std::vector<std::vector<std::int32_t>>& documents) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    std::vector<std::int32_t> tokens;
    std::vector<std::int64_t> lengths;
    for (const auto& document : documents) {
      tokens.push_back(kBos);
      tokens.insert(tokens.end(), document.begin(), document.end());
      tokens.push_back(kEos);
      lengths.push_back(static_cast<std::int64_t>(document.size()) + 2);
    }
    io::TokenDatasetMetadata metadata;
    metadata.tokenizer = {"synthetic-test-tokenizer", kTinyVocab, kBos, kEos};
    metadata.source = "dsv3 trainer tests";
    io::write_token_dataset(path, MPI_COMM_SELF, metadata, tokens, lengths);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// Documents of varying length, each counting up from a varying start modulo the vocabulary: what one token
// says about the next is all there is to learn, and learning it takes the loss far below the unigram entropy.
inline std::vector<std::vector<std::int32_t>> counting_documents(int count) {
  std::vector<std::vector<std::int32_t>> documents;
  for (int d = 0; d < count; ++d) {
    std::vector<std::int32_t> document;
    const int length = 20 + (d * 7) % 30;
    for (int i = 0; i < length; ++i) document.push_back(2 + (d * 5 + i) % static_cast<int>(kTinyVocab - 2));
    documents.push_back(document);
  }
  return documents;
}

// Two layers (one dense, one MoE with 4 experts, top 2, a shared expert), 2 heads of MLA in 32 dimensions.
inline model::ModelArgs tiny_model(std::int64_t seq_len) {
  model::ModelArgs args;
  args.flavor = "tiny";
  args.vocab_size = kTinyVocab;
  args.dim = 32;
  args.inter_dim = 64;
  args.moe_inter_dim = 16;
  args.n_layers = 2;
  args.n_dense_layers = 1;
  args.n_heads = 2;
  args.n_routed_experts = 4;
  args.n_shared_experts = 1;
  args.n_activated_experts = 2;
  args.kv_lora_rank = 16;
  args.qk_nope_head_dim = 8;
  args.qk_rope_head_dim = 8;
  args.v_head_dim = 8;
  args.max_seq_len = seq_len;
  return args;
}

// A job on `dataset` writing under `dump_folder`, with `overrides` (--section.key=value) applied last. On the CPU
// reference backend (the oracle of these tests, f64 included) even where a GPU is visible.
inline train::JobConfig tiny_job(const std::filesystem::path& dataset, const std::filesystem::path& dump_folder,
                                 const std::vector<std::string>& overrides = {}) {
  std::vector<std::string> arguments = {"--training.dataset_path=" + dataset.string(),
                                        "--job.dump_folder=" + dump_folder.string(),
                                        "--training.seq_len=16",
                                        "--training.local_batch_size=2",
                                        "--training.steps=8",
                                        "--training.seed=7",
                                        "--lr_scheduler.warmup_steps=2",
                                        "--optimizer.lr=3e-3",
                                        "--metrics.peak_tflops=1",
                                        "--training.device=cpu"};
  arguments.insert(arguments.end(), overrides.begin(), overrides.end());
  return train::parse_job_config(arguments);
}

// Every parameter of an f32 trainer gathered at its logical shape, in spec order, then the expert biases:
// collective over the trainer's ranks, the same on each.
inline std::vector<float> full_weights(train::Trainer& trainer) {
  std::vector<float> weights;
  for (const model::ParameterSpec& spec : trainer.data_parallel().layout().specs()) {
    const Tensor full = trainer.data_parallel().full_parameter(spec.name);
    weights.insert(weights.end(), full.data<float>(), full.data<float>() + full.numel());
  }
  for (const Tensor& bias : trainer.model().expert_biases()) {
    if (bias.defined()) weights.insert(weights.end(), bias.data<float>(), bias.data<float>() + bias.numel());
  }
  return weights;
}

}  // namespace dsv3::testing
