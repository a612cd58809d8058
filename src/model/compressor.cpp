#include "model/compressor.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/linear.h"

namespace dsv4::model {

void compressor_project(const CompressorWeights& w, const float* xn, const BatchLayout& b, std::vector<float>& a,
                        std::vector<float>& g) {
  const int64_t N = b.n_rows(), D = b.config->dim, cols = int64_t(w.c) * w.width;
  a.resize(size_t(N * cols));
  g.resize(size_t(N * cols));
  // Reference: fp32 projections (bf16 weights upcast), no activation quantisation.
  b.backend->matmul(w.wkv, xn, N, D, a.data(), cols);
  b.backend->matmul(w.wgate, xn, N, D, g.data(), cols);
  const float* ape = w.ape.as<float>();
  for (int64_t r = 0; r < N; ++r) {
    const float* bias = ape + (b.rows[size_t(r)].pos % w.ratio) * cols;
    float* gr = g.data() + r * cols;
    for (int64_t i = 0; i < cols; ++i) gr[i] += bias[i];
  }
}

bool compressor_push(kernels::Backend& be, cache::CompressorState& st, const float* a, const float* g, int64_t pos,
                     float* entry) {
  const int m = st.ratio, W = st.width, cols = st.cols();
  if (m == 4) {
    // rows 0..3 = previous window, rows 4..7 = current window (full 2*W-wide rows).
    const int slot = 4 + int(pos % 4);
    std::copy(a, a + cols, st.kv.begin() + slot * cols);
    std::copy(g, g + cols, st.score.begin() + slot * cols);
    if ((pos + 1) % 4 != 0) return false;
    // 8 slots: previous window's first half (Ca, Ga), current window's second half (Cb, Gb); the
    // previous window's scores are -inf before the first window, so those slots weigh 0.
    const float* v[8];
    const float* sc[8];
    for (int r = 0; r < 4; ++r) {
      v[r] = &st.kv[size_t(r * cols)];
      sc[r] = &st.score[size_t(r * cols)];
      v[4 + r] = &st.kv[size_t((4 + r) * cols + W)];
      sc[4 + r] = &st.score[size_t((4 + r) * cols + W)];
    }
    be.softmax_pool(v, sc, 8, W, entry);
    // prev = cur (whole rows)
    std::copy(st.kv.begin() + 4 * cols, st.kv.begin() + 8 * cols, st.kv.begin());
    std::copy(st.score.begin() + 4 * cols, st.score.begin() + 8 * cols, st.score.begin());
    return true;
  }
  const int slot = int(pos % m);
  std::copy(a, a + cols, st.kv.begin() + slot * cols);
  std::copy(g, g + cols, st.score.begin() + slot * cols);
  if ((pos + 1) % m != 0) return false;
  constexpr int kMaxRatio = 256;
  DSV4_CHECK(m <= kMaxRatio, "compressor: ratio " + std::to_string(m) + " above " + std::to_string(kMaxRatio));
  const float* v[kMaxRatio];
  const float* sc[kMaxRatio];
  for (int s = 0; s < m; ++s) {
    v[s] = &st.kv[size_t(s * cols)];
    sc[s] = &st.score[size_t(s * cols)];
  }
  be.softmax_pool(v, sc, m, W, entry);
  return true;
}

}  // namespace dsv4::model
