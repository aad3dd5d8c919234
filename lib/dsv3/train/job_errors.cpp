#include "dsv3/train/job_errors.hpp"

#include "dsv3/core/error.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <sstream>

namespace dsv3::train {

namespace {

void print_error(MPI_Comm comm, const std::string& program, const std::string& message) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  fmt::print(stderr, "{}: error on rank {}: {}\n", program, rank, message);
  std::fflush(stderr);
}

// `text` on every rank: the root's.
std::string broadcast(std::string text, int root, MPI_Comm comm) {
  auto length = static_cast<long long>(text.size());
  MPI_Bcast(&length, 1, MPI_LONG_LONG, root, comm);
  text.resize(static_cast<std::size_t>(length));
  MPI_Bcast(text.data(), static_cast<int>(length), MPI_CHAR, root, comm);
  return text;
}

// The first line where two TOML texts differ, as "'mine' where rank 0 has 'theirs'".
std::string first_difference(const std::string& mine, const std::string& theirs) {
  std::istringstream a(mine), b(theirs);
  std::string section, line_a, line_b;
  while (true) {
    const bool more_a = static_cast<bool>(std::getline(a, line_a));
    const bool more_b = static_cast<bool>(std::getline(b, line_b));
    if (!more_a && !more_b) return "the same text";
    if (!more_a) line_a.clear();
    if (!more_b) line_b.clear();
    if (line_a != line_b) return fmt::format("'{}' where rank 0 has '{}' (in [{}])", line_a, line_b, section);
    if (line_a.starts_with('[')) section = line_a.substr(1, line_a.size() - 2);
  }
}

}  // namespace

void require_same_config(const JobConfig& config, MPI_Comm comm) {
  int rank = 0;
  int ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  const std::string mine = to_toml(config);
  const std::string root = broadcast(rank == 0 ? mine : std::string(), 0, comm);
  int first_different = mine == root ? ranks : rank;
  MPI_Allreduce(MPI_IN_PLACE, &first_different, 1, MPI_INT, MPI_MIN, comm);
  if (first_different == ranks) return;
  const std::string difference =
      broadcast(rank == first_different ? first_difference(mine, root) : std::string(), first_different, comm);
  fail(
      "the job config differs between ranks: rank {} has {}; every rank must get the same config file and "
      "overrides",
      first_different, difference);
}

bool run_setup(MPI_Comm comm, const std::string& program, const std::function<void()>& setup) {
  std::string error;
  try {
    setup();
  } catch (const std::exception& exception) {
    error = exception.what();
  }
  int rank = 0;
  int ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  int first_failed_rank = error.empty() ? ranks : rank;
  MPI_Allreduce(MPI_IN_PLACE, &first_failed_rank, 1, MPI_INT, MPI_MIN, comm);
  if (rank == first_failed_rank) print_error(comm, program, error);
  return first_failed_rank == ranks;
}

void run_or_abort(MPI_Comm comm, const std::string& program, const std::function<void()>& work) {
  try {
    work();
  } catch (const std::exception& exception) {
    print_error(comm, program, exception.what());
    MPI_Abort(comm, 1);
  }
}

}  // namespace dsv3::train
