#include "dsv3/ops/activation.hpp"
