#include "dsv3/comm/nccl/nccl_communicator.hpp"

#include "dsv3/comm/checks.hpp"
#include "dsv3/core/error.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv3::comm {

namespace {

void check_cuda(cudaError_t status, std::string_view group, std::string_view call) {
  DSV3_CHECK(status == cudaSuccess, "comm {} (NCCL): {} failed: {}", group, call, cudaGetErrorString(status));
}

void check_nccl(ncclResult_t result, ncclComm_t comm, std::string_view group, std::string_view call) {
  DSV3_CHECK(result == ncclSuccess, "comm {} (NCCL): {} failed: {} ({})", group, call, ncclGetErrorString(result),
             ncclGetLastError(comm));
}

// One element as NCCL sees it; bf16 and fp8 only move (the checks reject reducing them), fp8 as plain bytes.
ncclDataType_t element_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::i32:
      return ncclInt32;
    case DType::i64:
      return ncclInt64;
    case DType::bf16:
      return ncclBfloat16;
    case DType::fp8_e4m3:
      return ncclUint8;
  }
  fail("NCCL communicator: unknown dtype {}", static_cast<int>(dtype));
}

ncclRedOp_t reduction(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return ncclSum;
    case ReduceOp::max:
      return ncclMax;
    case ReduceOp::min:
      return ncclMin;
  }
  fail("NCCL communicator: unknown reduce op {}", static_cast<int>(op));
}

void* element(const Tensor& tensor, std::int64_t index) {
  return static_cast<std::byte*>(tensor.raw()) + index * static_cast<std::int64_t>(dtype_size(tensor.dtype()));
}

std::size_t count(const Tensor& tensor) { return static_cast<std::size_t>(tensor.numel()); }

class NcclCommunicator;

// One operation on the communication stream: complete once `done`, recorded after it, has fired. Queued
// point-to-point operations are launched (and `done` recorded) by their communicator's launch_queued(). It holds
// the tensors, so their memory outlives the operation even if the caller drops its own handles first.
class NcclOperation final : public PendingOperation {
 public:
  NcclOperation(NcclCommunicator& owner, std::string_view call, std::vector<Tensor> buffers);
  ~NcclOperation() override { cudaEventDestroy(done_); }
  NcclOperation(const NcclOperation&) = delete;
  NcclOperation& operator=(const NcclOperation&) = delete;

  void wait() override;
  bool test() override;
  void launched(cudaStream_t stream);

