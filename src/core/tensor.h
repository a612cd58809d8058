// dsv4 core: TensorView, a non-owning, trivially copyable view of tensor bytes (usually mmap'd
// checkpoint data). Shapes are outermost-first, as in V4-ARCHITECTURE.md.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace dsv4 {

constexpr int kMaxDims = 4;

struct TensorView {
  const void* data = nullptr;
  Dtype dtype = Dtype::f32;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};

  int64_t dim(int i) const { return shape[size_t(i)]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[size_t(i)];
    return n;
  }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  bool valid() const { return data != nullptr; }
  template <class T>
  const T* as() const { return static_cast<const T*>(data); }
  std::string shape_str() const;
};

// "[a, b, c]"
std::string shape_to_string(const int64_t* s, int n);

}  // namespace dsv4
