#include "dsv3/comm/mpi_communicator.hpp"

#include "dsv3/comm/checks.hpp"
#include "dsv3/core/error.hpp"

#include <algorithm>
#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv3::comm {

namespace {

void check_mpi(int code, std::string_view group, std::string_view call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  fail("comm {} (MPI): {} failed: {}", group, call, std::string_view(text, static_cast<std::size_t>(length)));
}

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// One element as MPI sees it. The reducible dtypes map to their arithmetic types; bf16 and fp8 only move, as
// 2- and 1-byte words (the checks reject reducing them before this is reached).
MPI_Datatype element_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    case DType::i32:
      return MPI_INT32_T;
    case DType::i64:
      return MPI_INT64_T;
    case DType::bf16:
      return MPI_UINT16_T;
    case DType::fp8_e4m3:
      return MPI_UINT8_T;
  }
  fail("MPI communicator: unknown dtype {}", static_cast<int>(dtype));
}

MPI_Op reduction(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return MPI_SUM;
    case ReduceOp::max:
      return MPI_MAX;
    case ReduceOp::min:
      return MPI_MIN;
  }
  fail("MPI communicator: unknown reduce op {}", static_cast<int>(op));
}

// Calls start(offset, count) for consecutive pieces of at most max_count elements covering [0, total).
template <class Start>
void for_each_chunk(std::int64_t total, std::int64_t max_count, Start&& start) {
  for (std::int64_t offset = 0; offset < total; offset += max_count) {
    start(offset, static_cast<int>(std::min(max_count, total - offset)));
  }
}

// Address of element `index` of a tensor.
void* element(const Tensor& tensor, std::int64_t index) {
  return static_cast<std::byte*>(tensor.raw()) + index * static_cast<std::int64_t>(dtype_size(tensor.dtype()));
}

// The MPI requests of one call. It holds the tensors they read and write, so their memory outlives the
// operation even if the caller drops its own handles first.
class MpiOperation final : public PendingOperation {
 public:
  MpiOperation(std::string_view group, std::string_view call, std::vector<Tensor> buffers)
      : group_(group), call_(call), buffers_(std::move(buffers)) {}

  // Runs one MPI_I* call, start(&request), and keeps its request.
  template <class Start>
  void start(Start&& start_call) {
    MPI_Request request = MPI_REQUEST_NULL;
    check_mpi(start_call(&request), group_, call_);
    requests_.push_back(request);
  }

