#include "dsv3/ops/elementwise.hpp"