 private:
  NcclCommunicator* owner_;  // used only while queued; a communicator launches its queue before it goes
  std::string group_;
  std::string_view call_;  // a literal
  cudaStream_t compute_stream_;
  cudaEvent_t done_ = nullptr;
  bool launched_ = false;
  std::vector<Tensor> buffers_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MPI_Comm comm, std::string name, cudaStream_t compute_stream)
      : name_(std::move(name)), compute_stream_(compute_stream) {
    DSV3_CHECK(MPI_Comm_dup(comm, &mpi_comm_) == MPI_SUCCESS, "comm {} (NCCL): MPI_Comm_dup failed", name_);
    MPI_Comm_rank(mpi_comm_, &rank_);
    MPI_Comm_size(mpi_comm_, &size_);
    // Rank 0 makes the id and broadcasts it with whether that worked, so a failure there fails every rank
    // instead of leaving them waiting in ncclCommInitRank.
    struct {
      int ok;
      ncclUniqueId id;
    } root{};
    if (rank_ == 0) root.ok = ncclGetUniqueId(&root.id) == ncclSuccess;
    MPI_Bcast(&root, sizeof root, MPI_BYTE, 0, mpi_comm_);
    DSV3_CHECK(root.ok, "comm {} (NCCL): ncclGetUniqueId failed on rank 0 of the group", name_);
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), name_, "cudaStreamCreateWithFlags");
    check_cuda(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming), name_, "cudaEventCreate");
    check_nccl(ncclCommInitRank(&comm_, size_, root.id, rank_), nullptr, name_, "ncclCommInitRank");
  }

  ~NcclCommunicator() override {
    try {
      launch_queued();
    } catch (...) {  // a destructor must not throw; the waiters of those transfers see their events as fired
    }
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
    cudaEventDestroy(compute_ready_);
    cudaStreamDestroy(stream_);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&mpi_comm_);
  }

  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return name_; }
  cudaStream_t compute_stream() const { return compute_stream_; }

  Request all_reduce(const Tensor& data, ReduceOp op) override {
    detail::check_all_reduce(info(), data);
    return launch("all_reduce", {data}, data.numel(), [&] {
      return ncclAllReduce(data.raw(), data.raw(), count(data), element_type(data.dtype()), reduction(op), comm_,
                           stream_);
    });
  }

  Request reduce_scatter(const Tensor& output, const Tensor& input, ReduceOp op) override {
    detail::check_reduce_scatter(info(), output, input);
    return launch("reduce_scatter", {output, input}, output.numel(), [&] {
      return ncclReduceScatter(input.raw(), output.raw(), count(output), element_type(input.dtype()), reduction(op),
                               comm_, stream_);
    });
  }

  // In place (input = rank's block of output) is NCCL's own in-place form.
  Request all_gather(const Tensor& output, const Tensor& input) override {
    detail::check_all_gather(info(), output, input);
    return launch("all_gather", {output, input}, input.numel(), [&] {
      return ncclAllGather(input.raw(), output.raw(), count(input), element_type(input.dtype()), comm_, stream_);
    });
  }

  // Send/receive pairs in one NCCL group, as NCCL's documentation builds all-to-all.
  Request all_to_all_v(const Tensor& output, std::span<const std::int64_t> recv_counts, const Tensor& input,
                       std::span<const std::int64_t> send_counts) override {
    detail::check_all_to_all_v(info(), output, recv_counts, input, send_counts);
    const ncclDataType_t type = element_type(input.dtype());
    return launch("all_to_all_v", {output, input}, input.numel() + output.numel(), [&] {
      ncclResult_t result = ncclGroupStart();
      std::int64_t send_offset = 0;
      std::int64_t recv_offset = 0;
      for (int peer = 0; peer < size_ && result == ncclSuccess; ++peer) {
        if (send_counts[peer] > 0) {
          result = ncclSend(element(input, send_offset), static_cast<std::size_t>(send_counts[peer]), type, peer, comm_,
                            stream_);
        }
        if (recv_counts[peer] > 0 && result == ncclSuccess) {
          result = ncclRecv(element(output, recv_offset), static_cast<std::size_t>(recv_counts[peer]), type, peer,
                            comm_, stream_);
        }
        send_offset += send_counts[peer];
        recv_offset += recv_counts[peer];
      }
      const ncclResult_t end = ncclGroupEnd();  // always closes the group, even after a failed call in it
      return result != ncclSuccess ? result : end;
    });
  }

  Request broadcast(const Tensor& data, int root) override {
    detail::check_broadcast(info(), data, root);
    return launch("broadcast", {data}, data.numel(), [&] {
      return ncclBroadcast(data.raw(), data.raw(), count(data), element_type(data.dtype()), root, comm_, stream_);
    });
  }

  Request send(const Tensor& data, int peer, int tag) override {
    detail::check_point_to_point(info(), "send", data, peer, tag);
    return queue("send", data, peer, true);
  }

  Request recv(const Tensor& data, int peer, int tag) override {
    detail::check_point_to_point(info(), "recv", data, peer, tag);
    return queue("recv", data, peer, false);
  }

  void barrier() override {
    launch_queued();
    check_cuda(cudaStreamSynchronize(stream_), name_, "barrier: cudaStreamSynchronize");
    DSV3_CHECK(MPI_Barrier(mpi_comm_) == MPI_SUCCESS, "comm {} (NCCL): barrier: MPI_Barrier failed", name_);
  }

  // Launches the queued sends and receives as one NCCL group, in call order.
  void launch_queued() {
    if (queued_.empty()) return;
    std::vector<Transfer> transfers = std::move(queued_);
    queued_.clear();
    follow_compute_stream();
    ncclResult_t result = ncclGroupStart();
    for (const Transfer& transfer : transfers) {
      if (result != ncclSuccess) break;
      const Tensor& data = transfer.data;
      result = transfer.send
                   ? ncclSend(data.raw(), count(data), element_type(data.dtype()), transfer.peer, comm_, stream_)
                   : ncclRecv(data.raw(), count(data), element_type(data.dtype()), transfer.peer, comm_, stream_);
    }
    const ncclResult_t end = ncclGroupEnd();
    for (const Transfer& transfer : transfers) transfer.operation->launched(stream_);
    check_nccl(result != ncclSuccess ? result : end, comm_, name_, "send/recv");
  }

 private:
  struct Transfer {
    NcclOperation* operation;  // owned by the caller's Request, whose wait() launches the queue first
    Tensor data;
    int peer;
    bool send;
  };

  detail::GroupInfo info() const { return {name_, "NCCL", rank_, size_, Device::cuda}; }

  // The communication stream starts nothing before the work already queued on the compute stream.
  void follow_compute_stream() {
    check_cuda(cudaEventRecord(compute_ready_, compute_stream_), name_, "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream_, compute_ready_, 0), name_, "cudaStreamWaitEvent");
  }

  // Queues one operation behind the pending sends and receives, which keeps the order of the calls. One that
  // moves no elements launches nothing: the sizes of a collective match on every rank, so all of them skip it,
  // and an all-to-all-v with nothing to send or receive here has no pairs with this rank.
  template <class Start>
  Request launch(std::string_view call, std::vector<Tensor> buffers, std::int64_t elements, Start&& start) {
    launch_queued();
    auto operation = std::make_unique<NcclOperation>(*this, call, std::move(buffers));
    if (elements > 0) {
      follow_compute_stream();
      check_nccl(start(), comm_, name_, call);
    }
    operation->launched(stream_);
    return Request(std::move(operation));
  }

  Request queue(std::string_view call, const Tensor& data, int peer, bool send) {
    auto operation = std::make_unique<NcclOperation>(*this, call, std::vector{data});
    if (data.numel() > 0) {
      queued_.push_back({operation.get(), data, peer, send});
    } else {
      operation->launched(stream_);
    }
    return Request(std::move(operation));
  }

  std::string name_;
  cudaStream_t compute_stream_;
  MPI_Comm mpi_comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t compute_ready_ = nullptr;
  std::vector<Transfer> queued_;
};

