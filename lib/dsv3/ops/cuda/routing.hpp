// CUDA kernels of ops/router.hpp and ops/permute.hpp: the MoE router and the token permutation around the
// routed experts. Arguments are checked by the dispatch; tokens T, experts E, top_k K, features D.
#pragma once

#include "dsv3/ops/cuda/backend.hpp"

namespace dsv3::cuda {

struct RouterShape {
  std::int64_t tokens = 0, experts = 0, top_k = 0, groups = 1, top_groups = 1;
  bool sigmoid = false;
  bool route_norm = false;
  double route_scale = 1.0;
};

// scores, weights: storage `type`; logits likewise; expert_bias f32 [E] or null; experts i32 [T, K].
void router_forward(void* scores, std::int32_t* experts, void* weights, const void* logits, const float* expert_bias,
                    Float type, const RouterShape& shape, void* stream);
// dscores may be null.
void router_backward(void* dlogits, const void* dweights, const void* scores, const std::int32_t* experts,
                     const void* dscores, Float type, const RouterShape& shape, void* stream);

// source_rows i32 [T·K], slot_rows i32 [T, K]; x, dx: [T, D]; y, dy, expert_out, dexpert_out: [T·K, D];
// weights, dweights: [T, K].
void permute_forward(void* y, const void* x, const std::int32_t* source_rows, Float type, std::int64_t rows,
                     std::int64_t features, void* stream);
void permute_backward(void* dx, const void* dy, const std::int32_t* slot_rows, Float type, std::int64_t tokens,
                      std::int64_t top_k, std::int64_t features, void* stream);
void unpermute_forward(void* y, const void* expert_out, const void* weights, const std::int32_t* slot_rows,
                       Float type, std::int64_t tokens, std::int64_t top_k, std::int64_t features, void* stream);
void unpermute_backward(void* dexpert_out, void* dweights, const void* dy, const void* expert_out, const void* weights,
                        const std::int32_t* slot_rows, Float type, std::int64_t tokens, std::int64_t top_k,
                        std::int64_t features, void* stream);

}  // namespace dsv3::cuda
