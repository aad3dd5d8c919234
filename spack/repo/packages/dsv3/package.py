# The Spack recipe of dsv3. spack/spack.yaml builds it from the checkout around it (`develop`), so the only version
# is the working tree: there is no release tarball to fetch and checksum yet.
from spack.package import *


class Dsv3(CMakePackage, CudaPackage):
    """DeepSeek-V3 training as an HPC batch application: C++20, MPI, parallel HDF5 checkpoints, a CPU reference
    backend and CUDA/NCCL. Installs dsv3_train, dsv3_convert_hf and the other programs into bin/, and the library
    with its CMake package config (find_package(dsv3), target dsv3::dsv3) into lib/ and lib/cmake/dsv3."""

    version("main")

    variant("openmp", default=True, description="Parallelise the CPU ops with OpenMP (DSV3_WITH_OPENMP)")
    # CudaPackage adds +cuda (DSV3_WITH_CUDA) and cuda_arch (CMAKE_CUDA_ARCHITECTURES; 90 for H100/H200).
    conflicts("%gcc@:10", msg="dsv3 is C++20")

    depends_on("c", type="build")
    depends_on("cxx", type="build")
    depends_on("cmake@3.24:", type="build")
    depends_on("pkgconfig", type="build")
    depends_on("doctest", type="build")

    depends_on("mpi")
    depends_on("hdf5+mpi")  # checkpoints are written collectively (MPI-IO)
    depends_on("fmt@9:")
    depends_on("boost@1.70:+program_options")
    depends_on("nlohmann-json@3.9:")
    depends_on("pcre2")
    depends_on("zlib-api")
    # CMake asks for OpenBLAS by name (BLA_VENDOR); single-threaded, because the CPU backend runs OpenMP over
    # single-threaded BLAS calls (lib/dsv3/ops/cpu/blas.hpp).
    depends_on("openblas threads=none")
    depends_on("cuda@12:", when="+cuda")
    depends_on("nccl", when="+cuda")

    def setup_build_environment(self, env):
        if self.spec.satisfies("+cuda"):
            env.set("NCCL_HOME", self.spec["nccl"].prefix)  # where cmake/Dsv3Dependencies.cmake looks for NCCL

    def cmake_args(self):
        args = [
            self.define_from_variant("DSV3_WITH_OPENMP", "openmp"),
            self.define("DSV3_WITH_CUDA", "ON" if self.spec.satisfies("+cuda") else "OFF"),
            self.define("DSV3_BUILD_TESTS", self.run_tests),
            self.define("DSV3_NATIVE_ARCH", False),  # Spack's compiler wrappers add the target's -march
        ]
        if self.spec.satisfies("+cuda"):
            args.append(self.define("CMAKE_CUDA_ARCHITECTURES", ";".join(self.spec.variants["cuda_arch"].value)))
        return args

    def check(self):
        """`spack install --test=root dsv3`: the CPU tests. Not the gpu label (needs a GPU) nor slurm (it installs
        and starts Slurm daemons as root, which a Spack build must not)."""
        ctest = Executable(self.spec["cmake"].prefix.bin.ctest)
        with working_dir(self.build_directory):
            ctest("--output-on-failure", "-LE", "gpu|slurm", "-j", str(make_jobs))
