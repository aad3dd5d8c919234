// A checksum of a stored tensor that ranks compute on their own pieces and add up, so it does not depend on how
// the tensor is split (checkpoints written on one parallel layout verify on any other).
//
// Over the elements' stored bits v_i (zero-extended to 64 bits, little-endian) at their index i in the row-major
// flattening: sum = Σ v_i and weighted = Σ (i + 1)·v_i, both modulo the Mersenne prime p = 2^61 − 1. A changed
// byte changes v_i by d·2^(8k) with 0 < |d| < 256, never a multiple of p, so every single-byte error changes
// `sum`; swapped or shifted elements change `weighted`. Not cryptographic: it finds corruption, not tampering.
//
// Why not HDF5's Fletcher-32 filter: filters need chunked datasets, and parallel HDF5 (1.10.2 and later) writes
// filtered datasets only collectively and reallocates every chunk on each write; the chunk boundaries must match
// the rank pieces to avoid read-modify-write of shared chunks. A stored checksum keeps the datasets contiguous
// (one MPI-IO write per rank and dataset, readable at any offset) and verifies the logical tensor itself.
#pragma once

#include "dsv3/core/dtype.hpp"

#include <mpi.h>

#include <cstdint>
#include <span>
#include <string>

namespace dsv3::io {

struct Checksum {
  std::uint64_t sum = 0;
  std::uint64_t weighted = 0;

  // Adds `count` elements of `dtype` at `values`, the elements [first_index, first_index + count) of the tensor.
  void add(const void* values, DType dtype, std::int64_t first_index, std::int64_t count);
  void add(const Checksum& other);  // the checksum of the union of two disjoint sets of elements
  std::string hex() const;          // 32 hexadecimal digits: sum, then weighted
  bool operator==(const Checksum&) const = default;
};

// checksums[i] becomes the sum over the ranks of `comm` of their checksums[i] (collective).
void all_reduce(std::span<Checksum> checksums, MPI_Comm comm);

}  // namespace dsv3::io
