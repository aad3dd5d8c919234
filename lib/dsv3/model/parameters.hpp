// The model's parameters: their names, shapes and initialisers (REFERENCE.md §2 "Init", §4 names), held in
// two flat arenas of identical layout — parameters and gradients — so one sweep updates or reduces them all.
#pragma once

#include "dsv3/model/model_args.hpp"
#include "dsv3/tensor/arena.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dsv3::model {

struct Initializer {
  enum class Kind { truncated_normal, normal, ones, zeros };
  Kind kind = Kind::zeros;
  double stddev = 0.0;
  double cutoff = 0.0;  // |value| ≤ cutoff for truncated_normal (absolute, as torch.nn.init.trunc_normal_)
};

struct ParameterSpec {
  std::string name;  // checkpoint name, e.g. "layers.3.moe.experts.w1"
  Shape shape;
  Initializer init;
  bool routed_expert = false;  // sharded over the expert-parallel groups rather than the data-parallel ones
};

// Every trained parameter of the model, in a fixed order (embedding, layers in order, norm, output).
std::vector<ParameterSpec> parameter_specs(const ModelArgs& args);

class ParameterStore {
 public:
  ParameterStore(std::vector<ParameterSpec> specs, DType dtype, Device device = Device::cpu);

  const std::vector<ParameterSpec>& specs() const { return specs_; }
  Tensor param(std::string_view name) const;
  Tensor grad(std::string_view name) const;
  // The whole buffers (alignment padding is zero in both and stays zero).
  const Tensor& flat_params() const { return params_.flat(); }
  const Tensor& flat_grads() const { return grads_.flat(); }

  // Fills each parameter from its initializer with a random stream derived from (seed, name), so the
  // values do not depend on the order of the specs or on how the model is later sharded.
  void initialize(std::uint64_t seed);
  void zero_grads();

 private:
  std::size_t index_of(std::string_view name) const;

  std::vector<ParameterSpec> specs_;
  std::unordered_map<std::string, std::size_t> index_;
  Arena params_;
  Arena grads_;
  std::vector<Tensor> param_tensors_;
  std::vector<Tensor> grad_tensors_;
};

}  // namespace dsv3::model
