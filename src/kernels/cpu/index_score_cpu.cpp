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

// R query rows x G tiles at once: R*G*(16 / W) independent accumulator chains (enough to hide the
// multiply-add latency: a decode step scores one row, so there the tiles supply the chains), one
// load per key vector, one broadcast per row. Same arithmetic per (row, key) for every R, G and W.
template <int R, int G, int W>
DSV4_CLONES void score_block(const float* kt, int64_t tile_stride, int64_t Di, int64_t Hi, const float* q,
                             int64_t q_stride, const float* w, int64_t w_stride, float* out, int64_t out_stride) {
  using V = typename Vec<W>::type;
  constexpr int P = kIndexTile / W;
  V tot[R][G][P] = {};
  for (int64_t h = 0; h < Hi; ++h) {
    V acc[R][G][P] = {};
    const float* qh = q + h * Di;
    for (int64_t d = 0; d < Di; ++d) {
      V k[G][P];  // one load per vector (a single 64-byte copy into two 32-byte halves stalls)
      for (int g = 0; g < G; ++g)
        for (int p = 0; p < P; ++p) std::memcpy(&k[g][p], kt + g * tile_stride + d * kIndexTile + p * W, sizeof(V));
      for (int i = 0; i < R; ++i) {
        const float qv = qh[i * q_stride + d];
        for (int g = 0; g < G; ++g)
          for (int p = 0; p < P; ++p) acc[i][g][p] += qv * k[g][p];
      }
    }
    for (int i = 0; i < R; ++i) {
      const float wh = w[i * w_stride + h];
      for (int g = 0; g < G; ++g)
        for (int p = 0; p < P; ++p) tot[i][g][p] += wh * relu(acc[i][g][p]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int g = 0; g < G; ++g) std::memcpy(out + i * out_stride + g * kIndexTile, tot[i][g], sizeof tot[i][g]);
}

// Rows in blocks of R (tiles GR at a time), the remaining rows one by one (tiles G1 at a time).
template <int R, int GR, int G1, int W>
void scores(const float* kt, int64_t n_tiles, int64_t Di, int64_t Hi, const float* q, int64_t q_stride, const float* w,
            int64_t w_stride, int64_t n_rows, float* out, int64_t out_stride) {
  const int64_t ts = Di * kIndexTile;
  auto rows = [&]<int RR, int GG>(int64_t r) {
    int64_t t = 0;
    for (; t + GG <= n_tiles; t += GG)
      score_block<RR, GG, W>(kt + t * ts, ts, Di, Hi, q + r * q_stride, q_stride, w + r * w_stride, w_stride,
                             out + r * out_stride + t * kIndexTile, out_stride);
    for (; t < n_tiles; ++t)
      score_block<RR, 1, W>(kt + t * ts, ts, Di, Hi, q + r * q_stride, q_stride, w + r * w_stride, w_stride,
                            out + r * out_stride + t * kIndexTile, out_stride);
  };
  int64_t r = 0;
  for (; r + R <= n_rows; r += R) rows.template operator()<R, GR>(r);
  for (; r < n_rows; ++r) rows.template operator()<1, G1>(r);
}
}  // namespace

void index_scores_tiles(const float* kt, int64_t n_tiles, int64_t Di, int64_t Hi, const float* q, int64_t q_stride,
                        const float* w, int64_t w_stride, int64_t n_rows, float* out, int64_t out_stride,
                        bool round_bf16) {
  switch (vector_floats()) {  // 8 accumulator chains in every case
    case 16: scores<4, 2, 8, 16>(kt, n_tiles, Di, Hi, q, q_stride, w, w_stride, n_rows, out, out_stride); break;
    case 8: scores<2, 2, 4, 8>(kt, n_tiles, Di, Hi, q, q_stride, w, w_stride, n_rows, out, out_stride); break;
    default: scores<2, 1, 2, 4>(kt, n_tiles, Di, Hi, q, q_stride, w, w_stride, n_rows, out, out_stride); break;
  }
  if (round_bf16)
    for (int64_t i = 0; i < n_rows; ++i)
      for (int64_t l = 0; l < n_tiles * kIndexTile; ++l) out[i * out_stride + l] = dsv4::round_bf16(out[i * out_stride + l]);
}

}  // namespace dsv4::kernels
