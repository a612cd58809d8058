// CPU matmul with in-kernel weight decoding. Hot loops are compiled for several ISAs
// (target_clones: AVX-512, AVX2, baseline) and picked at run time by the loader (ifunc), so the
// shipped binary runs on any x86-64; other architectures get the portable build.
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/linear.h"

// 64-byte vector helpers are inlined into each clone; their by-value ABI never crosses a call.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace dsv4::kernels {

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::f32: return "f32";
    case WeightFormat::bf16: return "bf16";
    case WeightFormat::fp8_block128: return "fp8(e4m3, 128x128 e8m0)";
    case WeightFormat::fp4_block32: return "fp4(e2m1, 1x32 e8m0)";
  }
  return "?";
}

Linear Linear::rows(int64_t r0, int64_t n) const {
  DSV4_CHECK(r0 >= 0 && r0 + n <= out, "Linear::rows out of range");
  Linear l = *this;
  l.row0 += r0;
  l.out = n;
  return l;
}

Linear Linear::cols(int64_t c0, int64_t n) const {
  DSV4_CHECK(c0 >= 0 && c0 + n <= in, "Linear::cols out of range");
  Linear l = *this;
  l.col0 += c0;
  l.in = n;
  return l;
}

// e4m3 codes decoded with shifts and one multiply instead of a 256-entry table lookup, so that
// the FP8 loop below vectorises (bench/matmul_bench: FP8 decode-shaped matmul 3.4 -> 4.0 GB/s of
// weights). The code's exponent and mantissa bits are placed in an fp32's and the result rescaled
// by 2^(127 - 7): normal codes land on normal fp32 values, subnormal codes on fp32 subnormals,
// and the rescaling is exact for both. Equal to kE4m3Table for every code, NaN codes included
// (tests/kernels/matmul_test.cpp).
namespace {
inline float e4m3_value(uint32_t b) {
  const uint32_t em = b & 0x7fu;
  const uint32_t mag = std::bit_cast<uint32_t>(std::bit_cast<float>(em << 20) * 0x1p120f);
  const uint32_t nan = (0u - uint32_t(em == 0x7fu)) & 0x7fc00000u;  // 0x7f/0xff are NaN (e4m3fn)
  return std::bit_cast<float>(mag | nan | ((b & 0x80u) << 24));
}
}  // namespace

// Scales are hoisted per block (128 columns for FP8, 32 for FP4) so the inner loops are plain
// decodes (e4m3_value, the e2m1 table) and multiplies.
DSV4_CLONES void Linear::decode_row(int64_t r, float* dst) const {
  const int64_t ar = row0 + r;
  switch (fmt) {
    case WeightFormat::f32: {
      const float* p = w.as<float>() + ar * ld + col0;
      std::copy(p, p + in, dst);
      break;
    }
    case WeightFormat::bf16: {
      const uint16_t* p = w.as<uint16_t>() + ar * ld + col0;
      uint32_t* d = reinterpret_cast<uint32_t*>(dst);
      for (int64_t i = 0; i < in; ++i) d[i] = uint32_t(p[i]) << 16;
      break;
    }
    case WeightFormat::fp8_block128: {
      const uint8_t* p = w.as<uint8_t>() + ar * ld + col0;
      const uint8_t* srow = scale.as<uint8_t>() + (ar / 128) * scale.dim(1);
      for (int64_t i = 0; i < in;) {
        const int64_t c = col0 + i;
        const int64_t end = std::min(in, i + (128 - c % 128));
        const float s = e8m0_to_f32(srow[c / 128]);
        for (int64_t k = i; k < end; ++k) dst[k] = e4m3_value(p[k]) * s;
        i = end;
      }
      break;
    }
    case WeightFormat::fp4_block32: {
      const uint8_t* p = w.as<uint8_t>() + ar * (ld / 2);
      const uint8_t* srow = scale.as<uint8_t>() + ar * scale.dim(1);
      if ((col0 & 31) == 0 && (in & 31) == 0) {
        for (int64_t i = 0; i < in; i += 32) {
          const int64_t c = col0 + i;
          const float s = e8m0_to_f32(srow[c / 32]);
          const uint8_t* pb = p + c / 2;
          for (int k = 0; k < 16; ++k) {  // a 16-entry table stays in L1: cheaper than the bit form here
            dst[i + 2 * k] = kE2m1Table[pb[k] & 0xf] * s;
            dst[i + 2 * k + 1] = kE2m1Table[pb[k] >> 4] * s;
          }
        }
      } else {
        for (int64_t i = 0; i < in; ++i) {
          const int64_t c = col0 + i;
          const uint8_t b = p[c >> 1];
          dst[i] = kE2m1Table[(c & 1) ? (b >> 4) : (b & 0xf)] * e8m0_to_f32(srow[c / 32]);
        }
      }
      break;
    }
  }
}

