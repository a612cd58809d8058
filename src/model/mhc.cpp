#include "model/mhc.h"

#include <algorithm>
#include <cmath>

#include "kernels/linear.h"
#include "kernels/ops.h"

namespace dsv4::model {

using kernels::dot_f32;
using kernels::sigmoid;

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

// m = (fn . flatten(X)) * rsqrt(mean(X^2) + eps), one scalar over all hc*D values.
static void mix_logits(const float* X, const HcParams& p, const Config& c, int nmix, float* m) {
  const int64_t n = int64_t(c.hc_mult) * c.dim;
  float r = 1.f / std::sqrt(dot_f32(X, X, n) / float(n) + c.norm_eps);
  const float* fn = p.fn.as<float>();
  for (int i = 0; i < nmix; ++i) m[i] = dot_f32(fn + i * n, X, n) * r;
}

void hc_pre_one(const float* X, const HcParams& p, const Config& c, bool round_bf16, float* x_in, HcMix* mix) {
  const int hc = c.hc_mult, D = c.dim, nmix = c.hc_mix_dim();
  float m[64 * 66];
  mix_logits(X, p, c, nmix, m);
  const float* base = p.base.as<float>();
  const float* sc = p.scale.as<float>();
  float pre[64];
  mix->post.resize(size_t(hc));
  mix->comb.resize(size_t(hc * hc));
  for (int k = 0; k < hc; ++k) {
    pre[k] = sigmoid(m[k] * sc[0] + base[k]) + c.hc_eps;
    mix->post[size_t(k)] = 2.f * sigmoid(m[hc + k] * sc[1] + base[hc + k]);
  }
  for (int i = 0; i < hc * hc; ++i) mix->comb[size_t(i)] = m[2 * hc + i] * sc[2] + base[2 * hc + i];
  sinkhorn_split(mix->comb.data(), hc, c.hc_sinkhorn_iters, c.hc_eps);
  for (int d = 0; d < D; ++d) {
    float s = 0;
    for (int k = 0; k < hc; ++k) s += pre[k] * X[k * D + d];
    x_in[d] = round_bf16 ? dsv4::round_bf16(s) : s;
  }
}

void hc_post_one(float* X, const float* y, const HcMix& mix, const Config& c, bool round_bf16) {
  const int hc = c.hc_mult, D = c.dim;
  float old[64];
  for (int d = 0; d < D; ++d) {
    for (int j = 0; j < hc; ++j) old[j] = X[j * D + d];
    for (int k = 0; k < hc; ++k) {
      float s = mix.post[size_t(k)] * y[d];
      for (int j = 0; j < hc; ++j) s += mix.comb[size_t(j * hc + k)] * old[j];
      X[k * D + d] = round_bf16 ? dsv4::round_bf16(s) : s;
    }
  }
}

void hc_head_one(const float* X, const HcParams& p, const Config& c, bool round_bf16, float* x) {
  const int hc = c.hc_mult, D = c.dim;
  float m[64];
  mix_logits(X, p, c, hc, m);
  const float* base = p.base.as<float>();
  const float* sc = p.scale.as<float>();
  float pre[64];
  for (int k = 0; k < hc; ++k) pre[k] = sigmoid(m[k] * sc[0] + base[k]) + c.hc_eps;
  for (int d = 0; d < D; ++d) {
    float s = 0;
    for (int k = 0; k < hc; ++k) s += pre[k] * X[k * D + d];
    x[d] = round_bf16 ? dsv4::round_bf16(s) : s;
  }
}

}  // namespace dsv4::model
