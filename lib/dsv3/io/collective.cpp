#include "dsv3/io/collective.hpp"

#include "dsv3/core/error.hpp"

#include <exception>
#include <string>

namespace dsv3::io {

void agree_on_failure(MPI_Comm comm, const std::function<void()>& step) {
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  std::string message;
  bool failed = false;
  try {
    step();
  } catch (const std::exception& error) {
    failed = true;
    message = error.what();
  }
  int first_failed = failed ? rank : size;
  MPI_Allreduce(MPI_IN_PLACE, &first_failed, 1, MPI_INT, MPI_MIN, comm);
  if (first_failed == size) return;

  int length = static_cast<int>(message.size());
  MPI_Bcast(&length, 1, MPI_INT, first_failed, comm);
  message.resize(static_cast<std::size_t>(length));
  MPI_Bcast(message.data(), length, MPI_CHAR, first_failed, comm);
  if (size > 1) message = "rank " + std::to_string(first_failed) + ": " + message;
  throw Error(message);
}

}  // namespace dsv3::io
