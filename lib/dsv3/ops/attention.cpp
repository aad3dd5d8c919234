#include "dsv3/ops/attention.hpp"

#include "dsv3/ops/cpu/attention.hpp"
#include "dsv3/ops/cuda/attention.hpp"
#include "dsv3/ops/cuda_dispatch.hpp"

#include <cmath>

namespace dsv3::ops {

namespace {

// Checks q, k, v, out, lse, document_ids and the options; q fixes [B, S, H, Dqk], v's last extent fixes Dv.
void check_attention(const char* op, const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                     const Tensor& v, const Tensor& document_ids, const AttentionOptions& options) {
  expect_float(op, "q", q);
  expect_rank(op, "q", q, 4);
  expect_shape(op, "k", k, q.shape());
  expect_rank(op, "v", v, 4);
  const std::int64_t batch = q.size(0), seq = q.size(1), heads = q.size(2);
  expect_shape(op, "v", v, Shape{batch, seq, heads, v.size(3)});
  expect_shape(op, "out", out, v.shape());
  expect_shape(op, "lse", lse, Shape{batch, heads, seq});
  expect_same_dtype(op, {&q, &k, &v, &out});
  // lse is a softmax statistic: f32 on CUDA whatever the storage, q's dtype on the CPU.
  if (q.device() == Device::cuda) {
    expect_dtype(op, "lse", lse, DType::f32);
  } else {
    expect_same_dtype(op, {&q, &lse});
  }
  expect_same_device(op, {&q, &k, &v, &out, &lse, &document_ids});
  DSV3_CHECK(options.scale > 0.0 && std::isfinite(options.scale), "{}: scale is {}, expected a finite value > 0",
             op, options.scale);
  if (options.mask == AttentionMask::document_causal) {
    expect_dtype(op, "document_ids", document_ids, DType::i32);
    expect_shape(op, "document_ids", document_ids, Shape{batch, seq});
  } else {
    // Ids that the causal mask would ignore are most likely a caller's mistaken mask.
    DSV3_CHECK(!document_ids.defined(), "{}: document_ids {} given with the causal mask (only document_causal "
               "uses them)", op, document_ids.describe());
  }
}

// The kernels' view of the checked tensors.
[[maybe_unused]] cuda::AttentionShape cuda_shape(const Tensor& q, const Tensor& v, const Tensor& document_ids,
                                                 const AttentionOptions& options) {
  return {.batch = q.size(0),
          .seq = q.size(1),
          .heads = q.size(2),
          .qk_dim = q.size(3),
          .v_dim = v.size(3),
          .scale = options.scale,
          .document_ids =
              options.mask == AttentionMask::document_causal ? document_ids.data<std::int32_t>() : nullptr};
}

}  // namespace

void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& document_ids, const AttentionOptions& options, Stream stream) {
  const char* op = "attention_forward";
  check_attention(op, out, lse, q, k, v, document_ids, options);
  if (q.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::attention_forward(out.raw(), lse.data<float>(), q.raw(), k.raw(), v.raw(),
                                                    cuda_float(op, "q", q),
                                                    cuda_shape(q, v, document_ids, options), stream.handle));
  }
  if (q.device() != Device::cpu) unsupported_device(op, q.device());
  cpu::attention_forward(out, lse, q, k, v, document_ids, options);
}

void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& document_ids, const AttentionOptions& options, Stream stream) {
  const char* op = "attention_backward";
  check_attention(op, out, lse, q, k, v, document_ids, options);
  expect_shape(op, "dout", dout, out.shape());
  expect_shape(op, "dq", dq, q.shape());
  expect_shape(op, "dk", dk, k.shape());
  expect_shape(op, "dv", dv, v.shape());
  expect_same_dtype(op, {&q, &dout, &dq, &dk, &dv});
  expect_same_device(op, {&q, &dout, &dq, &dk, &dv});
  if (q.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::attention_backward(dq.raw(), dk.raw(), dv.raw(), dout.raw(), q.raw(), k.raw(),
                                                     v.raw(), out.raw(), lse.data<float>(), cuda_float(op, "q", q),
                                                     cuda_shape(q, v, document_ids, options), stream.handle));
  }
  if (q.device() != Device::cpu) unsupported_device(op, q.device());
  cpu::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, document_ids, options);
}

}  // namespace dsv3::ops
