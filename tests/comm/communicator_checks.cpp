#include "communicator_checks.hpp"

#include "support/testing.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

namespace dsv3::testing {

namespace {

using comm::Communicator;
using comm::ReduceOp;
using comm::Request;

constexpr DType kReducible[] = {DType::f32, DType::f64, DType::i32, DType::i64};
constexpr DType kEveryDType[] = {DType::f32, DType::f64, DType::bf16, DType::fp8_e4m3, DType::i32, DType::i64};
constexpr ReduceOp kOps[] = {ReduceOp::sum, ReduceOp::max, ReduceOp::min};

const char* op_name(ReduceOp op) { return op == ReduceOp::sum ? "sum" : op == ReduceOp::max ? "max" : "min"; }

// A value exact in `dtype`: fp8 e4m3 holds every integer up to 16, bf16 every integer up to 256.
double exact(DType dtype, std::int64_t code) {
  if (dtype == DType::fp8_e4m3) return static_cast<double>(code % 16);
  if (dtype == DType::bf16) return static_cast<double>(code % 256);
  return static_cast<double>(code);
}

Tensor make(Device device, DType dtype, const std::vector<double>& values) {
  return from_values(Shape{static_cast<std::int64_t>(values.size())}, dtype, values).to(device);
}

// The first element that differs, if any, is the failure message.
void check_values(const Tensor& result, const std::vector<double>& expected, const std::string& what) {
  const std::vector<double> actual = to_vector(result.to(Device::cpu));
  std::string mismatch;
  if (actual.size() != expected.size()) {
    mismatch = fmt::format("{}: {} elements, expected {}", what, actual.size(), expected.size());
  }
  for (std::size_t i = 0; mismatch.empty() && i < actual.size(); ++i) {
    if (actual[i] != expected[i]) {
      mismatch = fmt::format("{}: element {} is {}, expected {}", what, i, actual[i], expected[i]);
    }
  }
  INFO(mismatch);
  CHECK(mismatch.empty());
}

// data[i] = (rank + 1)·(i + 1) reduced over the ranks: the rank factors sum to size(size+1)/2, max out at size,
// min out at 1.
std::int64_t rank_factor(ReduceOp op, int size) {
  return op == ReduceOp::sum ? std::int64_t{size} * (size + 1) / 2 : op == ReduceOp::max ? size : 1;
}

void check_all_reduce(Communicator& comm, Device device) {
  constexpr std::int64_t n = 7;
  for (const DType dtype : kReducible) {
    for (const ReduceOp op : kOps) {
      std::vector<double> values(n);
      std::vector<double> expected(n);
      for (std::int64_t i = 0; i < n; ++i) {
        values[i] = static_cast<double>((comm.rank() + 1) * (i + 1));
        expected[i] = static_cast<double>(rank_factor(op, comm.size()) * (i + 1));
      }
      const Tensor data = make(device, dtype, values);
      comm.all_reduce(data, op).wait();
      check_values(data, expected, fmt::format("all_reduce {} {}", dtype_name(dtype), op_name(op)));
    }
  }
}

void check_reduce_scatter(Communicator& comm, Device device) {
  constexpr std::int64_t n = 5;  // per rank
  const int size = comm.size();
  for (const DType dtype : kReducible) {
    for (const ReduceOp op : kOps) {
      std::vector<double> values(static_cast<std::size_t>(size * n));
      for (std::int64_t j = 0; j < size * n; ++j) values[j] = static_cast<double>((comm.rank() + 1) * (j + 1));
      std::vector<double> expected(n);
      for (std::int64_t i = 0; i < n; ++i) {
        expected[i] = static_cast<double>(rank_factor(op, size) * (comm.rank() * n + i + 1));
      }
      const Tensor input = make(device, dtype, values);
      const Tensor output = Tensor::zeros(Shape{n}, dtype, device);
      comm.reduce_scatter(output, input, op).wait();
      check_values(output, expected, fmt::format("reduce_scatter {} {}", dtype_name(dtype), op_name(op)));
    }
  }
}

void check_all_gather(Communicator& comm, Device device) {
  constexpr std::int64_t n = 5;  // per rank
  const int size = comm.size();
  const int rank = comm.rank();
  for (const DType dtype : kEveryDType) {
    std::vector<double> mine(n);
    std::vector<double> expected(static_cast<std::size_t>(size * n));
    for (std::int64_t i = 0; i < n; ++i) mine[i] = exact(dtype, 17 * rank + i);
    for (int q = 0; q < size; ++q) {
      for (std::int64_t i = 0; i < n; ++i) expected[q * n + i] = exact(dtype, 17 * q + i);
    }
    const Tensor output = Tensor::zeros(Shape{size * n}, dtype, device);
    comm.all_gather(output, make(device, dtype, mine)).wait();
    check_values(output, expected, fmt::format("all_gather {}", dtype_name(dtype)));

    // In place: the input is this rank's block of the output.
    std::vector<double> own_block_filled(static_cast<std::size_t>(size * n), 0.0);
    for (std::int64_t i = 0; i < n; ++i) own_block_filled[rank * n + i] = mine[i];
    const Tensor in_place = make(device, dtype, own_block_filled);
    comm.all_gather(in_place, in_place.rows(rank * n, (rank + 1) * n)).wait();
    check_values(in_place, expected, fmt::format("all_gather in place {}", dtype_name(dtype)));
  }
}

// Rank r sends (2r + p) mod 4 elements to rank p (some none), element k coded (r·8 + p)·4 + k (< 256 for up to
// 8 ranks).
void check_all_to_all_v(Communicator& comm, Device device) {
  const int size = comm.size();
  const int rank = comm.rank();
  std::vector<std::int64_t> send_counts(static_cast<std::size_t>(size));
  std::vector<std::int64_t> recv_counts(static_cast<std::size_t>(size));
  for (int p = 0; p < size; ++p) {
    send_counts[p] = (2 * rank + p) % 4;
    recv_counts[p] = (2 * p + rank) % 4;
  }
  for (const DType dtype : kEveryDType) {
    std::vector<double> sent;
    std::vector<double> expected;
    for (int p = 0; p < size; ++p) {
      for (std::int64_t k = 0; k < send_counts[p]; ++k) sent.push_back(exact(dtype, (rank * 8 + p) * 4 + k));
      for (std::int64_t k = 0; k < recv_counts[p]; ++k) expected.push_back(exact(dtype, (p * 8 + rank) * 4 + k));
    }
    const Tensor output = Tensor::zeros(Shape{static_cast<std::int64_t>(expected.size())}, dtype, device);
    comm.all_to_all_v(output, recv_counts, make(device, dtype, sent), send_counts).wait();
    check_values(output, expected, fmt::format("all_to_all_v {}", dtype_name(dtype)));
  }
}

void check_broadcast(Communicator& comm, Device device) {
  constexpr std::int64_t n = 6;
  for (int root = 0; root < comm.size(); ++root) {
    for (const DType dtype : {DType::f32, DType::bf16, DType::fp8_e4m3, DType::i64}) {
      std::vector<double> values(n, 0.0);
      std::vector<double> expected(n);
      for (std::int64_t i = 0; i < n; ++i) {
        expected[i] = exact(dtype, 17 * root + i);
        if (comm.rank() == root) values[i] = expected[i];
      }
      const Tensor data = make(device, dtype, values);
      comm.broadcast(data, root).wait();
      check_values(data, expected, fmt::format("broadcast from {} {}", root, dtype_name(dtype)));
    }
  }
}

// A ring: every rank sends to the next before it receives from the previous, and waits for its receive first.
void check_send_recv(Communicator& comm, Device device) {
  constexpr std::int64_t n = 6;
  const int next = (comm.rank() + 1) % comm.size();
  const int previous = (comm.rank() + comm.size() - 1) % comm.size();
  for (const DType dtype : {DType::f32, DType::bf16, DType::i32}) {
    std::vector<double> mine(n);
    std::vector<double> expected(n);
    for (std::int64_t i = 0; i < n; ++i) {
      mine[i] = exact(dtype, 10 * comm.rank() + i);
      expected[i] = exact(dtype, 10 * previous + i);
    }
    const Tensor sent = make(device, dtype, mine);
    const Tensor received = Tensor::zeros(Shape{n}, dtype, device);
    Request send = comm.send(sent, next, 3);
    Request receive = comm.recv(received, previous, 3);
    receive.wait();
    send.wait();
    check_values(received, expected, fmt::format("send/recv ring {}", dtype_name(dtype)));
  }
}

// Two operations in flight, waited in the reverse order (the second polled with test() first); a Request
// destroyed or overwritten before being waited on waits for its operation.
void check_requests(Communicator& comm, Device device) {
  constexpr std::int64_t n = 4;
  const int size = comm.size();
  const std::vector<double> ones(n, 1.0);
  const std::vector<double> sizes(n, static_cast<double>(size));

  const Tensor summed = make(device, DType::f32, ones);
  const Tensor gathered = Tensor::zeros(Shape{size * n}, DType::i64, device);
  const Tensor mine = make(device, DType::i64, std::vector<double>(n, static_cast<double>(comm.rank())));
  Request reduction = comm.all_reduce(summed, ReduceOp::sum);
  Request gather = comm.all_gather(gathered, mine);
  while (!gather.test()) {
  }
  gather.wait();
  CHECK(gather.test());  // an empty (waited) Request is complete
  reduction.wait();
  check_values(summed, sizes, "all_reduce overlapped with all_gather");
  std::vector<double> expected_gather;
  for (int q = 0; q < size; ++q) expected_gather.insert(expected_gather.end(), n, static_cast<double>(q));
  check_values(gathered, expected_gather, "all_gather overlapped with all_reduce");

  const Tensor first = make(device, DType::f64, ones);
  { Request dropped = comm.all_reduce(first, ReduceOp::sum); }
  check_values(first, sizes, "all_reduce whose Request was destroyed unwaited");

  const Tensor second = make(device, DType::i32, ones);
  const Tensor third = make(device, DType::i32, ones);
  Request request = comm.all_reduce(second, ReduceOp::sum);
  request = comm.all_reduce(third, ReduceOp::sum);  // waits for the first
  check_values(second, sizes, "all_reduce whose Request was overwritten");
  request.wait();
  check_values(third, sizes, "all_reduce of the overwriting Request");
}

void check_empty_operations(Communicator& comm, Device device) {
  const Tensor empty = Tensor::zeros(Shape{0}, DType::f32, device);
  const std::vector<std::int64_t> no_counts(static_cast<std::size_t>(comm.size()), 0);
  CHECK_NOTHROW(comm.all_reduce(empty, ReduceOp::sum).wait());
  CHECK_NOTHROW(comm.reduce_scatter(empty, empty, ReduceOp::sum).wait());
  CHECK_NOTHROW(comm.all_gather(empty, empty).wait());
  CHECK_NOTHROW(comm.all_to_all_v(empty, no_counts, empty, no_counts).wait());
  CHECK_NOTHROW(comm.broadcast(empty, 0).wait());
}

// The call throws a dsv3::Error whose message contains every fragment.
void expect_error(const std::function<void()>& call, std::initializer_list<std::string> fragments) {
  std::string message;
  try {
    call();
  } catch (const Error& error) {
    message = error.what();
  }
  INFO("message: ", message);
  CHECK_FALSE(message.empty());
  for (const std::string& fragment : fragments) {
    INFO("expected in the message: ", fragment);
    CHECK(message.find(fragment) != std::string::npos);
  }
}

}  // namespace

void check_every_operation(Communicator& comm, Device device) {
  INFO("comm ", comm.name(), ", rank ", comm.rank(), " of ", comm.size());
  check_all_reduce(comm, device);
  check_reduce_scatter(comm, device);
  check_all_gather(comm, device);
  check_all_to_all_v(comm, device);
  check_broadcast(comm, device);
  check_send_recv(comm, device);
  check_requests(comm, device);
  check_empty_operations(comm, device);
  comm.barrier();
}

void check_argument_errors(Communicator& comm, Device device) {
  INFO("comm ", comm.name(), ", rank ", comm.rank(), " of ", comm.size());
  const int size = comm.size();
  const std::string group = fmt::format("comm {} (", comm.name());
  const Tensor three = Tensor::zeros(Shape{3}, DType::f32, device);
  const Tensor too_many = Tensor::zeros(Shape{3 * size + 1}, DType::f32, device);
  const std::vector<std::int64_t> counts(static_cast<std::size_t>(size), 0);
  const std::vector<std::int64_t> one_count_too_many(static_cast<std::size_t>(size + 1), 0);

  expect_error(
      [&] { comm.reduce_scatter(three, too_many, ReduceOp::sum); },
      {group, "reduce_scatter", fmt::format("{} elements but size·output = {}·3 = {}", 3 * size + 1, size, 3 * size)});
  expect_error(
      [&] { comm.all_gather(too_many, three); },
      {group, "all_gather", fmt::format("{} elements but size·input = {}·3 = {}", 3 * size + 1, size, 3 * size)});
  expect_error([&] { comm.all_gather(too_many, Tensor::zeros(Shape{3}, DType::i32, device)); },
               {group, "differ in dtype"});
  expect_error([&] { comm.all_reduce(Tensor::zeros(Shape{3}, DType::bf16, device), ReduceOp::sum); },
               {group, "cannot reduce bf16[3]", "convert bf16 to f32"});
  expect_error([&] { comm.all_to_all_v(three, one_count_too_many, three, counts); },
               {group, fmt::format("recv_counts has {} entries, one per rank needs {}", size + 1, size)});
  expect_error([&] { comm.all_to_all_v(three, counts, three, counts); },
               {group, "recv_counts add up to 0 elements but the tensor f32[3]"});
  expect_error([&] { comm.broadcast(three, size); }, {group, fmt::format("root {} is not a rank of the group", size)});
  expect_error([&] { comm.send(three, -1, 0); }, {group, "send: peer -1 is not a rank of the group"});
  expect_error([&] { comm.recv(three, 0, -2); }, {group, "recv: tag -2 is negative"});
  const Tensor shared = Tensor::zeros(Shape{3 * size}, DType::f32, device);
  expect_error([&] { comm.reduce_scatter(shared.rows(0, 3), shared, ReduceOp::sum); }, {group, "overlap in memory"});
  expect_error([&] { comm.all_reduce(Tensor(), ReduceOp::sum); }, {group, "the data tensor is undefined"});

  const Device other = device == Device::cpu ? Device::cuda : Device::cpu;
  if (other == Device::cpu || cuda_available()) {
    expect_error([&] { comm.all_reduce(Tensor::zeros(Shape{3}, DType::f32, other), ReduceOp::sum); },
                 {group, fmt::format("is a {} tensor", device_name(other))});
  }
}

}  // namespace dsv3::testing
