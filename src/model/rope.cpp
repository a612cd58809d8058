#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "kernels/ops.h"

namespace dsv4::model {

std::vector<float> rope_frequencies(int rope_dim, float theta, float factor, int64_t original_seq_len,
                                    float beta_fast, float beta_slow, bool yarn) {
  const int np = rope_dim / 2;
  std::vector<float> w(static_cast<size_t>(np));
  for (int i = 0; i < np; ++i) w[size_t(i)] = float(1.0 / std::pow(double(theta), double(2 * i) / rope_dim));
  if (yarn && original_seq_len > 0 && factor > 1.f) {
    auto corr = [&](float beta) {
      return rope_dim * std::log(double(original_seq_len) / (beta * 2 * M_PI)) / (2 * std::log(double(theta)));
    };
    double low = std::max(std::floor(corr(beta_fast)), 0.0);
    double high = std::min(std::ceil(corr(beta_slow)), double(rope_dim - 1));
    if (high == low) high += 0.001;
    for (int i = 0; i < np; ++i) {
      double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
      double wi = w[size_t(i)];
      w[size_t(i)] = float(wi / factor * ramp + wi * (1 - ramp));
    }
  }
  return w;
}

RopeTable::RopeTable(const Config& c, bool compressed_layer) {
  omega_ = compressed_layer ? rope_frequencies(c.rope_head_dim, c.compress_rope_theta, c.rope_factor,
                                               c.original_seq_len, c.beta_fast, c.beta_slow, true)
                            : rope_frequencies(c.rope_head_dim, c.rope_theta, 1.f, 0, 0, 0, false);
}

}  // namespace dsv4::model
