// Communicator: the collectives every parallel feature is written against (DESIGN.md "Parallelism"), one
// interface with an MPI implementation for CPU tensors and an NCCL one for CUDA tensors. Every call is
// asynchronous: it starts the operation and returns a Request; the buffers must stay alive and untouched until
// the request is waited on. Calls on one communicator complete in the order they were started.
//
// Sizes are in elements of the tensors' dtype. Every tensor is contiguous (dsv3 tensors always are), and the
// ranks of a group must call the same collectives in the same order with matching sizes and dtypes.
// Reductions take f32, f64, i32 and i64 (reductions across ranks run in fp32 or wider: reduce an f32 copy of
// bf16 data); data movement takes every dtype. A wrong call throws dsv3::Error on the calling rank before it
// communicates.
#pragma once

#include "dsv3/tensor/tensor.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace dsv3::comm {

enum class ReduceOp { sum, max, min };

// One operation in flight. wait() blocks until the buffers may be reused; errors surface as dsv3::Error there.
class PendingOperation {
 public:
  virtual ~PendingOperation() = default;
  virtual void wait() = 0;
  virtual bool test() = 0;  // true once complete (then wait() returns at once)
};

// A move-only handle on one operation; an empty Request is complete. Destroying a Request that was never
// waited on waits for it, so a buffer is never freed under a running collective.
class Request {
 public:
  Request() = default;
  explicit Request(std::unique_ptr<PendingOperation> operation) : operation_(std::move(operation)) {}
  Request(Request&&) noexcept = default;
  Request& operator=(Request&& other) noexcept {
    if (this != &other) {
      finish_quietly();
      operation_ = std::move(other.operation_);
    }
    return *this;
  }
  ~Request() { finish_quietly(); }

  void wait() {
    if (operation_) {
      operation_->wait();
      operation_.reset();
    }
  }
  bool test() { return !operation_ || operation_->test(); }

 private:
  void finish_quietly() noexcept {
    try {
      wait();
    } catch (...) {  // a destructor must not throw; the error was the caller's to collect with wait()
    }
  }

  std::unique_ptr<PendingOperation> operation_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // the group it spans, for messages: "dp_shard", "ep", "world"

  // data ← op over the group of data (in place).
  virtual Request all_reduce(const Tensor& data, ReduceOp op) = 0;
  // input: size()·n elements, the rank-r block reduced over the group lands in rank r's output (n elements).
  virtual Request reduce_scatter(const Tensor& output, const Tensor& input, ReduceOp op) = 0;
  // input: n elements; output: size()·n elements, rank r's input at block r. input may be this rank's own block
  // of output (in place); otherwise, as for every call, output and input must not overlap.
  virtual Request all_gather(const Tensor& output, const Tensor& input) = 0;
  // input holds send_counts[r] elements for each rank r, in rank order; output receives recv_counts[r] from
  // each rank r, in rank order. Both count lists have size() entries.
  virtual Request all_to_all_v(const Tensor& output, std::span<const std::int64_t> recv_counts, const Tensor& input,
                               std::span<const std::int64_t> send_counts) = 0;
  virtual Request broadcast(const Tensor& data, int root) = 0;
  virtual Request send(const Tensor& data, int peer, int tag) = 0;
  virtual Request recv(const Tensor& data, int peer, int tag) = 0;
  virtual void barrier() = 0;
};

}  // namespace dsv3::comm
