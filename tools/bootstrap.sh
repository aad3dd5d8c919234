# Sourced by run_train.sh and run_tests.sh: installs the Debian packages dsv3 needs (only the missing ones),
# then configures and builds with the CMake preset in $DSV3_PRESET (default: release).
# Idempotent: a second run installs nothing and rebuilds only what changed.

DSV3_DEBIAN_PACKAGES=(
  build-essential cmake pkg-config git
  openmpi-bin libopenmpi-dev
  libhdf5-openmpi-dev hdf5-tools
  libfmt-dev libboost-program-options-dev doctest-dev
  libopenblas-dev nlohmann-json3-dev libpcre2-dev zlib1g-dev
  fortunes  # English text for the bundled sample corpus
)

dsv3_install_packages() {
  local missing=()
  for package in "${DSV3_DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "dsv3: installing missing Debian packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "dsv3: not root and no sudo; install: ${missing[*]}" >&2; return 1; }
    sudo="sudo"
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

dsv3_build() {
  local preset="${DSV3_PRESET:-release}"
  DSV3_BUILD_DIR="$DSV3_ROOT/build/$preset"
  if [ ! -f "$DSV3_BUILD_DIR/CMakeCache.txt" ]; then
    cmake --preset "$preset" -S "$DSV3_ROOT"
  fi
  cmake --build "$DSV3_BUILD_DIR" -j "$(nproc)"
}

# Debian's OpenBLAS picks its kernels from the CPU model, and falls back to SSE3 ones (5x slower GEMMs) on
# virtualised Xeons that report a generic model; the AVX-512 kernels are right for any CPU that has AVX-512.
dsv3_cpu_environment() {
  if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    export OPENBLAS_CORETYPE=SkylakeX
  fi
}

# Open MPI refuses to run as root and to start more ranks than cores unless told; say it once here.
dsv3_mpiexec_flags() {
  local flags="--oversubscribe --bind-to none"
  [ "$(id -u)" -eq 0 ] && flags="$flags --allow-run-as-root"
  echo "$flags"
}
