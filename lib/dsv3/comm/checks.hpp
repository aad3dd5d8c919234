// Argument checks shared by the Communicator implementations (MPI, NCCL), so both reject the same calls with the
// same messages. Each throws dsv3::Error naming the group, the backend, the call and the sizes involved:
//   "comm dp_shard (4 ranks, MPI): all_gather: output has 10 elements but size·input = 4·3 = 12 ..."
// These are purely local checks: every rank of a group that makes the same wrong call throws before any
// communication starts, so a wrong call never leaves the other ranks waiting.
#pragma once

#include "dsv3/comm/communicator.hpp"

#include <cstdint>
#include <span>
#include <string_view>

namespace dsv3::comm::detail {

// The communicator as the checks see it.
struct GroupInfo {
  std::string_view name;
  std::string_view backend;  // "MPI", "NCCL"
  int rank = 0;
  int size = 1;
  Device device = Device::cpu;  // where its tensors must live
};

void check_all_reduce(const GroupInfo& group, const Tensor& data);
void check_reduce_scatter(const GroupInfo& group, const Tensor& output, const Tensor& input);
// Returns true when input is exactly rank's block of output (an in-place all-gather).
bool check_all_gather(const GroupInfo& group, const Tensor& output, const Tensor& input);
void check_all_to_all_v(const GroupInfo& group, const Tensor& output, std::span<const std::int64_t> recv_counts,
                        const Tensor& input, std::span<const std::int64_t> send_counts);
void check_broadcast(const GroupInfo& group, const Tensor& data, int root);
void check_point_to_point(const GroupInfo& group, const char* call, const Tensor& data, int peer, int tag);

// Sum of a count list (elements).
std::int64_t total(std::span<const std::int64_t> counts);

}  // namespace dsv3::comm::detail
