#include "dsv3/ops/attention.hpp"

#include "backend_ops.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <optional>
#include <vector>

using namespace dsv3;
using namespace dsv3::testing;
using namespace dsv3::testing::backend;

namespace {

struct Extents {
  std::int64_t batch, seq, heads, qk_dim, v_dim;
};

// Documents of uneven lengths, single tokens among them, some crossing the 64-row tiles; batch row 1 takes the
// lengths in reverse order so the rows differ. The last document runs to the end of the sequence.
Tensor uneven_documents(std::int64_t batch, std::int64_t seq) {
  const std::vector<std::int64_t> lengths = {1, 2, 1, 13, 1, 37, 64, 1, 90, 5};
  std::vector<double> ids;
  for (std::int64_t b = 0; b < batch; ++b) {
    std::vector<double> row;
    for (std::size_t d = 0; d < lengths.size(); ++d) {
      const std::int64_t length = b % 2 == 0 ? lengths[d] : lengths[lengths.size() - 1 - d];
      for (std::int64_t i = 0; i < length && static_cast<std::int64_t>(row.size()) < seq; ++i) {
        row.push_back(static_cast<double>(d));
      }
    }
    row.resize(static_cast<std::size_t>(seq), static_cast<double>(lengths.size()));
    ids.insert(ids.end(), row.begin(), row.end());
  }
  return from_values(Shape{batch, seq}, DType::i32, ids);
}

// Two documents of half the sequence each: tiles inside one document skip the per-element mask, tiles of the
// second half against keys of the first are skipped whole.
Tensor two_documents(std::int64_t batch, std::int64_t seq) {
  std::vector<double> ids;
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t i = 0; i < seq; ++i) ids.push_back(i < seq / 2 ? 0.0 : 1.0);
  }
  return from_values(Shape{batch, seq}, DType::i32, ids);
}

// Forward and backward on CUDA in `dtype` against the CPU reference in f32 on the same (bf16-exact) inputs;
// document_ids undefined for the causal mask.
void check_attention(const Extents& e, DType dtype, const Tensor& document_ids, Rng& rng) {
  const Shape qk_shape{e.batch, e.seq, e.heads, e.qk_dim}, v_shape{e.batch, e.seq, e.heads, e.v_dim};
  const Shape lse_shape{e.batch, e.heads, e.seq};
  // bf16-exact whatever the storage: the kernels multiply in bf16. Scores with a standard deviation of about 1.3,
  // so the softmax is far from uniform.
  const Tensor q = random_representable(qk_shape, DType::bf16, rng, -2.0, 2.0);
  const Tensor k = random_representable(qk_shape, DType::bf16, rng, -2.0, 2.0);
  const Tensor v = random_representable(v_shape, DType::bf16, rng);
  const Tensor dout = random_representable(v_shape, DType::bf16, rng);
  const bool documents = document_ids.defined();
  const ops::AttentionOptions options{
      .scale = 1.0 / std::sqrt(static_cast<double>(e.qk_dim)),
      .mask = documents ? ops::AttentionMask::document_causal : ops::AttentionMask::causal};

  const Tensor out = Tensor::empty(v_shape, DType::f32), lse = Tensor::empty(lse_shape, DType::f32);
  ops::attention_forward(out, lse, q, k, v, document_ids, options);
  const Tensor dq = Tensor::empty(qk_shape, DType::f32), dk = Tensor::empty(qk_shape, DType::f32);
  const Tensor dv = Tensor::empty(v_shape, DType::f32);
  ops::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, document_ids, options);

  const DeviceTensor device_q = DeviceTensor::upload(q, dtype), device_k = DeviceTensor::upload(k, dtype);
  const DeviceTensor device_v = DeviceTensor::upload(v, dtype), device_dout = DeviceTensor::upload(dout, dtype);
  std::optional<DeviceTensor> device_ids;
  if (documents) device_ids = DeviceTensor::upload(document_ids);
  const Tensor ids = documents ? device_ids->tensor() : Tensor();
  const DeviceTensor device_out = DeviceTensor::poisoned(v_shape, dtype);
  const DeviceTensor device_lse = DeviceTensor::poisoned(lse_shape, DType::f32);  // f32 on CUDA for any storage
  ops::attention_forward(device_out, device_lse, device_q, device_k, device_v, ids, options);
  const DeviceTensor device_dq = DeviceTensor::poisoned(qk_shape, dtype);
  const DeviceTensor device_dk = DeviceTensor::poisoned(qk_shape, dtype);
  const DeviceTensor device_dv = DeviceTensor::poisoned(v_shape, dtype);
  ops::attention_backward(device_dq, device_dk, device_dv, device_dout, device_q, device_k, device_v, device_out,
                          device_lse, ids, options);

  const std::string where =
      fmt::format("{} {} B {} S {} H {} Dqk {} Dv {}", dtype_name(dtype), documents ? "document_causal" : "causal",
                  e.batch, e.seq, e.heads, e.qk_dim, e.v_dim);
  // f32 storage: P and dS are rounded to bf16 before their products (relative error up to 2^-9 each), which
  // kNmseTensorCore covers: about 1e-6 on out and dv, up to 5e-6 on dq and dk (each row of dS sums to zero, so its
  // rounding weighs more than P's) for these shapes. bf16 storage adds the outputs' own rounding.
  const double threshold = nmse_threshold(dtype, kNmseTensorCore);
  check_output("attention_forward out " + where, device_out, out, threshold);
  check_output("attention_forward lse " + where, device_lse, lse, kNmseTensorCore);
  check_output("attention_backward dq " + where, device_dq, dq, threshold);
  check_output("attention_backward dk " + where, device_dk, dk, threshold);
  check_output("attention_backward dv " + where, device_dv, dv, threshold);
  if (documents) device_ids->check_guard("document_ids " + where);
}

}  // namespace

