#include "dsv3/ops/permute.hpp"
