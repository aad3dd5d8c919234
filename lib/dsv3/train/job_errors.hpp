// How an error on some ranks ends an MPI job (DESIGN.md "Observability"): printed once, with the rank, and a
// non-zero exit on every rank, never a hang.
//
// Setup (config, data, model) runs its collectives on every rank or on none, so a failure there can be agreed on:
// run_setup() catches it, the ranks find the lowest failing one, it alone prints its message, and every rank
// returns false to exit normally with status 1. After setup a rank that fails may leave the others waiting inside
// a collective, so run_or_abort() prints its message and aborts the whole job.
#pragma once

#include "dsv3/train/job_config.hpp"

#include <mpi.h>

#include <functional>
#include <string>

namespace dsv3::train {

// Runs `setup` on every rank of `comm` (collective). True when it succeeded on all of them; otherwise the lowest
// failing rank has printed "<program>: error on rank R: <message>" to stderr.
bool run_setup(MPI_Comm comm, const std::string& program, const std::function<void()>& setup);
// Runs `work`; if it throws, prints "<program>: error on rank R: <message>" and calls MPI_Abort on `comm`.
void run_or_abort(MPI_Comm comm, const std::string& program, const std::function<void()>& work);

// Collective: throws the same dsv3::Error on every rank when `config` is not the same on all ranks of `comm`
// (ranks that trained different models, or the same model on different layouts, would deadlock or diverge),
// naming the first rank and key that differ from rank 0.
void require_same_config(const JobConfig& config, MPI_Comm comm);

}  // namespace dsv3::train
