#include "dsv3/model/batch_context.hpp"

namespace dsv3::model {

const Tensor& ensure_tensor(Tensor& slot, const Shape& shape, DType dtype, Device device) {
  if (!slot.defined() || !(slot.shape() == shape) || slot.dtype() != dtype || slot.device() != device) {
    slot = Tensor::empty(shape, dtype, device);
  }
  return slot;
}

}  // namespace dsv3::model
