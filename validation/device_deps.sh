#!/usr/bin/env bash
# Downloads the Debian packages dsv3 builds against (not CUDA: the device machine has it) with the libraries they
# pull in, into .devdeps/, for validation/device_check.sh to unpack on a machine that cannot fetch them.
#   validation/device_deps.sh          # on a Debian machine with apt; then carry .devdeps to the device machine
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .devdeps
grep -qx "/.devdeps/" .git/info/exclude 2>/dev/null || echo "/.devdeps/" >>.git/info/exclude
# Named one by one (the recursive closure pulls in compilers and LLVM, 480 MB): the libraries and headers the build
# and the runs load, nothing the device image has (the C/C++ runtimes, CUDA, NCCL, zlib, libcurl).
packages=(libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libpmix2 libpmix-dev libhwloc15 libhwloc-dev
          libevent-2.1-7 libevent-core-2.1-7 libevent-pthreads-2.1-7 libevent-dev libfabric1 libucx0 libibverbs1
          librdmacm1 libnl-3-200 libnl-route-3-200 libpsm2-2 libpsm-infinipath1 libmunge2 libnuma1 libltdl7
          libhdf5-openmpi-dev libhdf5-openmpi-103-1 libaec0 libsz2 hdf5-helpers
          libboost-program-options-dev libboost-program-options1.74-dev libboost-program-options1.74.0
          libboost1.74-dev libfmt-dev libfmt9 doctest-dev
          libopenblas-dev libopenblas-pthread-dev libopenblas0 libopenblas0-pthread libgfortran5 libquadmath0)
(cd .devdeps && apt-get download "${packages[@]}")
du -sh .devdeps
