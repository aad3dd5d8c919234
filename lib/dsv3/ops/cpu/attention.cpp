#include "dsv3/ops/attention.hpp"
