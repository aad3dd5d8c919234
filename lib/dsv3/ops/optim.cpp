#include "dsv3/ops/optim.hpp"
