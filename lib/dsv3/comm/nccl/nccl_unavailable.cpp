// The NCCL factory of a build without the CUDA backend: asking for it is an error that says why.
#include "dsv3/comm/nccl/nccl_communicator.hpp"

#include "dsv3/core/error.hpp"

namespace dsv3::comm {

bool nccl_built() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm, std::string name, void*) {
  fail(
      "comm {}: no NCCL communicator in this build: dsv3 was built without the CUDA backend "
      "(configure with -DDSV3_WITH_CUDA=ON and NCCL installed)",
      name);
}

}  // namespace dsv3::comm
