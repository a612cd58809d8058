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

// R query rows x HB heads at once against one tile: R*HB*(16 / W) independent accumulator chains
// (enough to hide the multiply-add latency; a decode step scores one row, so there the heads
// supply them), one load per key vector per R*HB dot products, one broadcast per row and head.
// (Several tiles at once instead were 2-3x slower: tiles 8 KiB apart alias in L1.) The heads of a
// pass are added to the score in order, so the arithmetic per (row, key) is the same for every R,
// HB and W.
template <int R, int HB, int W>
DSV4_CLONES void score_block(const float* kt, int64_t Di, int64_t Hi, const float* q, int64_t q_stride, const float* w,
                             int64_t w_stride, float* out, int64_t out_stride) {
  using V = typename Vec<W>::type;
  constexpr int P = kIndexTile / W;
  V tot[R][P] = {};
  auto heads = [&]<int NH>(int64_t h) {
    V acc[R][NH][P] = {};
    for (int64_t d = 0; d < Di; ++d) {
      V k[P];  // one load per vector (a single 64-byte copy into two 32-byte halves stalls)
      for (int p = 0; p < P; ++p) std::memcpy(&k[p], kt + d * kIndexTile + p * W, sizeof(V));
      for (int i = 0; i < R; ++i)
        for (int j = 0; j < NH; ++j) {
          const float qv = q[i * q_stride + (h + j) * Di + d];
          for (int p = 0; p < P; ++p) acc[i][j][p] += qv * k[p];
        }
    }
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < NH; ++j) {
        const float wh = w[i * w_stride + h + j];
        for (int p = 0; p < P; ++p) tot[i][p] += wh * relu(acc[i][j][p]);
      }
  };
  int64_t h = 0;
  for (; h + HB <= Hi; h += HB) heads.template operator()<HB>(h);
  for (; h < Hi; ++h) heads.template operator()<1>(h);
  for (int i = 0; i < R; ++i) std::memcpy(out + i * out_stride, tot[i], sizeof tot[i]);
}

// Rows in blocks of R (HR heads per pass), the remaining rows one by one (H1 heads per pass);
// tile by tile.
template <int R, int HR, int H1, int W>
void scores(const float* kt, int64_t n_tiles, int64_t Di, int64_t Hi, const float* q, int64_t q_stride, const float* w,
            int64_t w_stride, int64_t n_rows, float* out, int64_t out_stride) {
  const int64_t ts = Di * kIndexTile;
  int64_t r = 0;
  for (; r + R <= n_rows; r += R)
    for (int64_t t = 0; t < n_tiles; ++t)
      score_block<R, HR, W>(kt + t * ts, Di, Hi, q + r * q_stride, q_stride, w + r * w_stride, w_stride,
                            out + r * out_stride + t * kIndexTile, out_stride);
  for (; r < n_rows; ++r)
    for (int64_t t = 0; t < n_tiles; ++t)
      score_block<1, H1, W>(kt + t * ts, Di, Hi, q + r * q_stride, q_stride, w + r * w_stride, w_stride,
                            out + r * out_stride + t * kIndexTile, out_stride);
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
