# Every external dependency of dsv3 is found here, once, with a message that says what to install when it is missing.

find_package(MPI 3.0 REQUIRED COMPONENTS C CXX)
find_package(fmt REQUIRED)
find_package(Boost 1.70 REQUIRED COMPONENTS program_options)
find_package(doctest REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(Threads REQUIRED)
find_package(ZLIB REQUIRED)  # gzip-compressed JSONL corpora

set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
find_path(DSV3_CBLAS_INCLUDE_DIR NAMES cblas.h PATH_SUFFIXES openblas openblas-pthread openblas-openmp)
if(NOT DSV3_CBLAS_INCLUDE_DIR)
  message(FATAL_ERROR "dsv3: cblas.h not found; install OpenBLAS headers (Debian: libopenblas-dev)")
endif()
add_library(dsv3_blas INTERFACE)
target_link_libraries(dsv3_blas INTERFACE BLAS::BLAS)
target_include_directories(dsv3_blas INTERFACE "${DSV3_CBLAS_INCLUDE_DIR}")

find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)

# HDF5 must be the parallel (MPI-IO) build: checkpoints are written collectively by all ranks.
set(HDF5_PREFER_PARALLEL ON)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR
    "dsv3: the HDF5 found (${HDF5_C_INCLUDE_DIRS}) is the serial build; dsv3 needs HDF5 built with MPI.\n"
    "  Debian: apt-get install libhdf5-openmpi-dev\n  Spack: spack install hdf5+mpi\n"
    "  or point HDF5_ROOT at a parallel HDF5 installation.")
endif()
add_library(dsv3_hdf5 INTERFACE)
target_link_libraries(dsv3_hdf5 INTERFACE ${HDF5_C_LIBRARIES} MPI::MPI_C)
target_include_directories(dsv3_hdf5 INTERFACE ${HDF5_C_INCLUDE_DIRS})
target_compile_definitions(dsv3_hdf5 INTERFACE ${HDF5_C_DEFINITIONS})

if(DSV3_WITH_OPENMP)
  find_package(OpenMP REQUIRED COMPONENTS CXX)
endif()

# CUDA: AUTO turns it on when a CUDA compiler is found.
if(DSV3_WITH_CUDA STREQUAL "AUTO")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(DSV3_CUDA_ENABLED ON)
  else()
    set(DSV3_CUDA_ENABLED OFF)
    message(STATUS "dsv3: nvcc not found, building the CPU backend only")
  endif()
elseif(DSV3_WITH_CUDA)
  set(DSV3_CUDA_ENABLED ON)
else()
  set(DSV3_CUDA_ENABLED OFF)
endif()

if(DSV3_CUDA_ENABLED)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90)
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 does not know nvcc's C++20 flag
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
  find_path(DSV3_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ENV NCCL_HOME PATH_SUFFIXES include)
  find_library(DSV3_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} "${CUDAToolkit_LIBRARY_ROOT}/lib" ENV NCCL_HOME
               PATH_SUFFIXES lib lib64)
  if(NOT DSV3_NCCL_INCLUDE_DIR OR NOT DSV3_NCCL_LIBRARY)
    message(FATAL_ERROR "dsv3: CUDA is on but NCCL was not found; install NCCL or set NCCL_HOME, or configure with -DDSV3_WITH_CUDA=OFF")
  endif()
  add_library(dsv3_nccl INTERFACE)
  target_link_libraries(dsv3_nccl INTERFACE "${DSV3_NCCL_LIBRARY}")
  target_include_directories(dsv3_nccl INTERFACE "${DSV3_NCCL_INCLUDE_DIR}")
  message(STATUS "dsv3: CUDA backend on (architectures ${CMAKE_CUDA_ARCHITECTURES}, NCCL ${DSV3_NCCL_LIBRARY})")
endif()
