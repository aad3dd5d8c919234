// Writes the synthetic token dataset of the trainer tests (train_testing.hpp) for the end-to-end test.
//   make_test_dataset OUT.h5 DOCUMENTS
#include "train/train_testing.hpp"

#include <fmt/format.h>
#include <mpi.h>

#include <cstdlib>
#include <exception>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int status = 0;
  if (argc != 3 || std::atoi(argv[2]) <= 0) {
    fmt::print(stderr, "usage: make_test_dataset OUT.h5 DOCUMENTS\n");
    status = 2;
  } else {
    try {
      dsv3::testing::write_documents(argv[1], dsv3::testing::counting_documents(std::atoi(argv[2])));
    } catch (const std::exception& error) {
      fmt::print(stderr, "make_test_dataset: {}\n", error.what());
      status = 1;
    }
  }
  MPI_Finalize();
  return status;
}