TEST_CASE("backend attention: forward and backward against the CPU reference, causal and document_causal") {
  Rng rng(11);
  const std::int64_t seqs[] = {1, 17, 64, 130, 257};
  const std::int64_t head_dims[][2] = {{192, 128}, {48, 32}, {24, 16}, {7, 5}};
  int index = 0;
  for (const DType dtype : kDeviceFloatTypes) {
    for (const bool documents : {false, true}) {
      for (const std::int64_t seq : seqs) {
        for (const auto& dims : head_dims) {
          // Batch 1 or 2 and heads 1 or 3 in turn, so every (seq, dims) pair meets several of them.
          const Extents e{1 + index % 2, seq, index / 2 % 2 == 0 ? 1 : 3, dims[0], dims[1]};
          ++index;
          check_attention(e, dtype, documents ? uneven_documents(e.batch, e.seq) : Tensor(), rng);
        }
      }
    }
    check_attention(Extents{2, 300, 2, 48, 32}, dtype, two_documents(2, 300), rng);
  }
}

TEST_CASE("backend attention: the backward repeats bit for bit") {
  Rng rng(12);
  const Shape qk_shape{2, 130, 3, 48}, v_shape{2, 130, 3, 32};
  const DeviceTensor q = DeviceTensor::upload(random_representable(qk_shape, DType::bf16, rng), DType::bf16);
  const DeviceTensor k = DeviceTensor::upload(random_representable(qk_shape, DType::bf16, rng), DType::bf16);
  const DeviceTensor v = DeviceTensor::upload(random_representable(v_shape, DType::bf16, rng), DType::bf16);
  const DeviceTensor dout = DeviceTensor::upload(random_representable(v_shape, DType::bf16, rng), DType::bf16);
  const ops::AttentionOptions options{.scale = 0.125};
  const DeviceTensor out = DeviceTensor::poisoned(v_shape, DType::bf16);
  const DeviceTensor lse = DeviceTensor::poisoned(Shape{2, 3, 130}, DType::f32);
  ops::attention_forward(out, lse, q, k, v, Tensor(), options);
  Tensor first[3];
  for (int run = 0; run < 2; ++run) {
    const DeviceTensor dq = DeviceTensor::poisoned(qk_shape, DType::bf16);
    const DeviceTensor dk = DeviceTensor::poisoned(qk_shape, DType::bf16);
    const DeviceTensor dv = DeviceTensor::poisoned(v_shape, DType::bf16);
    ops::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, Tensor(), options);
    const DeviceTensor* gradients[] = {&dq, &dk, &dv};
    for (int i = 0; i < 3; ++i) {
      if (run == 0) {
        first[i] = gradients[i]->download();
      } else {
        check_output(fmt::format("attention_backward repeat, gradient {}", i), *gradients[i], first[i], 0.0);
      }
    }
  }
}

TEST_CASE("backend attention: lse must be f32 on CUDA") {
  Rng rng(13);
  const Shape shape{1, 8, 2, 16};
  const DeviceTensor q = DeviceTensor::upload(random_representable(shape, DType::bf16, rng), DType::bf16);
  const DeviceTensor out = DeviceTensor::poisoned(shape, DType::bf16);
  const DeviceTensor lse = DeviceTensor::poisoned(Shape{1, 2, 8}, DType::bf16);
  CHECK_THROWS_WITH_AS(ops::attention_forward(out, lse, q, q, q, Tensor(), {.scale = 0.25}),
                       doctest::Contains("attention_forward: lse is bf16[1, 2, 8]@cuda, expected dtype f32"),
                       dsv3::Error);
}
