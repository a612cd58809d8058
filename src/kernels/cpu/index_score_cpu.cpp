// CPU lightning-indexer scoring with GCC vector extensions: 16-, 8- or 4-float vectors as the
// running ISA holds them in registers (dispatch.h); compiled for each ISA and picked at run time
// like the matmul kernels.
#include <cstring>

#include "core/dtype.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/index_score.h"

// The vector helpers below are inlined into each clone; their by-value ABI never crosses a call.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace dsv4::kernels {

namespace {
// Lane-wise max(x, 0) as std::max(x, 0.f) computes it (keeps -0 and NaN).
template <class V>
inline V relu(V x) {
  const V zero = {};
  return x < zero ? zero : x;
}

// R query rows at once (independent accumulator chains, one key load per R rows); the 16 keys of
// the tile are 16 / W vectors of W lanes. Same arithmetic per (row, key) for every R and W.
template <int R, int W>
DSV4_CLONES void scores_rows(const float* kt, int64_t Di, int64_t Hi, const float* q, int64_t q_stride,
                             const float* w, int64_t w_stride, int64_t n_rows, float* out, int64_t out_stride) {
  using V = typename Vec<W>::type;
  constexpr int P = kIndexTile / W;
  int64_t r = 0;
  for (; r + R <= n_rows; r += R) {
    V tot[R][P] = {};
    for (int64_t h = 0; h < Hi; ++h) {
      V acc[R][P] = {};
      const float* qh = q + r * q_stride + h * Di;
      for (int64_t d = 0; d < Di; ++d) {
        V k[P];  // one load per vector (a single 64-byte copy into two 32-byte halves stalls)
        for (int p = 0; p < P; ++p) std::memcpy(&k[p], kt + d * kIndexTile + p * W, sizeof(V));
        for (int i = 0; i < R; ++i)
          for (int p = 0; p < P; ++p) acc[i][p] += qh[i * q_stride + d] * k[p];
      }
      for (int i = 0; i < R; ++i)
        for (int p = 0; p < P; ++p) tot[i][p] += w[(r + i) * w_stride + h] * relu(acc[i][p]);
    }
    for (int i = 0; i < R; ++i) std::memcpy(out + (r + i) * out_stride, tot[i], sizeof tot[i]);
  }
  if (r < n_rows) scores_rows<1, W>(kt, Di, Hi, q + r * q_stride, q_stride, w + r * w_stride, w_stride, n_rows - r,
                                    out + r * out_stride, out_stride);
}
}  // namespace

void index_scores_tile(const float* kt, int64_t Di, int64_t Hi, const float* q, int64_t q_stride, const float* w,
                       int64_t w_stride, int64_t n_rows, float* out, int64_t out_stride, bool round_bf16) {
  switch (vector_floats()) {
    case 16: scores_rows<4, 16>(kt, Di, Hi, q, q_stride, w, w_stride, n_rows, out, out_stride); break;
    case 8: scores_rows<2, 8>(kt, Di, Hi, q, q_stride, w, w_stride, n_rows, out, out_stride); break;
    default: scores_rows<1, 4>(kt, Di, Hi, q, q_stride, w, w_stride, n_rows, out, out_stride); break;
  }
  if (round_bf16)
    for (int64_t i = 0; i < n_rows; ++i)
      for (int l = 0; l < kIndexTile; ++l) out[i * out_stride + l] = dsv4::round_bf16(out[i * out_stride + l]);
}

}  // namespace dsv4::kernels
