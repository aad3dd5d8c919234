// The bytes one rank sends for data parallelism, counted call by call with the volumes of the bandwidth-optimal
// (ring) algorithms: an all-gather or a reduce-scatter over n ranks sends (n − 1) shards, an all-reduce of b bytes
// 2(n − 1)/n · b. This is what the network must carry, whatever the MPI or NCCL library picks.
#pragma once

#include <cstdint>

namespace dsv3::parallel {

struct CommunicationVolume {
  double all_gather_bytes = 0.0;
  double reduce_scatter_bytes = 0.0;
  double all_reduce_bytes = 0.0;
  std::int64_t collectives = 0;  // calls started

  void add_all_gather(std::int64_t shard_bytes, int ranks) {
    all_gather_bytes += static_cast<double>(ranks - 1) * static_cast<double>(shard_bytes);
    ++collectives;
  }
  void add_reduce_scatter(std::int64_t shard_bytes, int ranks) {
    reduce_scatter_bytes += static_cast<double>(ranks - 1) * static_cast<double>(shard_bytes);
    ++collectives;
  }
  void add_all_reduce(std::int64_t bytes, int ranks) {
    all_reduce_bytes += 2.0 * static_cast<double>(ranks - 1) / ranks * static_cast<double>(bytes);
    ++collectives;
  }
  double total_bytes() const { return all_gather_bytes + reduce_scatter_bytes + all_reduce_bytes; }
};

}  // namespace dsv3::parallel
