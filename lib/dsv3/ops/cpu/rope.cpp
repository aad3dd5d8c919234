#include "dsv3/ops/rope.hpp"
