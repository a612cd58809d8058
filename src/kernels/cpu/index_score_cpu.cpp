// CPU lightning-indexer scoring with GCC vector extensions: 16-, 8- or 4-float vectors as the
// running ISA holds them in registers (dispatch.h); compiled for each ISA and picked at run time
// like the matmul kernels.
#include <bit>
#include <cmath>
#include <cstring>
#if defined(__x86_64__) && !defined(__clang__) && !defined(DSV4_KERNEL_ISA_BASELINE)
#include <immintrin.h>
#define DSV4_INDEX_I8_AVX2 1
#endif
#if defined(__aarch64__) && !defined(__clang__) && !defined(DSV4_KERNEL_ISA_BASELINE)
#include <arm_neon.h>
#include <asm/hwcap.h>
#include <sys/auxv.h>
#define DSV4_INDEX_I8_DOTPROD 1
#endif

#include "core/dtype.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/index_score.h"

// The vector helpers below are inlined into each clone; their by-value ABI never crosses a call.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace dsv4::kernels {

namespace {
// Reference numerics: every score of n_rows rows of n keys rounded to bf16.
void round_scores_bf16(float* out, int64_t n_rows, int64_t n, int64_t out_stride) {
  for (int64_t i = 0; i < n_rows; ++i)
    for (int64_t l = 0; l < n; ++l) out[i * out_stride + l] = dsv4::round_bf16(out[i * out_stride + l]);
}

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
  const V nz = neg_zero_opaque<W>();  // the factor goes on by a multiply-add (see dispatch.h)
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
          const V v = vec_cast<V>(t) * f + nz;
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
  if (round_bf16) round_scores_bf16(out, n_rows, n_tiles * kIndexTile, out_stride);
}

// ---- integer scoring -------------------------------------------------------------------------

bool index_query_i8(const float* q, int64_t Hi, int64_t Di, int8_t* q8, float* qscale, int32_t* corr) {
  const int64_t nb = Di / 32;
  if (Di % 32 != 0) return false;
  for (int64_t h = 0; h < Hi; ++h)
    for (int64_t b = 0; b < nb; ++b) {
      const float* v = q + h * Di + b * 32;
      float amax = 0.f;
      for (int d = 0; d < 32; ++d) {
        const float a = std::fabs(v[d]);
        if (!(a <= 3.0e38f)) return false;  // NaN or infinite
        amax = a > amax ? a : amax;
      }
      // the FP4 simulation's scale for this amax: e >= -126 (its floor); an FP4-simulated block's
      // values are multiples of 2^(e-1) of at most 12 units (re-deriving the scale from the
      // simulated values gives the original or a smaller power of two, with the same values)
      const int e = int(fp4_scale_for_amax(amax)) - 127;
      const float up = e8m0_to_f32(uint8_t(e - 1 + 127)), down = e8m0_to_f32(uint8_t(1 - e + 127));
      int32_t sum = 0;
      for (int d = 0; d < 32; ++d) {
        const float t = v[d] * down;
        if (!(std::fabs(t) <= 12.f) || t != std::nearbyint(t) || t * up != v[d]) return false;
        q8[h * Di + b * 32 + d] = int8_t(t);
        sum += int32_t(t);
      }
      qscale[h * nb + b] = up;
      corr[h * nb + b] = 12 * sum;
    }
  return true;
}

