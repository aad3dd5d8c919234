#include "dsv3/model/parameters.hpp"

#include "dsv3/core/error.hpp"

#include <cmath>
#include <random>

namespace dsv3::model {

namespace {

Initializer truncated(double stddev) { return {Initializer::Kind::truncated_normal, stddev, 2.0}; }
Initializer ones() { return {Initializer::Kind::ones, 0.0, 0.0}; }

// torchtitan's depth scaling of output projections: 0.02 / sqrt(2 (layer + 1)).
double depth_std(std::int64_t layer) { return 0.02 / std::sqrt(2.0 * static_cast<double>(layer + 1)); }

// REFERENCE.md §2: std 0.02 for input projections, depth-scaled for output projections; the paper's scheme
// replaces both by 0.006.
struct InitStds {
  double input;
  double output;
};

void add_feed_forward(std::vector<ParameterSpec>& specs, const std::string& prefix, std::int64_t dim,
                      std::int64_t hidden, InitStds stds, std::int64_t experts) {
  const bool stacked = experts > 0;
  const auto shape = [&](std::int64_t rows, std::int64_t columns) {
    return stacked ? Shape{experts, rows, columns} : Shape{rows, columns};
  };
  specs.push_back({prefix + ".w1", shape(hidden, dim), truncated(stds.input), stacked});
  specs.push_back({prefix + ".w2", shape(dim, hidden), truncated(stds.output), stacked});
  specs.push_back({prefix + ".w3", shape(hidden, dim), truncated(stds.output), stacked});
}

}  // namespace

std::vector<ParameterSpec> parameter_specs(const ModelArgs& a) {
  std::vector<ParameterSpec> specs;
  const bool paper = a.init == InitScheme::paper;
  specs.push_back({"tok_embeddings", Shape{a.vocab_size, a.dim},
                   paper ? truncated(0.006) : Initializer{Initializer::Kind::normal, 1.0, 0.0}});
  for (std::int64_t layer = 0; layer < a.n_layers; ++layer) {
    const std::string prefix = "layers." + std::to_string(layer);
    const InitStds stds = paper ? InitStds{0.006, 0.006} : InitStds{0.02, depth_std(layer)};
    const std::string attention = prefix + ".attention";
    specs.push_back({prefix + ".attention_norm", Shape{a.dim}, ones()});
    if (a.q_lora_rank == 0) {
      specs.push_back({attention + ".wq", Shape{a.n_heads * a.qk_head_dim(), a.dim}, truncated(stds.input)});
    } else {
      specs.push_back({attention + ".wq_a", Shape{a.q_lora_rank, a.dim}, truncated(stds.input)});
      specs.push_back({attention + ".q_norm", Shape{a.q_lora_rank}, ones()});
      specs.push_back({attention + ".wq_b", Shape{a.n_heads * a.qk_head_dim(), a.q_lora_rank}, truncated(stds.input)});
    }
    specs.push_back({attention + ".wkv_a", Shape{a.kv_lora_rank + a.qk_rope_head_dim, a.dim}, truncated(stds.input)});
    specs.push_back({attention + ".kv_norm", Shape{a.kv_lora_rank}, ones()});
    specs.push_back({attention + ".wkv_b", Shape{a.n_heads * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank},
                     truncated(stds.input)});
    specs.push_back({attention + ".wo", Shape{a.dim, a.n_heads * a.v_head_dim}, truncated(stds.output)});
    specs.push_back({prefix + ".ffn_norm", Shape{a.dim}, ones()});
    if (!a.is_moe_layer(layer)) {
      add_feed_forward(specs, prefix + ".feed_forward", a.dim, a.inter_dim, stds, 0);
      continue;
    }
    specs.push_back({prefix + ".moe.router.gate", Shape{a.n_routed_experts, a.dim}, truncated(stds.output)});
    add_feed_forward(specs, prefix + ".moe.experts", a.dim, a.moe_inter_dim, stds, a.n_routed_experts);
    if (a.n_shared_experts > 0) {
      add_feed_forward(specs, prefix + ".moe.shared_experts", a.dim, a.moe_inter_dim * a.n_shared_experts, stds, 0);
    }
  }
  specs.push_back({"norm", Shape{a.dim}, ones()});
  const double output_std = paper ? 0.006 : 1.0 / std::sqrt(static_cast<double>(a.dim));
  specs.push_back({"output", Shape{a.vocab_size, a.dim},
                   {Initializer::Kind::truncated_normal, output_std, paper ? 2.0 : 3.0 * output_std}});
  return specs;
}

namespace {

// FNV-1a: a hash of the parameter name that is the same on every compiler and platform.
std::uint64_t stable_hash(std::string_view text) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (const char c : text) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return hash;
}

std::int64_t arena_capacity(const std::vector<ParameterSpec>& specs, DType dtype) {
  std::int64_t capacity = 0;
  for (const auto& spec : specs) capacity += Arena::padded_numel(spec.shape.numel(), dtype);
  return capacity;
}

}  // namespace

ParameterStore::ParameterStore(std::vector<ParameterSpec> specs, DType dtype, Device device)
    : specs_(std::move(specs)),
      params_(arena_capacity(specs_, dtype), dtype, device),
      grads_(arena_capacity(specs_, dtype), dtype, device) {
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    const bool inserted = index_.emplace(specs_[i].name, i).second;
    DSV3_CHECK(inserted, "ParameterStore: parameter '{}' appears twice", specs_[i].name);
    param_tensors_.push_back(params_.take(specs_[i].shape));
    grad_tensors_.push_back(grads_.take(specs_[i].shape));
  }
}

std::size_t ParameterStore::index_of(std::string_view name) const {
  const auto found = index_.find(std::string(name));
  DSV3_CHECK(found != index_.end(), "ParameterStore: no parameter named '{}'", name);
  return found->second;
}

Tensor ParameterStore::param(std::string_view name) const { return param_tensors_[index_of(name)]; }
Tensor ParameterStore::grad(std::string_view name) const { return grad_tensors_[index_of(name)]; }

void ParameterStore::zero_grads() { grads_.flat().zero(); }

void ParameterStore::initialize(std::uint64_t seed) {
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    const ParameterSpec& spec = specs_[i];
    std::mt19937_64 rng(seed ^ stable_hash(spec.name));
    std::normal_distribution<double> normal(0.0, spec.init.stddev);
    Tensor host = Tensor::empty(spec.shape, DType::f64);
    double* values = host.data<double>();
    for (std::int64_t j = 0; j < host.numel(); ++j) {
      switch (spec.init.kind) {
        case Initializer::Kind::ones: values[j] = 1.0; break;
        case Initializer::Kind::zeros: values[j] = 0.0; break;
        case Initializer::Kind::normal: values[j] = normal(rng); break;
        case Initializer::Kind::truncated_normal: {
          double value;
          do value = normal(rng);
          while (std::fabs(value) > spec.init.cutoff);  // resample outside the cut, as trunc_normal_
          values[j] = value;
          break;
        }
      }
    }
    const Tensor& target = param_tensors_[i];
    if (target.dtype() == DType::f64 && target.device() == Device::cpu) {
      target.copy_from(host);
      continue;
    }
    Tensor converted = Tensor::empty(spec.shape, DType::f32);
    for (std::int64_t j = 0; j < host.numel(); ++j) converted.data<float>()[j] = static_cast<float>(values[j]);
    DSV3_CHECK(target.dtype() == DType::f32, "ParameterStore::initialize: parameters are {}, expected f32 or f64",
               dtype_name(target.dtype()));
    target.copy_from(converted);
  }
}

}  // namespace dsv3::model
