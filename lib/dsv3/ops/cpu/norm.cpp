#include "dsv3/ops/norm.hpp"