namespace {
// An e2m1 code as the integer tiles' byte 2 x value + 12.
alignas(16) constexpr uint8_t kKeyByte[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};
// A packed byte (two codes, low nibble first) as its two key bytes.
struct KeyBytes {
  uint16_t t[256];
  constexpr KeyBytes() : t{} {
    for (int b = 0; b < 256; ++b) t[b] = uint16_t(kKeyByte[b & 15] | (kKeyByte[b >> 4] << 8));
  }
};
constexpr KeyBytes kKeyBytes;

// Key l of a tile, scalar: its 2 packed bytes per (block, group) through kKeyBytes; l >= n: zeros.
void key_i8_scalar(const uint8_t* const* keys, int64_t l, int64_t n, int64_t Di, uint8_t* dst) {
  const int64_t nbg = Di / 32 * 8;
  if (l >= n) {
    for (int64_t bg = 0; bg < nbg; ++bg) std::memset(dst + (bg * kIndexTile + l) * 4, 12, 4);
    return;
  }
  const uint8_t* k = keys[l];
  for (int64_t bg = 0; bg < nbg; ++bg) {
    const uint32_t v = uint32_t(kKeyBytes.t[k[2 * bg]]) | (uint32_t(kKeyBytes.t[k[2 * bg + 1]]) << 16);
    std::memcpy(dst + (bg * kIndexTile + l) * 4, &v, 4);
  }
}

#if DSV4_INDEX_I8_AVX2
// Keys l0 .. l0 + 3, vector: a block's 16 packed bytes -> nibbles -> bytes (vpshufb on the table),
// interleaved back into dim order, then the 4 keys' dwords of each group transposed into the
// 16 contiguous bytes the tile keeps for them.
__attribute__((target("arch=x86-64-v3"))) void keys4_i8_sse(const uint8_t* const* keys, int64_t l0, int64_t Di,
                                                          uint8_t* dst) {
  const __m128i table = _mm_load_si128(reinterpret_cast<const __m128i*>(kKeyByte));
  const __m128i low4 = _mm_set1_epi8(0x0f);
  for (int64_t b = 0; b < Di / 32; ++b) {
    __m128 d[2][4];  // [dims 0-15 / 16-31][key]
    for (int i = 0; i < 4; ++i) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(keys[l0 + i] + 16 * b));
      const __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(v, low4));
      const __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(v, 4), low4));
      d[0][i] = _mm_castsi128_ps(_mm_unpacklo_epi8(lo, hi));
      d[1][i] = _mm_castsi128_ps(_mm_unpackhi_epi8(lo, hi));
    }
    for (int half = 0; half < 2; ++half) {
      __m128 r0 = d[half][0], r1 = d[half][1], r2 = d[half][2], r3 = d[half][3];
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // row g: the 4 keys' dims 4g .. 4g + 3
      const __m128 rows[4] = {r0, r1, r2, r3};
      for (int g = 0; g < 4; ++g)
        _mm_storeu_ps(reinterpret_cast<float*>(dst + ((b * 8 + half * 4 + g) * kIndexTile + l0) * 4), rows[g]);
    }
  }
}
#endif
}  // namespace

void decode_fp4_keys_i8(const uint8_t* const* keys, int64_t n, int64_t Di, uint8_t* dst, float* kscale) {
  const int64_t nb = Di / 32, packed = Di / 2;
  int64_t l = 0;
#if DSV4_INDEX_I8_AVX2
  if (vector_floats() >= 8)
    for (; l + 4 <= n; l += 4) keys4_i8_sse(keys, l, Di, dst);
#endif
  for (; l < kIndexTile; ++l) key_i8_scalar(keys, l, n, Di, dst);
  for (l = 0; l < kIndexTile; ++l)
    for (int64_t b = 0; b < nb; ++b) kscale[b * kIndexTile + l] = l < n ? e8m0_to_f32(keys[l][packed + b]) * 0.5f : 0.f;
}

