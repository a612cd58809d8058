#include "kernels/ops.h"

#include <algorithm>
#include <cmath>

#include "kernels/linear.h"

namespace dsv4::kernels {

void rms_norm(const float* x, const TensorView* w, float eps, int64_t n, float* y) {
  float ss = dot_f32(x, x, n);
  float r = 1.f / std::sqrt(ss / float(n) + eps);
  if (w) {
    const uint16_t* wb = w->as<uint16_t>();
    for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(wb[i]) * (x[i] * r);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * r;
  }
}

void rope_rotate(float* x, const float* cos_t, const float* sin_t, int npairs, bool inverse) {
  for (int i = 0; i < npairs; ++i) {
    float a = x[2 * i], b = x[2 * i + 1];
    float c = cos_t[i], s = inverse ? -sin_t[i] : sin_t[i];
    x[2 * i] = a * c - b * s;
    x[2 * i + 1] = a * s + b * c;
  }
}

void hadamard_orthonormal(float* x, int n) {
  for (int h = 1; h < n; h <<= 1)
    for (int i = 0; i < n; i += 2 * h)
      for (int j = i; j < i + h; ++j) {
        float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
  const float s = 1.f / std::sqrt(float(n));
  for (int i = 0; i < n; ++i) x[i] *= s;
}

void round_bf16_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = round_bf16(x[i]);
}

void sinkhorn_split(float* C, int hc, int iters, float eps) {
  for (int j = 0; j < hc; ++j) {  // row softmax, then + eps
    float* r = C + j * hc;
    float m = *std::max_element(r, r + hc);
    float s = 0;
    for (int k = 0; k < hc; ++k) s += (r[k] = std::exp(r[k] - m));
    for (int k = 0; k < hc; ++k) r[k] = r[k] / s + eps;
  }
  auto col_norm = [&] {
    for (int k = 0; k < hc; ++k) {
      float s = 0;
      for (int j = 0; j < hc; ++j) s += C[j * hc + k];
      for (int j = 0; j < hc; ++j) C[j * hc + k] /= (s + eps);
    }
  };
  auto row_norm = [&] {
    for (int j = 0; j < hc; ++j) {
      float s = 0;
      for (int k = 0; k < hc; ++k) s += C[j * hc + k];
      for (int k = 0; k < hc; ++k) C[j * hc + k] /= (s + eps);
    }
  };
  col_norm();
  for (int it = 1; it < iters; ++it) {
    row_norm();
    col_norm();
  }
}

float softplus(float z) { return std::fmax(z, 0.f) + std::log1p(std::exp(-std::fabs(z))); }
float sigmoid(float z) { return 1.f / (1.f + std::exp(-z)); }
float silu(float z) { return z / (1.f + std::exp(-z)); }

}  // namespace dsv4::kernels
