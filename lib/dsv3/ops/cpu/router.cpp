#include "dsv3/ops/cpu/router.hpp"

#include "dsv3/ops/cpu/dispatch.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace dsv3::ops::cpu {

namespace {

// chosen[0, count) = the indices of the `count` largest values among those still available, largest first, ties
// to the lower index, NaN read as −∞ (so a NaN score is chosen only when nothing else is left, as on CUDA); each
// pick is cleared from `available`. One scan per pick: count is at most top_k or top_groups and n a few hundred.
template <class T>
void take_largest(const T* values, std::int64_t n, std::uint8_t* available, std::int64_t count,
                  std::int32_t* chosen) {
  const auto key = [&](std::int64_t i) {
    return std::isnan(values[i]) ? -std::numeric_limits<T>::infinity() : values[i];
  };
  for (std::int64_t pick = 0; pick < count; ++pick) {
    std::int64_t best = -1;
    for (std::int64_t i = 0; i < n; ++i) {
      if (available[i] && (best < 0 || key(i) > key(best))) best = i;
    }
    available[best] = 0;
    chosen[pick] = static_cast<std::int32_t>(best);
  }
}

// score[e] = softmax or sigmoid of logit[e] over the E experts of one token.
template <class T>
void score_row(T* score, const T* logit, std::int64_t num_experts, RouterScore kind) {
  if (kind == RouterScore::sigmoid) {
    for (std::int64_t e = 0; e < num_experts; ++e) score[e] = T{1} / (T{1} + std::exp(-logit[e]));
    return;
  }
  const T max_logit = *std::max_element(logit, logit + num_experts);
  T sum = 0;
  for (std::int64_t e = 0; e < num_experts; ++e) {
    score[e] = std::exp(logit[e] - max_logit);
    sum += score[e];
  }
  for (std::int64_t e = 0; e < num_experts; ++e) score[e] /= sum;
}

}  // namespace

void router_forward(const Tensor& scores, const Tensor& experts, const Tensor& weights, const Tensor& logits,
                    const Tensor& expert_bias, const RouterOptions& options) {
  const std::int64_t tokens = logits.size(0);
  const std::int64_t num_experts = logits.size(1);
  const std::int64_t top_k = options.top_k;
  const std::int64_t groups = options.n_groups;
  const std::int64_t group_size = num_experts / groups;
  const float* bias = expert_bias.defined() ? expert_bias.data<float>() : nullptr;
  std::int32_t* expert = experts.data<std::int32_t>();
  with_float_type(logits.dtype(), "router_forward", [&]<class T>() {
    const T* logit = logits.data<T>();
    T* score = scores.data<T>();
    T* weight = weights.data<T>();
#pragma omp parallel
    {
      std::vector<T> biased(num_experts);          // [E] the selection scores
      std::vector<std::uint8_t> available(num_experts);
      std::vector<T> group_score(groups);         // [G]
      std::vector<std::uint8_t> group_available(groups);
      std::vector<std::int32_t> kept_groups(options.top_groups);
#pragma omp for
      for (std::int64_t t = 0; t < tokens; ++t) {
        const T* logit_t = logit + t * num_experts;
        T* score_t = score + t * num_experts;
        std::int32_t* expert_t = expert + t * top_k;
        T* weight_t = weight + t * top_k;
        score_row(score_t, logit_t, num_experts, options.score);
        for (std::int64_t e = 0; e < num_experts; ++e) {
          biased[e] = score_t[e] + (bias != nullptr ? static_cast<T>(bias[e]) : T{0});
        }
        std::fill(available.begin(), available.end(), std::uint8_t{1});
        if (groups > 1) {
          // Group score = sum of its two largest biased scores (its only one for groups of one expert).
          for (std::int64_t g = 0; g < groups; ++g) {
            std::int32_t best_two[2];
            const std::int64_t picks = std::min<std::int64_t>(2, group_size);
            take_largest(biased.data() + g * group_size, group_size, available.data() + g * group_size, picks,
                         best_two);
            group_score[g] = 0;
            for (std::int64_t i = 0; i < picks; ++i) group_score[g] += biased[g * group_size + best_two[i]];
          }
          std::fill(group_available.begin(), group_available.end(), std::uint8_t{1});
          take_largest(group_score.data(), groups, group_available.data(), options.top_groups, kept_groups.data());
          // Only the experts of the kept groups stay candidates.
          std::fill(available.begin(), available.end(), std::uint8_t{0});
          for (std::int32_t g : kept_groups) {
            std::fill_n(available.begin() + g * group_size, group_size, std::uint8_t{1});
          }
        }
        take_largest(biased.data(), num_experts, available.data(), top_k, expert_t);

        // The weights are the unbiased scores: the bias steers the choice, never the mix.
        T chosen_sum = 0;
        for (std::int64_t k = 0; k < top_k; ++k) {
          weight_t[k] = score_t[expert_t[k]];
          chosen_sum += weight_t[k];
        }
        for (std::int64_t k = 0; k < top_k; ++k) {
          if (options.route_norm) weight_t[k] /= chosen_sum + static_cast<T>(1e-20);
          weight_t[k] *= static_cast<T>(options.route_scale);
        }
      }
    }
  });
}

