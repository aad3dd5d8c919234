#include "dsv3/ops/fp8.hpp"
