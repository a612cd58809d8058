// CPU lightning-indexer scoring with GCC vector extensions: 16-, 8- or 4-float vectors as the
// running ISA holds them in registers (dispatch.h); compiled for each ISA and picked at run time
// like the matmul kernels.
#include <bit>
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
DSV4_VEC_INLINE V relu(V x) {
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
template <int W>
struct IVec {
  typedef int32_t type __attribute__((vector_size(4 * W)));
};

template <int W>
DSV4_CLONES void decode_keys_transposed(const uint8_t* const* keys, int64_t n, int64_t Di, float* dst, int64_t ld) {
  using V = typename Vec<W>::type;
  using I = typename IVec<W>::type;
  const int64_t packed = Di / 2;
  bool odd_scale = false;  // a scale > 2^1: those keys' blocks are redone by the scalar formula
  for (int64_t l0 = 0; l0 < kIndexTile; l0 += W) {
    for (int64_t blk = 0; blk < Di / 32; ++blk) {
      V f = {};  // 2^126 x scale per key (lanes past n: 0)
      for (int j = 0; j < W; ++j) {
        if (l0 + j >= n) continue;
        const uint32_t e = keys[l0 + j][packed + blk];
        odd_scale |= e > 128;
        f[j] = e > 128 ? 0.f : std::bit_cast<float>((e + 126u) << 23);
      }
      for (int64_t q = 0; q < 4; ++q) {  // words of 8 codes: dims 32 blk + 8 q ..
        I w = {};
        for (int j = 0; j < W; ++j)
          if (l0 + j < n) std::memcpy(&w[j], keys[l0 + j] + 16 * blk + 4 * q, 4);
        float* out = dst + (32 * blk + 8 * q) * ld + l0;
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {  // nibble k to the top, then sign to bit 31, e1 e0 m to bits 24..22
          const I t = ((w << (28 - 4 * k)) >> 6) & int32_t(0x81c00000u);
          const V v = vec_cast<V>(t) * f;
          std::memcpy(out + k * ld, &v, sizeof v);
        }
      }
    }
  }
  if (!odd_scale) return;
  for (int64_t l = 0; l < n; ++l)
    for (int64_t blk = 0; blk < Di / 32; ++blk) {
      const uint8_t e = keys[l][packed + blk];
      if (e <= 128) continue;
      const float s = e8m0_to_f32(e);
      for (int64_t d = 32 * blk; d < 32 * blk + 32; ++d) {
        const uint8_t b = keys[l][d / 2];
        dst[d * ld + l] = e2m1_to_f32(d % 2 ? uint8_t(b >> 4) : uint8_t(b & 15)) * s;
      }
    }
}
}  // namespace

void decode_fp4_keys_transposed(const uint8_t* const* keys, int64_t n, int64_t Di, float* dst, int64_t ld) {
  switch (vector_floats()) {
    case 16: decode_keys_transposed<16>(keys, n, Di, dst, ld); break;
    case 8: decode_keys_transposed<8>(keys, n, Di, dst, ld); break;
    default: decode_keys_transposed<4>(keys, n, Di, dst, ld); break;
  }
}

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
