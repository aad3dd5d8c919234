// A Hugging Face DeepseekV3 config.json (REFERENCE.md §4) as dsv3 model args, and back.
//
// Read: every field of the 671B config, rope_scaling or the newer rope_parameters (YaRN or none), the FP8
// quantization_config and num_nextn_predict_layers. What dsv3's model cannot reproduce exactly is an error naming
// the field rather than a silently different model: tied embeddings, biases in attention, another activation,
// fewer key/value heads than heads, MoE layers at a frequency other than 1, other RoPE scalings, and YaRN with
// mscale ≠ mscale_all_dim (transformers then scales cos/sin apart from the softmax, which dsv3 does not).
#pragma once

#include "dsv3/model/model_args.hpp"

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>

namespace dsv3::hf {

struct HfConfig {
  model::ModelArgs args;
  std::int64_t mtp_layers = 0;  // num_nextn_predict_layers: layers [n_layers, n_layers + mtp_layers) in the weights
  bool fp8 = false;             // quantization_config: quant_method fp8, fmt e4m3, 128×128 weight blocks
  std::int64_t max_position_embeddings = 4096;
  std::int64_t bos_token_id = 0;
  std::int64_t eos_token_id = 1;
};

// `source` names the file in errors.
HfConfig parse_hf_config(const std::string& text, const std::string& source);
HfConfig read_hf_config(const std::filesystem::path& path);

// The config.json text of `config` for transformers' DeepseekV3ForCausalLM (rope_scaling in the format of the
// released checkpoint, which every transformers version reads).
std::string hf_config_json(const HfConfig& config);

}  // namespace dsv3::hf
