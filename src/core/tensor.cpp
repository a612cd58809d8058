#include "core/tensor.h"

namespace dsv4 {

std::string shape_to_string(const int64_t* s, int n) {
  std::string r = "[";
  for (int i = 0; i < n; ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

std::string TensorView::shape_str() const { return shape_to_string(shape.data(), ndim); }

}  // namespace dsv4
