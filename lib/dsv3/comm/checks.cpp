#include "dsv3/comm/checks.hpp"

#include "dsv3/core/error.hpp"

#include <fmt/format.h>

#include <string>

namespace dsv3::comm::detail {

namespace {

// "comm dp_shard (4 ranks, MPI): all_gather"
std::string where(const GroupInfo& group, std::string_view call) {
  return fmt::format("comm {} ({} rank{}, {}): {}", group.name, group.size, group.size == 1 ? "" : "s", group.backend,
                     call);
}

void check_tensor(const GroupInfo& group, std::string_view call, std::string_view role, const Tensor& tensor) {
  DSV3_CHECK(tensor.defined(), "{}: the {} tensor is undefined", where(group, call), role);
  DSV3_CHECK(tensor.device() == group.device,
             "{}: the {} tensor {} is a {} tensor, but the {} communicator takes {} tensors", where(group, call), role,
             tensor.describe(), device_name(tensor.device()), group.backend, device_name(group.device));
}

void check_same_dtype(const GroupInfo& group, std::string_view call, const Tensor& output, const Tensor& input) {
  DSV3_CHECK(output.dtype() == input.dtype(), "{}: output {} and input {} differ in dtype", where(group, call),
             output.describe(), input.describe());
}

// Reductions run in f32 or wider (DESIGN.md "Computation": reductions across ranks in fp32).
void check_reducible(const GroupInfo& group, std::string_view call, const Tensor& tensor) {
  const DType dtype = tensor.dtype();
  DSV3_CHECK(dtype == DType::f32 || dtype == DType::f64 || dtype == DType::i32 || dtype == DType::i64,
             "{}: cannot reduce {}: reductions across ranks run in f32, f64, i32 or i64 (convert {} to f32 first)",
             where(group, call), tensor.describe(), dtype_name(dtype));
}

bool overlap(const Tensor& a, const Tensor& b) {
  const auto* a_begin = static_cast<const std::byte*>(a.raw());
  const auto* b_begin = static_cast<const std::byte*>(b.raw());
  return a.nbytes() > 0 && b.nbytes() > 0 && a_begin < b_begin + b.nbytes() && b_begin < a_begin + a.nbytes();
}

void check_disjoint(const GroupInfo& group, std::string_view call, const Tensor& output, const Tensor& input) {
  DSV3_CHECK(!overlap(output, input), "{}: output {} and input {} overlap in memory", where(group, call),
             output.describe(), input.describe());
}

void check_rank(const GroupInfo& group, std::string_view call, std::string_view role, int rank) {
  DSV3_CHECK(0 <= rank && rank < group.size, "{}: {} {} is not a rank of the group (0 to {})", where(group, call), role,
             rank, group.size - 1);
}

void check_counts(const GroupInfo& group, std::string_view role, std::span<const std::int64_t> counts,
                  const Tensor& tensor) {
  constexpr std::string_view call = "all_to_all_v";
  DSV3_CHECK(static_cast<int>(counts.size()) == group.size, "{}: {} has {} entries, one per rank needs {}",
             where(group, call), role, counts.size(), group.size);
  for (std::size_t r = 0; r < counts.size(); ++r) {
    DSV3_CHECK(counts[r] >= 0, "{}: {}[{}] = {} is negative", where(group, call), role, r, counts[r]);
  }
  DSV3_CHECK(total(counts) == tensor.numel(), "{}: {} add up to {} elements but the tensor {} has {}",
             where(group, call), role, total(counts), tensor.describe(), tensor.numel());
}

}  // namespace

std::int64_t total(std::span<const std::int64_t> counts) {
  std::int64_t sum = 0;
  for (const std::int64_t count : counts) sum += count;
  return sum;
}

void check_all_reduce(const GroupInfo& group, const Tensor& data) {
  check_tensor(group, "all_reduce", "data", data);
  check_reducible(group, "all_reduce", data);
}

void check_reduce_scatter(const GroupInfo& group, const Tensor& output, const Tensor& input) {
  constexpr std::string_view call = "reduce_scatter";
  check_tensor(group, call, "output", output);
  check_tensor(group, call, "input", input);
  check_same_dtype(group, call, output, input);
  check_reducible(group, call, input);
  DSV3_CHECK(input.numel() == group.size * output.numel(),
             "{}: input {} has {} elements but size·output = {}·{} = {} (output {})", where(group, call),
             input.describe(), input.numel(), group.size, output.numel(), group.size * output.numel(),
             output.describe());
  check_disjoint(group, call, output, input);
}

bool check_all_gather(const GroupInfo& group, const Tensor& output, const Tensor& input) {
  constexpr std::string_view call = "all_gather";
  check_tensor(group, call, "output", output);
  check_tensor(group, call, "input", input);
  check_same_dtype(group, call, output, input);
  DSV3_CHECK(output.numel() == group.size * input.numel(),
             "{}: output {} has {} elements but size·input = {}·{} = {} (input {})", where(group, call),
             output.describe(), output.numel(), group.size, input.numel(), group.size * input.numel(),
             input.describe());
  const auto* own_block = static_cast<const std::byte*>(output.raw()) + group.rank * input.nbytes();
  const bool in_place = input.numel() > 0 && input.raw() == own_block;
  if (!in_place) check_disjoint(group, call, output, input);
  return in_place;
}

void check_all_to_all_v(const GroupInfo& group, const Tensor& output, std::span<const std::int64_t> recv_counts,
                        const Tensor& input, std::span<const std::int64_t> send_counts) {
  constexpr std::string_view call = "all_to_all_v";
  check_tensor(group, call, "output", output);
  check_tensor(group, call, "input", input);
  check_same_dtype(group, call, output, input);
  check_counts(group, "recv_counts", recv_counts, output);
  check_counts(group, "send_counts", send_counts, input);
  check_disjoint(group, call, output, input);
}

void check_broadcast(const GroupInfo& group, const Tensor& data, int root) {
  check_tensor(group, "broadcast", "data", data);
  check_rank(group, "broadcast", "root", root);
}

void check_point_to_point(const GroupInfo& group, const char* call, const Tensor& data, int peer, int tag) {
  check_tensor(group, call, "data", data);
  check_rank(group, call, "peer", peer);
  DSV3_CHECK(tag >= 0, "{}: tag {} is negative", where(group, call), tag);
}

}  // namespace dsv3::comm::detail
