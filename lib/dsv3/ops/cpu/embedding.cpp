#include "dsv3/ops/embedding.hpp"