namespace {
// The scalar twin: the same integers, the same float operations in the same order.
void scores_i8_scalar(const uint8_t* kt, const float* ks, int64_t n_tiles, int64_t Di, int64_t Hi, const int8_t* q8,
                      const float* qscale, const int32_t* corr, const float* w, float* out) {
  const int64_t nb = Di / 32;
  for (int64_t t = 0; t < n_tiles; ++t) {
    const uint8_t* k = kt + t * index_tile_i8_bytes(Di);
    const float* s = ks + t * nb * kIndexTile;
    for (int64_t l = 0; l < kIndexTile; ++l) {
      float tot = 0.f;
      for (int64_t h = 0; h < Hi; ++h) {
        float dot = 0.f;
        for (int64_t b = 0; b < nb; ++b) {
          int32_t S = 0;
          for (int64_t g = 0; g < 8; ++g)
            for (int j = 0; j < 4; ++j)
              S += int32_t(q8[h * Di + b * 32 + g * 4 + j]) * int32_t(k[((b * 8 + g) * kIndexTile + l) * 4 + j]);
          S -= corr[h * nb + b];
          const float unit = qscale[h * nb + b] * s[b * kIndexTile + l];
          const float term = float(S) * unit;
          dot = dot + term;
        }
        tot = std::fma(w[h], dot < 0.f ? 0.f : dot, tot);
      }
      out[t * kIndexTile + l] = tot;
    }
  }
}

#if DSV4_INDEX_I8_AVX2
// AVX2: 8-bit products of 8 keys x 4 dims per vpmaddubsw (keys unsigned, the broadcast query bytes
// signed), pairs summed in 16 bits over a block's 8 groups (at most 4608), then into one 32-bit sum
// per key. NH heads per pass share each key load (loads, not multiplies, bound this loop).
template <int NH>
__attribute__((target("arch=x86-64-v3"), always_inline)) inline void heads_i8_avx2(
    const uint8_t* k, const float* s, int64_t Di, const int8_t* qh, const float* qsh, const int32_t* ch, const float* wh,
    __m256& tot0, __m256& tot1) {
  const int64_t nb = Di / 32;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 dot[NH][2];
  for (int j = 0; j < NH; ++j) dot[j][0] = dot[j][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m256i a[NH][2];
    for (int j = 0; j < NH; ++j) a[j][0] = a[j][1] = _mm256_setzero_si256();
    const uint8_t* kb = k + b * 8 * kIndexTile * 4;
#pragma GCC unroll 4
    for (int g = 0; g < 8; ++g) {
      const __m256i k0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kb + g * kIndexTile * 4));
      const __m256i k1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kb + g * kIndexTile * 4 + 32));
      for (int j = 0; j < NH; ++j) {
        int32_t qw;
        std::memcpy(&qw, qh + j * Di + b * 32 + g * 4, 4);
        const __m256i qv = _mm256_set1_epi32(qw);
        a[j][0] = _mm256_add_epi16(a[j][0], _mm256_maddubs_epi16(k0, qv));
        a[j][1] = _mm256_add_epi16(a[j][1], _mm256_maddubs_epi16(k1, qv));
      }
    }
    const __m256 s0 = _mm256_loadu_ps(s + b * kIndexTile), s1 = _mm256_loadu_ps(s + b * kIndexTile + 8);
    for (int j = 0; j < NH; ++j) {
      const __m256i c = _mm256_set1_epi32(ch[j * nb + b]);
      const __m256 f = _mm256_set1_ps(qsh[j * nb + b]);
      const __m256i S0 = _mm256_sub_epi32(_mm256_madd_epi16(a[j][0], ones), c);
      const __m256i S1 = _mm256_sub_epi32(_mm256_madd_epi16(a[j][1], ones), c);
      dot[j][0] = _mm256_add_ps(dot[j][0], _mm256_mul_ps(_mm256_cvtepi32_ps(S0), _mm256_mul_ps(f, s0)));
      dot[j][1] = _mm256_add_ps(dot[j][1], _mm256_mul_ps(_mm256_cvtepi32_ps(S1), _mm256_mul_ps(f, s1)));
    }
  }
  const __m256 zero = _mm256_setzero_ps();
  for (int j = 0; j < NH; ++j) {  // heads in order; max(dot, 0) as dot < 0 ? 0 : dot (NaN, -0 kept)
    const __m256 w = _mm256_set1_ps(wh[j]);
    const __m256 d0 = _mm256_andnot_ps(_mm256_cmp_ps(dot[j][0], zero, _CMP_LT_OQ), dot[j][0]);
    const __m256 d1 = _mm256_andnot_ps(_mm256_cmp_ps(dot[j][1], zero, _CMP_LT_OQ), dot[j][1]);
    tot0 = _mm256_fmadd_ps(w, d0, tot0);
    tot1 = _mm256_fmadd_ps(w, d1, tot1);
  }
}

__attribute__((target("arch=x86-64-v3"))) void scores_i8_avx2(const uint8_t* kt, const float* ks, int64_t n_tiles,
                                                             int64_t Di, int64_t Hi, const int8_t* q8,
                                                             const float* qscale, const int32_t* corr,
                                                             const float* w, float* out) {
  const int64_t nb = Di / 32;
  for (int64_t t = 0; t < n_tiles; ++t) {
    const uint8_t* k = kt + t * index_tile_i8_bytes(Di);
    const float* s = ks + t * nb * kIndexTile;
    __m256 tot0 = _mm256_setzero_ps(), tot1 = _mm256_setzero_ps();
    int64_t h = 0;
    for (; h + 2 <= Hi; h += 2)
      heads_i8_avx2<2>(k, s, Di, q8 + h * Di, qscale + h * nb, corr + h * nb, w + h, tot0, tot1);
    for (; h < Hi; ++h) heads_i8_avx2<1>(k, s, Di, q8 + h * Di, qscale + h * nb, corr + h * nb, w + h, tot0, tot1);
    _mm256_storeu_ps(out + t * kIndexTile, tot0);
    _mm256_storeu_ps(out + t * kIndexTile + 8, tot1);
  }
}
#endif
#if DSV4_INDEX_I8_DOTPROD
// ARM64 with the dot-product extension (ARMv8.2 "dotprod": Graviton 2+, Apple M1+, Cortex-A76+,
// checked at run time): one sdot per 4 keys x 4 dims, the tile's bytes (2 x e2m1 + 12, 0..24)
// taken as signed, into 32-bit sums directly.
bool has_dotprod() {
  static const bool b = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
  return b;
}

