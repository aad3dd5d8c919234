// The Hugging Face names of dsv3's checkpoint datasets (REFERENCE.md §4 "Names").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dsv3::hf {

// The HF tensors that hold dsv3 dataset `name` (train::model_datasets): one, or for the stacked routed experts
// (layers.<l>.moe.experts.w1/w2/w3 [E, out, in]) one per expert, in expert order. An error for a name that has no
// HF counterpart.
std::vector<std::string> hf_tensor_names(const std::string& name, std::int64_t n_routed_experts);

// "<weight>_scale_inv": the F32 block scales of an F8_E4M3 weight.
std::string hf_scale_name(const std::string& weight);

// The layer index of "model.layers.<l>.…", or nullopt for a tensor outside the layers.
std::optional<std::int64_t> hf_layer_of(const std::string& name);

}  // namespace dsv3::hf