NcclOperation::NcclOperation(NcclCommunicator& owner, std::string_view call, std::vector<Tensor> buffers)
    : owner_(&owner),
      group_(owner.name()),
      call_(call),
      compute_stream_(owner.compute_stream()),
      buffers_(std::move(buffers)) {
  check_cuda(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), group_, "cudaEventCreate");
}

void NcclOperation::launched(cudaStream_t stream) {
  launched_ = true;
  owner_ = nullptr;
  check_cuda(cudaEventRecord(done_, stream), group_, call_);
}

// The compute stream waits for the operation, the host does not: kernels queued after wait() see its result, and
// the host reads device memory only through copies ordered on that stream. Dropping the buffers here is safe: CUDA
// tensors are freed in order on the compute stream (ops/cuda/runtime.cu), which now waits for the operation.
void NcclOperation::wait() {
  if (!launched_) owner_->launch_queued();
  check_cuda(cudaStreamWaitEvent(compute_stream_, done_, 0), group_, call_);
  buffers_.clear();
}

bool NcclOperation::test() {
  if (!launched_) owner_->launch_queued();
  const cudaError_t status = cudaEventQuery(done_);
  if (status == cudaErrorNotReady) return false;
  check_cuda(status, group_, call_);
  return true;
}

}  // namespace

bool nccl_built() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, std::string name, void* compute_stream) {
  return std::make_unique<NcclCommunicator>(comm, std::move(name), static_cast<cudaStream_t>(compute_stream));
}

}  // namespace dsv3::comm