void router_backward(const Tensor& dlogits, const Tensor& dweights, const Tensor& scores, const Tensor& experts,
                     const RouterOptions& options, const Tensor& dscores) {
  const std::int64_t tokens = scores.size(0);
  const std::int64_t num_experts = scores.size(1);
  const std::int64_t top_k = options.top_k;
  const std::int32_t* expert = experts.data<std::int32_t>();
  with_float_type(scores.dtype(), "router_backward", [&]<class T>() {
    const T* score = scores.data<T>();
    const T* dweight = dweights.data<T>();
    const T* dscore_direct = dscores.defined() ? dscores.data<T>() : nullptr;  // [T, E] or none
    T* dlogit = dlogits.data<T>();
    const T scale = static_cast<T>(options.route_scale);
#pragma omp parallel for
    for (std::int64_t t = 0; t < tokens; ++t) {
      const T* score_t = score + t * num_experts;
      const std::int32_t* expert_t = expert + t * top_k;
      const T* dweight_t = dweight + t * top_k;
      T* dscore_t = dlogit + t * num_experts;  // first dL/dscore, then turned into dL/dlogit in place

      // For the chosen scores u_k, weight_k = scale · u_k / D with D = Σ u + ε when route_norm (else D = 1), so
      // dL/du_j = scale · (dw_j − Σ_k dw_k · u_k / D) / D; the route_norm term vanishes without normalisation.
      if (dscore_direct != nullptr) {
        std::copy_n(dscore_direct + t * num_experts, num_experts, dscore_t);
      } else {
        std::fill(dscore_t, dscore_t + num_experts, T{0});
      }
      T chosen_sum = 0;
      T dweight_dot_score = 0;
      for (std::int64_t k = 0; k < top_k; ++k) {
        chosen_sum += score_t[expert_t[k]];
        dweight_dot_score += dweight_t[k] * score_t[expert_t[k]];
      }
      const T denominator = options.route_norm ? chosen_sum + static_cast<T>(1e-20) : T{1};
      const T shift = options.route_norm ? dweight_dot_score / denominator : T{0};
      for (std::int64_t k = 0; k < top_k; ++k) {
        dscore_t[expert_t[k]] += scale * (dweight_t[k] - shift) / denominator;
      }

      // Through the score function: softmax ds/dz = diag(s) − s·sᵀ, sigmoid ds/dz = s·(1 − s).
      if (options.score == RouterScore::softmax) {
        T dscore_dot_score = 0;
        for (std::int64_t e = 0; e < num_experts; ++e) dscore_dot_score += dscore_t[e] * score_t[e];
        for (std::int64_t e = 0; e < num_experts; ++e) dscore_t[e] = score_t[e] * (dscore_t[e] - dscore_dot_score);
      } else {
        for (std::int64_t e = 0; e < num_experts; ++e) dscore_t[e] *= score_t[e] * (T{1} - score_t[e]);
      }
    }
  });
}

}  // namespace dsv3::ops::cpu
