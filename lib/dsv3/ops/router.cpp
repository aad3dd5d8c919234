#include "dsv3/ops/router.hpp"