DSV4_CLONES float dot_f32(const float* a, const float* b, int64_t n) {
  // 16 independent partial sums in a fixed order: vectorises on every ISA and gives the same
  // result for the same ISA regardless of batch shape.
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) acc[i & 15] += a[i] * b[i];
  float s8[8];
  for (int j = 0; j < 8; ++j) s8[j] = acc[j] + acc[j + 8];
  float s4[4];
  for (int j = 0; j < 4; ++j) s4[j] = s8[j] + s8[j + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

namespace {
// dot_f32's final reduction of its 16 partial sums, in its order.
inline float reduce16(const float* acc) {
  float s8[8];
  for (int j = 0; j < 8; ++j) s8[j] = acc[j] + acc[j + 8];
  float s4[4];
  for (int j = 0; j < 4; ++j) s4[j] = s8[j] + s8[j + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}
}  // namespace

// R weight rows x T tokens of dot products at once (register blocking: each loaded vector is used
// T or R times), each computed exactly as dot_f32 computes it: lane j of 16 partial sums takes
// elements i with i % 16 == j in ascending order, the tail goes to lanes 0.., then the same
// reduction tree. So a (row, token) value does not depend on the batch it is computed in. The 16
// lanes are 16 / W vectors of W floats, W and the block from dispatch.h's vector_floats():
// AVX-512 4 x 4 blocks of one 64-byte vector, AVX2 2 x 2 of two 32-byte ones, otherwise 2 x 1 of
// four 16-byte ones.
template <int R, int T, int W>
DSV4_CLONES static void dot_block(const float* w, int64_t ldw, const float* x, int64_t ldx, int64_t n, float* out,
                                  int64_t ldo) {
  using V = typename Vec<W>::type;
  constexpr int P = 16 / W;
  V acc[R][T][P] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int p = 0; p < P; ++p) {
      V wv[R], xv[T];
      for (int r = 0; r < R; ++r) std::memcpy(&wv[r], w + r * ldw + i + p * W, sizeof(V));
      for (int t = 0; t < T; ++t) std::memcpy(&xv[t], x + t * ldx + i + p * W, sizeof(V));
      for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t][p] += wv[r] * xv[t];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      float a[16];
      std::memcpy(a, acc[r][t], sizeof a);
      for (int64_t k = i; k < n; ++k) a[k & 15] += w[r * ldw + k] * x[t * ldx + k];
      out[t * ldo + r] = reduce16(a);
    }
}

// The body of matmul for R x T blocks: weight rows decoded R at a time and reused for every
// token of the batch; leftover tokens and rows go through dot_f32 (same arithmetic).
template <int R, int T, int W>
static void matmul_blocked(const Linear& Wt, const float* xin, int64_t lx, int64_t n, float* y, int64_t ldy,
                           const MatmulOpts& opts, bool par) {
  const int64_t in = Wt.in, out = Wt.out;
  const int64_t rows_per_block = n == 1 ? 1 : R;
  const int64_t n_blocks = (out + rows_per_block - 1) / rows_per_block;
#pragma omp parallel if (par)
  {
    std::vector<float> wblk(static_cast<size_t>(R * in));
    float tile[R * T];
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t r0 = b * rows_per_block, nr = std::min(rows_per_block, out - r0);
      for (int64_t i = 0; i < nr; ++i) Wt.decode_row(r0 + i, &wblk[size_t(i * in)]);
      if (opts.weight_bf16)
        for (int64_t i = 0; i < nr * in; ++i) wblk[size_t(i)] = round_bf16(wblk[size_t(i)]);
      auto put = [&](int64_t t, int64_t r, float v) { y[t * ldy + r0 + r] = opts.out_bf16 ? round_bf16(v) : v; };
      int64_t t = 0;
      if (nr == R) {
        for (; t + T <= n; t += T) {
          dot_block<R, T, W>(wblk.data(), in, xin + t * lx, lx, in, tile, R);
          for (int64_t k = 0; k < T; ++k)
            for (int64_t i = 0; i < R; ++i) put(t + k, i, tile[k * R + i]);
        }
      }
      for (; t < n; ++t)
        for (int64_t i = 0; i < nr; ++i) put(t, i, dot_f32(&wblk[size_t(i * in)], xin + t * lx, in));
    }
  }
}

DSV4_CLONES void axpy_f32(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void act_quant_fp8_row(float* x, int64_t k) {
  for (int64_t b = 0; b < k; b += 128) fp8_sim_block(x + b, size_t(std::min<int64_t>(128, k - b)));
}

void matmul(const Linear& W, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy,
            const MatmulOpts& opts) {
  DSV4_CHECK(W.w.valid(), "matmul: weight not bound");
  const int64_t in = W.in, out = W.out;
  if (n == 0 || out == 0) return;
  const float* xin = x;
  std::vector<float> xq;
  if (opts.act_fp8) {
    xq.resize(size_t(n * in));
#pragma omp parallel for schedule(static) if (n * in >= (int64_t(1) << 16))
    for (int64_t t = 0; t < n; ++t) {
      std::copy(x + t * ldx, x + t * ldx + in, xq.data() + t * in);
      act_quant_fp8_row(xq.data() + t * in, in);
    }
    xin = xq.data();
  }
  const int64_t lx = opts.act_fp8 ? in : ldx;
  // Small products stay on one thread: a parallel region costs more than they do.
  const bool par = out * in * n >= (int64_t(1) << 16);
  switch (vector_floats()) {  // register blocks that fit each ISA's register file
    case 16: matmul_blocked<4, 4, 16>(W, xin, lx, n, y, ldy, opts, par); break;
    case 8: matmul_blocked<2, 2, 8>(W, xin, lx, n, y, ldy, opts, par); break;
    default: matmul_blocked<2, 1, 4>(W, xin, lx, n, y, ldy, opts, par); break;
  }
}

}  // namespace dsv4::kernels