  void wait() override {
    check_mpi(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE), group_, call_);
    requests_.clear();
    buffers_.clear();
  }

  bool test() override {
    int done = 0;
    check_mpi(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE), group_,
              call_);
    return done != 0;
  }

 private:
  std::string group_;
  std::string_view call_;  // a literal
  std::vector<MPI_Request> requests_;
  std::vector<Tensor> buffers_;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, std::string name, std::int64_t max_count)
      : name_(std::move(name)), max_count_(max_count) {
    DSV3_CHECK(1 <= max_count && max_count <= kMpiMaxCount, "comm {} (MPI): max_count {} outside [1, {}]", name_,
               max_count, kMpiMaxCount);
    check_mpi(MPI_Comm_dup(comm, &comm_), name_, "MPI_Comm_dup");
    // Errors come back as codes and become dsv3::Error naming the group, instead of aborting inside MPI.
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    int* tag_upper_bound = nullptr;
    int found = 0;
    MPI_Comm_get_attr(comm_, MPI_TAG_UB, &tag_upper_bound, &found);
    reserved_tag_ = found ? *tag_upper_bound : 32767;  // MPI guarantees at least 32767
  }

  ~MpiCommunicator() override {
    if (!mpi_finalized()) MPI_Comm_free(&comm_);
  }

  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return name_; }

  Request all_reduce(const Tensor& data, ReduceOp op) override {
    detail::check_all_reduce(info(), data);
    auto operation = std::make_unique<MpiOperation>(name_, "all_reduce", std::vector{data});
    const MPI_Datatype type = element_type(data.dtype());
    for_each_chunk(data.numel(), max_count_, [&](std::int64_t offset, int count) {
      operation->start([&](MPI_Request* request) {
        return MPI_Iallreduce(MPI_IN_PLACE, element(data, offset), count, type, reduction(op), comm_, request);
      });
    });
    return Request(std::move(operation));
  }

  Request reduce_scatter(const Tensor& output, const Tensor& input, ReduceOp op) override {
    detail::check_reduce_scatter(info(), output, input);
    auto operation = std::make_unique<MpiOperation>(name_, "reduce_scatter", std::vector{output, input});
    const MPI_Datatype type = element_type(input.dtype());
    const std::int64_t n = output.numel();
    if (n <= max_count_) {
      operation->start([&](MPI_Request* request) {
        return MPI_Ireduce_scatter_block(input.raw(), output.raw(), static_cast<int>(n), type, reduction(op), comm_,
                                         request);
      });
    } else {  // too many elements for one int count: reduce each rank's block onto it, piece by piece
      for (int root = 0; root < size_; ++root) {
        for_each_chunk(n, max_count_, [&](std::int64_t offset, int count) {
          operation->start([&](MPI_Request* request) {
            void* result = root == rank_ ? element(output, offset) : nullptr;
            return MPI_Ireduce(element(input, root * n + offset), result, count, type, reduction(op), root, comm_,
                               request);
          });
        });
      }
    }
    return Request(std::move(operation));
  }

  Request all_gather(const Tensor& output, const Tensor& input) override {
    const bool in_place = detail::check_all_gather(info(), output, input);
    auto operation = std::make_unique<MpiOperation>(name_, "all_gather", std::vector{output, input});
    const MPI_Datatype type = element_type(input.dtype());
    const std::int64_t n = input.numel();
    if (n <= max_count_) {
      operation->start([&](MPI_Request* request) {
        return MPI_Iallgather(in_place ? MPI_IN_PLACE : input.raw(), static_cast<int>(n), type, output.raw(),
                              static_cast<int>(n), type, comm_, request);
      });
    } else {  // too many elements for one int count: each rank broadcasts its block, piece by piece
      if (!in_place)
        output.view(Shape{output.numel()}).rows(rank_ * n, (rank_ + 1) * n).copy_from(input.view(Shape{n}));
      for (int root = 0; root < size_; ++root) {
        for_each_chunk(n, max_count_, [&](std::int64_t offset, int count) {
          operation->start([&](MPI_Request* request) {
            return MPI_Ibcast(element(output, root * n + offset), count, type, root, comm_, request);
          });
        });
      }
    }
    return Request(std::move(operation));
  }

  // Point-to-point pairs rather than MPI_Ialltoallv: its int counts and displacements cannot address more than
  // 2³¹ elements, and a fallback for large counts could not be chosen alike on every rank without first
  // exchanging the counts. (Open MPI's own alltoallv is this linear exchange.) The messages use a tag that
  // send() and recv() do not accept, and MPI's non-overtaking rule keeps successive exchanges apart.
  Request all_to_all_v(const Tensor& output, std::span<const std::int64_t> recv_counts, const Tensor& input,
                       std::span<const std::int64_t> send_counts) override {
    detail::check_all_to_all_v(info(), output, recv_counts, input, send_counts);
    auto operation = std::make_unique<MpiOperation>(name_, "all_to_all_v", std::vector{output, input});
    const MPI_Datatype type = element_type(input.dtype());
    std::int64_t recv_offset = 0;
    for (int peer = 0; peer < size_; ++peer) {
      for_each_chunk(recv_counts[peer], max_count_, [&](std::int64_t offset, int count) {
        operation->start([&](MPI_Request* request) {
          return MPI_Irecv(element(output, recv_offset + offset), count, type, peer, reserved_tag_, comm_, request);
        });
      });
      recv_offset += recv_counts[peer];
    }
    std::int64_t send_offset = 0;
    for (int peer = 0; peer < size_; ++peer) {
      for_each_chunk(send_counts[peer], max_count_, [&](std::int64_t offset, int count) {
        operation->start([&](MPI_Request* request) {
          return MPI_Isend(element(input, send_offset + offset), count, type, peer, reserved_tag_, comm_, request);
        });
      });
      send_offset += send_counts[peer];
    }
    return Request(std::move(operation));
  }

  Request broadcast(const Tensor& data, int root) override {
    detail::check_broadcast(info(), data, root);
    auto operation = std::make_unique<MpiOperation>(name_, "broadcast", std::vector{data});
    const MPI_Datatype type = element_type(data.dtype());
    for_each_chunk(data.numel(), max_count_, [&](std::int64_t offset, int count) {
      operation->start(
          [&](MPI_Request* request) { return MPI_Ibcast(element(data, offset), count, type, root, comm_, request); });
    });
    return Request(std::move(operation));
  }

  // A message longer than max_count travels as several, matched in order on the same tag.
  Request send(const Tensor& data, int peer, int tag) override {
    check_tag("send", data, peer, tag);
    auto operation = std::make_unique<MpiOperation>(name_, "send", std::vector{data});
    const MPI_Datatype type = element_type(data.dtype());
    for_each_chunk(data.numel(), max_count_, [&](std::int64_t offset, int count) {
      operation->start([&](MPI_Request* request) {
        return MPI_Isend(element(data, offset), count, type, peer, tag, comm_, request);
      });
    });
    return Request(std::move(operation));
  }

  Request recv(const Tensor& data, int peer, int tag) override {
    check_tag("recv", data, peer, tag);
    auto operation = std::make_unique<MpiOperation>(name_, "recv", std::vector{data});
    const MPI_Datatype type = element_type(data.dtype());
    for_each_chunk(data.numel(), max_count_, [&](std::int64_t offset, int count) {
      operation->start([&](MPI_Request* request) {
        return MPI_Irecv(element(data, offset), count, type, peer, tag, comm_, request);
      });
    });
    return Request(std::move(operation));
  }

  void barrier() override { check_mpi(MPI_Barrier(comm_), name_, "barrier"); }

 private:
  detail::GroupInfo info() const { return {name_, "MPI", rank_, size_, Device::cpu}; }

  void check_tag(const char* call, const Tensor& data, int peer, int tag) const {
    detail::check_point_to_point(info(), call, data, peer, tag);
    DSV3_CHECK(tag < reserved_tag_,
               "comm {} (MPI): {}: tag {} is not below {} (MPI's tag bound, kept for all_to_all_v)", name_, call, tag,
               reserved_tag_);
  }

  std::string name_;
  std::int64_t max_count_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  int reserved_tag_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::string name, std::int64_t max_count) {
  return std::make_unique<MpiCommunicator>(comm, std::move(name), max_count);
}

}  // namespace dsv3::comm
