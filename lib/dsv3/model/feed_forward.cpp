#include "dsv3/model/feed_forward.hpp"

#include "dsv3/model/batch_context.hpp"
#include "dsv3/ops/activation.hpp"
#include "dsv3/ops/elementwise.hpp"
#include "dsv3/ops/matmul.hpp"

namespace dsv3::model {

namespace {

// y = x · wᵀ: one weight for all rows, or per expert over its block of rows when offsets are given.
void project_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& expert_offsets) {
  if (expert_offsets.defined()) {
    ops::grouped_linear_forward(y, x, w, expert_offsets);
  } else {
    ops::linear_forward(y, x, w);
  }
}

// dx = dy · w (overwritten, skipped when undefined), dw += dyᵀ · x, plain or grouped as the forward.
void project_backward(const Tensor& dx, const Tensor& dw, const Tensor& dy, const Tensor& x, const Tensor& w,
                      const Tensor& expert_offsets) {
  if (expert_offsets.defined()) {
    ops::grouped_linear_backward(dx, dw, dy, x, w, expert_offsets);
  } else {
    ops::linear_backward(dx, dw, dy, x, w);
  }
}

// H, the hidden width: w1 is [H, D] or [E, H, D].
std::int64_t hidden_width(const FeedForwardWeights& w) { return w.w1.size(w.w1.rank() - 2); }

}  // namespace

void feed_forward_forward(const Tensor& out, FeedForwardRecord& record, const Tensor& x, const FeedForwardWeights& w,
                          const Tensor& expert_offsets) {
  DSV3_CHECK(x.defined() && x.rank() == 2, "feed_forward_forward: x is {}, expected [rows, dim]",
             x.defined() ? x.describe() : "undefined");
  DSV3_CHECK(w.w1.defined() && w.w2.defined() && w.w3.defined(), "feed_forward_forward: weights are not bound");
  const Shape hidden_shape{x.size(0), hidden_width(w)};  // [R, H]
  const Tensor& gate = ensure_tensor(record.gate, hidden_shape, x.dtype(), x.device());
  const Tensor& up = ensure_tensor(record.up, hidden_shape, x.dtype(), x.device());
  const Tensor& hidden = ensure_tensor(record.hidden, hidden_shape, x.dtype(), x.device());
  project_forward(gate, x, w.w1, expert_offsets);
  project_forward(up, x, w.w3, expert_offsets);
  ops::swiglu_forward(hidden, gate, up);
  project_forward(out, hidden, w.w2, expert_offsets);
}

void feed_forward_backward(const Tensor& dx, const Tensor& dout, const FeedForwardRecord& record, const Tensor& x,
                           const FeedForwardWeights& w, const FeedForwardWeights& grads, const Tensor& expert_offsets) {
  DSV3_CHECK(record.hidden.defined(), "feed_forward_backward: the record is empty; run feed_forward_forward first");
  const auto scratch = [&](const Shape& shape) { return Tensor::empty(shape, x.dtype(), x.device()); };
  const Tensor dhidden = scratch(record.hidden.shape());  // [R, H]
  project_backward(dhidden, grads.w2, dout, record.hidden, w.w2, expert_offsets);
  const Tensor dgate = scratch(record.gate.shape());  // [R, H]
  const Tensor dup = scratch(record.up.shape());      // [R, H]
  ops::swiglu_backward(dgate, dup, dhidden, record.gate, record.up);
  // x feeds both w1 and w3: dx = dgate · w1 + dup · w3, the second through a scratch since products overwrite.
  project_backward(dx, grads.w1, dgate, x, w.w1, expert_offsets);
  const Tensor dx_up = dx.defined() ? scratch(x.shape()) : Tensor{};  // [R, D]
  project_backward(dx_up, grads.w3, dup, x, w.w3, expert_offsets);
  if (dx.defined()) ops::add(dx, dx, dx_up);
}

}  // namespace dsv3::model
