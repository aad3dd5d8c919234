#include "dsv3/data/tokenizer.hpp"