__attribute__((target("arch=armv8.2-a+dotprod"))) void scores_i8_dotprod(const uint8_t* kt, const float* ks,
                                                                        int64_t n_tiles, int64_t Di, int64_t Hi,
                                                                        const int8_t* q8, const float* qscale,
                                                                        const int32_t* corr, const float* w,
                                                                        float* out) {
  const int64_t nb = Di / 32;
  const float32x4_t zero = vdupq_n_f32(0.f);
  for (int64_t t = 0; t < n_tiles; ++t) {
    const uint8_t* k = kt + t * index_tile_i8_bytes(Di);
    const float* s = ks + t * nb * kIndexTile;
    float32x4_t tot[4] = {zero, zero, zero, zero};
    for (int64_t h = 0; h < Hi; ++h) {
      float32x4_t dot[4] = {zero, zero, zero, zero};
      const int8_t* qh = q8 + h * Di;
      for (int64_t b = 0; b < nb; ++b) {
        int32x4_t a[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
        const uint8_t* kb = k + b * 8 * kIndexTile * 4;
        for (int g = 0; g < 8; ++g) {
          int32_t qw;
          std::memcpy(&qw, qh + b * 32 + g * 4, 4);
          const int8x16_t qv = vreinterpretq_s8_s32(vdupq_n_s32(qw));
          for (int v = 0; v < 4; ++v)
            a[v] = vdotq_s32(a[v], vreinterpretq_s8_u8(vld1q_u8(kb + g * kIndexTile * 4 + v * 16)), qv);
        }
        const int32x4_t c = vdupq_n_s32(corr[h * nb + b]);
        const float32x4_t f = vdupq_n_f32(qscale[h * nb + b]);
        for (int v = 0; v < 4; ++v) {
          const float32x4_t u = vmulq_f32(f, vld1q_f32(s + b * kIndexTile + v * 4));
          dot[v] = vaddq_f32(dot[v], vmulq_f32(vcvtq_f32_s32(vsubq_s32(a[v], c)), u));
        }
      }
      const float32x4_t wh = vdupq_n_f32(w[h]);
      for (int v = 0; v < 4; ++v) {  // max(dot, 0) as dot < 0 ? 0 : dot (NaN, -0 kept)
        const float32x4_t r = vbslq_f32(vcltq_f32(dot[v], zero), zero, dot[v]);
        tot[v] = vfmaq_f32(tot[v], wh, r);
      }
    }
    for (int v = 0; v < 4; ++v) vst1q_f32(out + t * kIndexTile + v * 4, tot[v]);
  }
}
#endif
}  // namespace

void index_scores_tiles_i8(const uint8_t* kt, const float* ks, int64_t n_tiles, int64_t Di, int64_t Hi,
                           const int8_t* q8, const float* qscale, const int32_t* corr, const float* w,
                           int64_t w_stride, int64_t n_rows, float* out, int64_t out_stride, bool round_bf16) {
  const int64_t qn = Hi * Di, sn = Hi * (Di / 32);
  for (int64_t r = 0; r < n_rows; ++r) {
#if DSV4_INDEX_I8_AVX2
    if (vector_floats() >= 8) {
      scores_i8_avx2(kt, ks, n_tiles, Di, Hi, q8 + r * qn, qscale + r * sn, corr + r * sn, w + r * w_stride,
                     out + r * out_stride);
      continue;
    }
#endif
#if DSV4_INDEX_I8_DOTPROD
    if (has_dotprod()) {
      scores_i8_dotprod(kt, ks, n_tiles, Di, Hi, q8 + r * qn, qscale + r * sn, corr + r * sn, w + r * w_stride,
                        out + r * out_stride);
      continue;
    }
#endif
    scores_i8_scalar(kt, ks, n_tiles, Di, Hi, q8 + r * qn, qscale + r * sn, corr + r * sn, w + r * w_stride,
                     out + r * out_stride);
  }
  if (round_bf16) round_scores_bf16(out, n_rows, n_tiles * kIndexTile, out_stride);
}

}  // namespace dsv4::kernels
