#include "dsv3/ops/loss.hpp"
