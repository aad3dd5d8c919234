// Uses an installed dsv3: y = x · wᵀ with x = [1, 2], w = [[1, 2], [3, 4]] gives y = [5, 11].
#include <dsv3/ops/matmul.hpp>

#include <fmt/format.h>

int main() {
  using namespace dsv3;
  const Tensor x = Tensor::empty(Shape{1, 2}, DType::f32);
  const Tensor w = Tensor::empty(Shape{2, 2}, DType::f32);
  const Tensor y = Tensor::empty(Shape{1, 2}, DType::f32);
  float* xv = x.data<float>();
  float* wv = w.data<float>();
  xv[0] = 1, xv[1] = 2;
  wv[0] = 1, wv[1] = 2, wv[2] = 3, wv[3] = 4;
  ops::linear_forward(y, x, w);
  fmt::print("y = [{}, {}]\n", y.data<float>()[0], y.data<float>()[1]);
  return 0;
}
