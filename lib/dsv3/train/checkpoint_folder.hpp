// The checkpoints of a run: one file per step in one folder (<job.dump_folder>/<checkpoint.folder>, as torchtitan),
//
//   step-<N>.h5           a complete checkpoint after N optimizer steps
//   step-<N>.h5.partial   one being written
//
// A checkpoint is written under its .partial name and renamed only after every rank has finished writing and the
// file is closed and synced to disk, so a job killed at any moment leaves complete checkpoints and at most one
// .partial file, which resuming ignores and the next save removes. Older checkpoints are pruned only after the
// rename.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <vector>

namespace dsv3::train {

std::filesystem::path checkpoint_file(const std::filesystem::path& folder, std::int64_t step);

// The steps of the complete checkpoints in `folder`, ascending; none when the folder does not exist.
std::vector<std::int64_t> checkpoint_steps(const std::filesystem::path& folder);

// Saves checkpoint `step`: `write(partial path)` on every rank of `comm` (collective), then rank 0 syncs the file,
// renames it to checkpoint_file(folder, step) and syncs the folder, then keeps only the latest `keep_latest_k`
// complete checkpoints (0: all) and removes any .partial file. Collective; a failure throws on every rank.
// Returns the checkpoint's path.
std::filesystem::path save_checkpoint_file(const std::filesystem::path& folder, std::int64_t step,
                                           std::int64_t keep_latest_k, MPI_Comm comm,
                                           const std::function<void(const std::filesystem::path&)>& write);

}  // namespace dsv3::train
