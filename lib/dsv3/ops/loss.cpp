#include "dsv3/ops/loss.hpp"

#include "dsv3/ops/cpu/loss.hpp"
#include "dsv3/ops/cuda/loss.hpp"
#include "dsv3/ops/cuda_dispatch.hpp"

namespace dsv3::ops {

namespace {

// lse and loss: f32 on CUDA whatever the logits' dtype (bf16 statistics would lose the precision they exist for),
// the logits' dtype on the CPU.
void expect_statistic_dtype(const char* op, const char* name, const Tensor& statistic, const Tensor& logits) {
  if (logits.device() == Device::cuda) {
    expect_dtype(op, name, statistic, DType::f32);
  } else {
    expect_same_dtype(op, {&logits, &statistic});
  }
}

// logits: [N, V] with V >= 1, targets: i32/i64 [N], lse: [N].
void check_cross_entropy(const char* op, const Tensor& logits, const Tensor& targets, const Tensor& lse) {
  expect_float(op, "logits", logits);
  expect_rank(op, "logits", logits, 2);
  DSV3_CHECK(logits.size(1) >= 1, "{}: logits is {}, expected at least one class", op, logits.describe());
  expect_index(op, "targets", targets);
  expect_shape(op, "targets", targets, Shape{logits.size(0)});
  expect_shape(op, "lse", lse, Shape{logits.size(0)});
  expect_statistic_dtype(op, "lse", lse, logits);
  expect_same_device(op, {&logits, &lse, &targets});
}

}  // namespace

void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& targets,
                           std::int64_t ignore_index, Stream stream) {
  const char* op = "cross_entropy_forward";
  check_cross_entropy(op, logits, targets, lse);
  expect_shape(op, "loss", loss, Shape{});
  expect_statistic_dtype(op, "loss", loss, logits);
  expect_same_device(op, {&logits, &loss});
  if (logits.device() == Device::cuda) {
    return DSV3_ON_CUDA(op, cuda::cross_entropy_forward(loss.data<float>(), lse.data<float>(), logits.raw(),
                                                        cuda_float(op, "logits", logits), targets.raw(),
                                                        cuda_index(op, "targets", targets), logits.size(0),
                                                        logits.size(1), ignore_index, stream.handle));
  }
  cpu::cross_entropy_forward(loss, lse, logits, targets, ignore_index);
}

void cross_entropy_backward(const Tensor& dlogits, const Tensor& logits, const Tensor& lse, const Tensor& targets,
                            double dloss, std::int64_t ignore_index, Stream stream) {
  const char* op = "cross_entropy_backward";
  check_cross_entropy(op, logits, targets, lse);
  expect_shape(op, "dlogits", dlogits, logits.shape());
  expect_same_dtype(op, {&logits, &dlogits});
  expect_same_device(op, {&logits, &dlogits});
  if (logits.device() == Device::cuda) {
    return DSV3_ON_CUDA(
        op, cuda::cross_entropy_backward(dlogits.raw(), logits.raw(), cuda_float(op, "logits", logits),
                                         lse.data<float>(), targets.raw(), cuda_index(op, "targets", targets),
                                         logits.size(0), logits.size(1), dloss, ignore_index, stream.handle));
  }
  cpu::cross_entropy_backward(dlogits, logits, lse, targets, dloss, ignore_index);
}

std::int64_t count_valid_targets(const Tensor& targets, std::int64_t ignore_index) {
  const char* op = "count_valid_targets";
  expect_index(op, "targets", targets);
  if (targets.device() == Device::cuda) {
    // Counted on the device (default stream), only the count read back: it divides the loss on the host.
    std::int64_t count = 0;
    DSV3_ON_CUDA(op, count = cuda::count_valid_targets(targets.raw(), cuda_index(op, "targets", targets),
                                                       targets.numel(), ignore_index, nullptr));
    return count;
  }
  return cpu::count_valid_targets(targets, ignore_index);
}

}  // namespace dsv3::ops
