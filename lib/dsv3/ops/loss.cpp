#include "dsv3/ops/loss.hpp"

#include "dsv3/ops/cpu/loss.hpp"

namespace dsv3::ops {

namespace {

// logits: [N, V] with V >= 1, targets: i32/i64 [N], lse: [N].
void check_cross_entropy(const char* op, const Tensor& logits, const Tensor& targets, const Tensor& lse) {
  expect_float(op, "logits", logits);
  expect_rank(op, "logits", logits, 2);
  DSV3_CHECK(logits.size(1) >= 1, "{}: logits is {}, expected at least one class", op, logits.describe());
  expect_index(op, "targets", targets);
  expect_shape(op, "targets", targets, Shape{logits.size(0)});
  expect_shape(op, "lse", lse, Shape{logits.size(0)});
  expect_same_dtype(op, {&logits, &lse});
  expect_same_device(op, {&logits, &lse, &targets});
}

}  // namespace

void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& targets,
                           std::int64_t ignore_index, Stream) {
  const char* op = "cross_entropy_forward";
  check_cross_entropy(op, logits, targets, lse);
  expect_shape(op, "loss", loss, Shape{});
  expect_same_dtype(op, {&logits, &loss});
  expect_same_device(op, {&logits, &loss});
  if (logits.device() != Device::cpu) unsupported_device(op, logits.device());
  cpu::cross_entropy_forward(loss, lse, logits, targets, ignore_index);
}

void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& lse, const Tensor& targets,
                            double dloss, std::int64_t ignore_index, Stream) {
  const char* op = "cross_entropy_backward";
  check_cross_entropy(op, logits, targets, lse);
  expect_shape(op, "dlogits", dlogits, logits.shape());
  expect_same_dtype(op, {&logits, &dlogits});
  expect_same_device(op, {&logits, &dlogits});
  if (logits.device() != Device::cpu) unsupported_device(op, logits.device());
  cpu::cross_entropy_backward(dlogits, logits, lse, targets, dloss, ignore_index);
}

std::int64_t count_valid_targets(const Tensor& targets, std::int64_t ignore_index) {
  expect_index("count_valid_targets", "targets", targets);
  // The count is wanted on the host (it divides the loss), so device targets are copied over.
  return cpu::count_valid_targets(targets.device() == Device::cpu ? targets : targets.to(Device::cpu), ignore_index);
}

}  // namespace dsv3::ops
