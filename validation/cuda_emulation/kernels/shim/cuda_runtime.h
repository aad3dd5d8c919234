// The kernels include <cuda_runtime.h>: route it to the emulated runtime.
#pragma once
#include "emu_runtime.hpp"
