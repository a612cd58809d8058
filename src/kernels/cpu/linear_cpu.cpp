// CPU matmul with in-kernel weight decoding. Hot loops are compiled for several ISAs
// (target_clones: AVX-512, AVX2, baseline) and picked at run time by the loader (ifunc), so the
// shipped binary runs on any x86-64; other architectures get the portable build.

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/alloc_guard.h"
#include "core/error.h"
#include "core/thread_pool.h"
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

namespace {
// The final reduction of dot_f32's 16 partial sums, in its order (every matmul path ends with it).
inline float reduce16(const float* acc) {
  float s8[8];
  for (int j = 0; j < 8; ++j) s8[j] = acc[j] + acc[j + 8];
  float s4[4];
  for (int j = 0; j < 4; ++j) s4[j] = s8[j] + s8[j + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}
}  // namespace

DSV4_CLONES float dot_f32(const float* a, const float* b, int64_t n) {
  // 16 independent partial sums in a fixed order: vectorises on every ISA and gives the same
  // result for the same ISA regardless of batch shape.
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) acc[i & 15] += a[i] * b[i];
  return reduce16(acc);
}

typedef float F8 __attribute__((vector_size(32)));
typedef float F4 __attribute__((vector_size(16)));

DSV4_CLONES void dot_keys_f32(const float* q, const float* const* keys, int64_t nk, int64_t n, float scale,
                              float* out) {
  // dot_f32's arithmetic for each key: lanes 0-7 and 8-15 of its 16 partial sums as two 8-float
  // vectors (element d into lane d % 16, multiply-adds from +0), the tail into lanes 0.., then
  // reduce16, here for four keys at once after their 16-lane stage
  const int64_t n16 = n / 16 * 16;
  int64_t i = 0;
  for (; i + 4 <= nk; i += 4) {
    const float* k[4] = {keys[i], keys[i + 1], keys[i + 2], keys[i + 3]};
    F8 lo[4] = {}, hi[4] = {};
    for (int64_t d = 0; d < n16; d += 16) {
      F8 ql, qh;
      std::memcpy(&ql, q + d, sizeof ql);
      std::memcpy(&qh, q + d + 8, sizeof qh);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        F8 a, b;
        std::memcpy(&a, k[j] + d, sizeof a);
        std::memcpy(&b, k[j] + d + 8, sizeof b);
        lo[j] += ql * a;
        hi[j] += qh * b;
      }
    }
    if (n16 < n) {  // tail columns: lanes 0.. as dot_f32, then its scalar reduction
      for (int j = 0; j < 4; ++j) {
        float l[16];
        std::memcpy(l, &lo[j], 32);
        std::memcpy(l + 8, &hi[j], 32);
        for (int64_t d = n16; d < n; ++d) l[d & 15] += q[d] * k[j][d];
        out[i + j] = reduce16(l) * scale;
      }
      continue;
    }
    // reduce16 of each: s8 = lanes j + (j + 8); s4 = s8 lanes j + (j + 4); (s4[0] + s4[2]) + (s4[1] + s4[3]),
    // the last step for the four keys at once on the transposed s4 vectors
    F4 s4[4];
    for (int j = 0; j < 4; ++j) {
      const F8 s8 = lo[j] + hi[j];
      s4[j] = __builtin_shufflevector(s8, s8, 0, 1, 2, 3) + __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
    }
    const F4 t01l = __builtin_shufflevector(s4[0], s4[1], 0, 4, 1, 5), t01h = __builtin_shufflevector(s4[0], s4[1], 2, 6, 3, 7);
    const F4 t23l = __builtin_shufflevector(s4[2], s4[3], 0, 4, 1, 5), t23h = __builtin_shufflevector(s4[2], s4[3], 2, 6, 3, 7);
    const F4 c0 = __builtin_shufflevector(t01l, t23l, 0, 1, 4, 5), c1 = __builtin_shufflevector(t01l, t23l, 2, 3, 6, 7);
    const F4 c2 = __builtin_shufflevector(t01h, t23h, 0, 1, 4, 5), c3 = __builtin_shufflevector(t01h, t23h, 2, 3, 6, 7);
    const F4 r = ((c0 + c2) + (c1 + c3)) * scale;
    std::memcpy(out + i, &r, sizeof r);
  }
  for (; i < nk; ++i) out[i] = dot_f32(q, keys[i], n) * scale;
}

DSV4_CLONES void axpy_keys_f32(const float* p, const float* const* x, int64_t nk, float* y, int64_t n) {
  // y's element d takes p[i] * x[i][d] for i = 0, 1, .. in turn (axpy_f32's multiply-add per key),
  // 64 elements at a time held in registers across all the keys
  int64_t d = 0;
  for (; d + 64 <= n; d += 64) {
    F8 acc[8];
    std::memcpy(acc, y + d, sizeof acc);
    for (int64_t i = 0; i < nk; ++i) {
      const float pi = p[i];
      const float* xi = x[i] + d;
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) {
        F8 t;
        std::memcpy(&t, xi + 8 * v, sizeof t);
        acc[v] += pi * t;
      }
    }
    std::memcpy(y + d, acc, sizeof acc);
  }
  for (; d + 8 <= n; d += 8) {
    F8 acc;
    std::memcpy(&acc, y + d, sizeof acc);
    for (int64_t i = 0; i < nk; ++i) {
      F8 t;
      std::memcpy(&t, x[i] + d, sizeof t);
      acc += p[i] * t;
    }
    std::memcpy(y + d, &acc, sizeof acc);
  }
  for (; d < n; ++d) {
    float v = y[d];
    for (int64_t i = 0; i < nk; ++i) v += p[i] * x[i][d];
    y[d] = v;
  }
}

namespace {
constexpr float kQuietNan = std::numeric_limits<float>::quiet_NaN();

// One output value: optional bf16 rounding, NaN made the one quiet NaN (so every path stores the
// same bits for a NaN result).
inline float finish(float v, bool out_bf16) {
  if (v != v) return kQuietNan;
  return out_bf16 ? round_bf16(v) : v;
}

}  // namespace

// ---- many tokens: a packed GEMM with dot_f32's arithmetic -----------------------------------
//
// dot_f32 computes a (row, token) value as: lane j of 16 partial sums takes the products of columns
// k = j (mod 16) in ascending order (multiply-adds from +0), the columns past the last 16-column
// block go to lanes 0.., then reduce16. For many tokens matmul computes exactly that, with lane j's
// sums of MR rows x T tokens as one register tile: a row tile's decoded weights are packed per lane,
// column by column (MR consecutive floats: vectors across rows), the tokens' activations likewise
// (T per column, broadcast), so a tile runs through all of a lane's columns with its sums in
// registers: 2 vector loads and T broadcasts per 2 x T multiply-adds, nothing else. (The former
// kernel held 16-lane sums per (row, token) and went through memory between column chunks: ~0.47
// of the multiply-add peak on Zen 3.)

// One lane's sums of a row tile (wp: steps x MR weights) x TT tokens (xp: steps x TT activations):
// out[t * MR + r], from +0, products added column by column.
template <int RV, int TT, int W>
DSV4_CLONES static void lane_tile(const float* wp, const float* xp, int64_t steps, float* out) {
  using V = typename Vec<W>::type;
  constexpr int MR = RV * W;
  V acc[RV][TT];
#pragma GCC unroll 4
  for (int v = 0; v < RV; ++v)
#pragma GCC unroll 16
    for (int t = 0; t < TT; ++t) acc[v][t] = V{};
  for (int64_t s = 0; s < steps; ++s) {
    V wv[RV];
#pragma GCC unroll 4
    for (int v = 0; v < RV; ++v) std::memcpy(&wv[v], wp + s * MR + v * W, sizeof(V));
#pragma GCC unroll 16
    for (int t = 0; t < TT; ++t) {
      const V xb = xp[s * TT + t] - V{};  // a broadcast (x - 0 == x for every x; x + 0 is not: -0)
#pragma GCC unroll 4
      for (int v = 0; v < RV; ++v) acc[v][t] += wv[v] * xb;
    }
  }
#pragma GCC unroll 4
  for (int v = 0; v < RV; ++v)
#pragma GCC unroll 16
    for (int t = 0; t < TT; ++t) std::memcpy(out + t * MR + v * W, &acc[v][t], sizeof(V));
}

// The end of dot_f32's arithmetic for a row tile x tt tokens, with the rows in vectors (the same
// operations per (row, token) as dot_f32's end): the nt (< 16) columns past the last 16-column
// block (tailt[k * MR + r]; x's tail of token t at x + t * lx) added to lanes 0.., then
// reduce16's tree; y[t * ldy + r] for the first nr rows.
template <int MR, int W>
DSV4_CLONES static void finish_tile(const float* lanes, int64_t tt, const float* tailt, int64_t nt, const float* x,
                                    int64_t lx, int64_t nr, float* y, int64_t ldy, bool out_bf16) {
  using V = typename Vec<W>::type;
  for (int64_t t = 0; t < tt; ++t) {
    float v[MR];
#pragma GCC unroll 1
    for (int q = 0; q < MR; q += W) {
      V a[16];
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) std::memcpy(&a[j], lanes + (j * tt + t) * MR + q, sizeof(V));
      for (int64_t k = 0; k < nt; ++k) {
        V w;
        std::memcpy(&w, tailt + k * MR + q, sizeof(V));
        a[k] += w * (x[t * lx + k] - V{});
      }
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) a[j] = a[j] + a[j + 8];
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) a[j] = a[j] + a[j + 4];
      const V r = (a[0] + a[2]) + (a[1] + a[3]);
      std::memcpy(v + q, &r, sizeof(V));
    }
    for (int64_t r = 0; r < nr; ++r) y[t * ldy + r] = finish(v[r], out_bf16);
  }
}

// 8 x 8 floats transposed in registers: v[i] = row i in, column i out.
DSV4_VEC_INLINE void transpose8(F8 (&v)[8]) {
  F8 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = __builtin_shufflevector(v[2 * i], v[2 * i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[2 * i + 1] = __builtin_shufflevector(v[2 * i], v[2 * i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 2; ++i) {
    F8 *a = t + 4 * i, *b = u + 4 * i;
    b[0] = __builtin_shufflevector(a[0], a[2], 0, 1, 8, 9, 4, 5, 12, 13);
    b[1] = __builtin_shufflevector(a[0], a[2], 2, 3, 10, 11, 6, 7, 14, 15);
    b[2] = __builtin_shufflevector(a[1], a[3], 0, 1, 8, 9, 4, 5, 12, 13);
    b[3] = __builtin_shufflevector(a[1], a[3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int i = 0; i < 4; ++i) {
    v[i] = __builtin_shufflevector(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    v[i + 4] = __builtin_shufflevector(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

// MR decoded rows (rows, ldr floats apart) packed per lane: wp[j * lw + s * MR + r] = rows[r][16 s + j],
// 8 x 8 blocks at a time.
template <int MR>
DSV4_CLONES static void pack_rows(const float* rows, int64_t ldr, int64_t steps, float* wp, int64_t lw) {
  static_assert(MR % 8 == 0);
  for (int64_t s = 0; s < steps; ++s)
    for (int h = 0; h < 2; ++h)
      for (int rb = 0; rb < MR; rb += 8) {
        F8 v[8];
        for (int i = 0; i < 8; ++i) std::memcpy(&v[i], rows + (rb + i) * ldr + 16 * s + 8 * h, sizeof(F8));
        transpose8(v);
        for (int q = 0; q < 8; ++q) std::memcpy(wp + (8 * h + q) * lw + s * MR + rb, &v[q], sizeof(F8));
      }
}

// lane_tile for a run-time tile width tt in 1..T.
template <int RV, int T, int W>
static void lane_tile_n(int tt, const float* wp, const float* xp, int64_t steps, float* out) {
  using Fn = void (*)(const float*, const float*, int64_t, float*);
  static constexpr auto table = []<size_t... I>(std::index_sequence<I...>) {
    return std::array<Fn, T>{&lane_tile<RV, int(I) + 1, W>...};
  }(std::make_index_sequence<T>{});
  table[size_t(tt - 1)](wp, xp, steps, out);
}

// Linear::decode_row's values with the fused kernels' bit decodes, W columns at a time (below).
namespace {
bool tensor_has_nan_codes(const Linear& L);
template <int W>
void decode_row_vec(const Linear& L, int64_t r, float* dst, bool fp8_nan_free);
template <int MR>
bool decode_pack_rows(const Linear& L, int64_t r0, bool fp8_nan_free, float* wp, int64_t lw);
}  // namespace

template <int RV, int T, int W>
static void matmul_blocked(ThreadPool& pool, const Linear& Wt, const float* xin, int64_t lx, int64_t n, float* y,
                           int64_t ldy, const MatmulOpts& opts, bool par) {
  constexpr int MR = RV * W;
  const int64_t in = Wt.in, out = Wt.out;
  const int64_t steps = in / 16, nb = steps * 16, nt = in - nb;  // whole 16-column blocks, tail
  const int64_t n_tt = (n + T - 1) / T, n_rt = (out + MR - 1) / MR;  // token tiles of balanced sizes <= T
  // Activations packed per token tile (tokens t0 .. t0 + tt, n_tt tiles of n / n_tt tokens give or
  // take one: 13 tokens as 5 + 4 + 4, not 6 + 6 + 1): lane j's columns in order, tt floats
  // each: xp[tile * xtile + j * (steps * tt + 16) + s * tt + t] = x[t0 + t][16 s + j]. Lanes are
  // 64 bytes more than their data apart, weights' lanes likewise (lw): a lane length that is a
  // multiple of 4 KiB would put the 16 lanes' stores of a packing loop in one L1 set.
  const int64_t xtile = 16 * (steps * T + 16), lw = steps * MR + 16;
  thread_local std::vector<float> caller_xp;
  std::vector<float>& xp = caller_xp;
  resize_with_context(xp, size_t(n_tt * xtile));
  pool.for_ranges(n_tt, [&](int64_t a, int64_t b, int) {
    for (int64_t tile = a; tile < b; ++tile) {
      const int64_t t0 = tile * n / n_tt, tt = (tile + 1) * n / n_tt - t0;
      float* dst = xp.data() + tile * xtile;
      for (int64_t t = 0; t < tt; ++t) {
        const float* xr = xin + (t0 + t) * lx;
        for (int64_t s = 0; s < steps; ++s)
          for (int j = 0; j < 16; ++j) dst[j * (steps * tt + 16) + s * tt + t] = xr[16 * s + j];
      }
    }
  }, par && n * nb >= (int64_t(1) << 16) ? 2 : n_tt + 1);
  const bool fp8_nan_free = Wt.fmt == WeightFormat::fp8_block128 && Wt.nan_codes && !tensor_has_nan_codes(Wt);
  pool.for_ranges(n_rt, [&](int64_t a, int64_t b, int) {
    // each thread's buffers, kept between calls: the row tile's decoded rows, their packed lanes,
    // the tile's tail columns, one token tile's lane sums
    thread_local std::vector<float> rows, wp, tailt, lanes;
    const int64_t ldr = in + 16;  // decoded rows: not a multiple of 4 KiB apart (see lw)
    resize_with_context(rows, size_t(MR * ldr));
    resize_with_context(wp, size_t(16 * lw));
    resize_with_context(tailt, size_t(16 * MR));
    resize_with_context(lanes, size_t(16 * T * MR));
    for (int64_t rt = a; rt < b; ++rt) {
      const int64_t r0 = rt * MR, nr = std::min<int64_t>(MR, out - r0);
      const bool packed = nr == MR && nt == 0 && !opts.weight_bf16 && decode_pack_rows<MR>(Wt, r0, fp8_nan_free, wp.data(), lw);
      for (int64_t r = 0; r < MR && !packed; ++r) {
        float* row = rows.data() + r * ldr;
        if (r < nr) {
          decode_row_vec<W>(Wt, r0 + r, row, fp8_nan_free);
          if (opts.weight_bf16)
            for (int64_t k = 0; k < in; ++k) row[k] = round_bf16(row[k]);
        } else {  // rows past the end: zeros, computed and dropped
          std::fill(row, row + in, 0.f);
        }
        for (int64_t k = 0; k < nt; ++k) tailt[size_t(k * MR + r)] = row[nb + k];
      }
      if (!packed) pack_rows<MR>(rows.data(), ldr, steps, wp.data(), lw);
      for (int64_t tile = 0; tile < n_tt; ++tile) {
        const int64_t t0 = tile * n / n_tt, tt = (tile + 1) * n / n_tt - t0;
        const float* xt = xp.data() + tile * xtile;
        for (int j = 0; j < 16; ++j)
          lane_tile_n<RV, T, W>(int(tt), wp.data() + j * lw, xt + j * (steps * tt + 16), steps,
                                lanes.data() + j * tt * MR);
        finish_tile<MR, W>(lanes.data(), tt, tailt.data(), nt, xin + t0 * lx + nb, lx, nr, y + t0 * ldy + r0, ldy,
                        opts.out_bf16);
      }
    }
  }, par ? 2 : n_rt + 1);
}

// ---- fused decode + dot for few tokens --------------------------------------------------------
//
// Decode (n = 1) streams every weight byte once, so converting rows into a buffer first (above) is
// what bounds it. These kernels decode one vector of codes at a time in registers and multiply it
// straight into the accumulators, with dot_f32's arithmetic: lane sum e % 16 takes element e of
// every 16-column block in ascending order, the tail goes to lanes 0.., then reduce16. Inside a
// block the decoded vectors hold the elements in the order the bit tricks produce them
// (lane_elem), so the activations are copied once per call into that order and the accumulators
// put back in lane order before the reduction: the same sums in the same order. Each product is the
// product of the exact decoded weight and x (a power-of-two scale folded into the raw decode or
// into x gives the same real product, so the same float after one rounding). So a (row, token)
// value is the same bits whichever path computes it.
namespace {

// Up to this many tokens matmul takes the fused kernels; more go through the packed GEMM, which
// decodes each weight once per call (decode_pack_rows) where the fused kernels decode FP8/FP4 rows
// again for each pass of up to 5 tokens (bench, 2048 x 4096, 2 threads, Zen 3, fused vs GEMM G
// multiply-adds/s at 5 / 6 / 8 tokens: FP4 42 / 37 / 41 vs 38 / 45 / 50, FP8 40 / 34 / 35 vs 33 / 36 /
// 45, bf16 41 / 41 / 42 vs 41 / 47 / 54). MoE experts in prefill get a few to tens of tokens each.
constexpr int64_t kFusedTokens = 5;
// How far ahead of its reads a fused kernel prefetches each weight row (see fused_block).
constexpr int64_t kPrefetchBytes = 2048;

template <int W>
struct IVec {
  typedef int32_t type __attribute__((vector_size(4 * W)));
};
template <int W>
struct HVec {  // the same bytes as 16-bit lanes
  typedef int16_t type __attribute__((vector_size(4 * W)));
};

// Raw decodes, exact: e4m3 -> fp32 bits of value * 2^-120; e2m1 -> value * 2^-126. The vector
// decodes bring a code to the top of a 32-bit lane (or of a 16-bit half) and shift it right
// arithmetically (e2m1 by 6, e4m3 by 4); these masks then keep its sign, exponent and mantissa.
constexpr int32_t kE2m1RawMask = int32_t(0x81c00000u), kE4m3RawMask = int32_t(0x87f00000u);
inline float e4m3_raw(uint8_t b) {
  return std::bit_cast<float>((uint32_t(int32_t(int8_t(b))) << 20) & uint32_t(kE4m3RawMask));
}
inline float e2m1_raw(uint32_t c) { return std::bit_cast<float>(((c & 8u) << 28) | ((c & 7u) << 22)); }

// Element (0..15 of a 16-column block) that lane j of decoded vector p holds. The block's codes are
// loaded as 32-bit words repeated across the vector; each lane shifts its code to the top:
//  FP8 (4 codes a word): lane j reads word j % 4, byte p * W/4 + j / 4 (W = 8: byte 3 - 2p for
//  lanes 0-3, 2 - 2p for lanes 4-7);
//  FP4 (8 codes a word): lane j reads word j % 2, nibble p * W/2 + j / 2;
//  bf16 (2 a word): lane j reads word (q * W + j) % 8 of the 8, the even element for p = 2q and
//  the odd one for p = 2q + 1 (W <= 8); for W = 16 lanes 8.. take the odd ones;
//  f32: in order.
template <WeightFormat F, int W>
constexpr int lane_elem(int p, int j) {
  if constexpr (F == WeightFormat::fp8_block128) {
    if constexpr (W == 8) return 4 * (j % 4) + (j < 4) + 2 * (1 - p);  // see fp8_decode_block
    return 4 * (j % 4) + p * (W / 4) + j / 4;
  } else if constexpr (F == WeightFormat::fp4_block32) {
    return 8 * (j % 2) + p * (W / 2) + j / 2;
  } else if constexpr (F == WeightFormat::bf16) {
    if constexpr (W == 16) return 2 * (j % 8) + j / 8;
    return 2 * ((p / 2) * W + j) + p % 2;
  } else {
    return p * W + j;
  }
}

// Codes at p as 32-bit words repeated over a vector: lane j gets word j % NW (NW = 2: one 8-byte
// load broadcast; NW = 4: 16 bytes).
template <int W, int NW>
DSV4_VEC_INLINE typename IVec<W>::type load_words(const uint8_t* p) {
  using I = typename IVec<W>::type;
  if constexpr (NW == 2) {
    typedef int64_t L __attribute__((vector_size(4 * W)));
    int64_t u;
    std::memcpy(&u, p, 8);
    return vec_cast<I>(L{} + u);
  } else {
    typedef int32_t Q __attribute__((vector_size(16)));
    Q q;
    std::memcpy(&q, p, 16);
    if constexpr (W == 4) {
      return q;
    } else if constexpr (W == 8) {  // as 128-bit elements: one broadcast load (vbroadcasti128)
      unsigned __int128 u;
      std::memcpy(&u, p, 16);
      typedef unsigned __int128 D __attribute__((vector_size(32)));
      return vec_cast<I>(D{u, u});
    } else return __builtin_shufflevector(q, q, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
  }
}

template <WeightFormat F, int W>
DSV4_VEC_INLINE constexpr typename IVec<W>::type lane_shifts(int p) {
  typename IVec<W>::type sh = {};
  for (int j = 0; j < W; ++j) {
    if constexpr (F == WeightFormat::fp8_block128) sh[j] = 24 - 8 * (p * (W / 4) + j / 4);
    else if constexpr (F == WeightFormat::fp4_block32) sh[j] = 28 - 4 * (p * (W / 2) + j / 2);
    else sh[j] = (W == 16 ? j / 8 : p % 2) ? 0 : 16;  // bf16: even elements shift up, odd are masked
  }
  return sh;
}

// The FP4 codes of a 16-column block (src as load_words gives them) decoded into its 16 / W
// vectors, times f = 2^126 x the block's scale. Vectors p and p + P/2 hold nibbles 16 bits apart
// in the same words, so one shift brings both up (p + P/2's nibble to the top of each lane, p's to
// the top of its low half) and one 16-bit arithmetic shift spreads both signs: 3 shifts and 2 masks
// for 2 vectors instead of 4 and 2.
//
// The factor is applied as a multiply-add onto nz (dispatch.h's neg_zero_opaque): the same value as
// the product, without Zen 3's slow multiply of the subnormal raw decodes of +-0.5 (FP4 4-token
// kernel, one core: 6.1 -> 8.3 multiply-adds per cycle in a standalone loop).
template <int W>
DSV4_VEC_INLINE void fp4_decode_block(typename IVec<W>::type src, float f, typename Vec<W>::type nz,
                                      typename Vec<W>::type* wv) {
  using V = typename Vec<W>::type;
  using I = typename IVec<W>::type;
  constexpr int P = 16 / W;
  if constexpr (P >= 2) {
    using H = typename HVec<W>::type;
#pragma GCC unroll 2
    for (int p = 0; p < P / 2; ++p) {
      const I u = vec_cast<I>(vec_cast<H>(src << lane_shifts<WeightFormat::fp4_block32, W>(p + P / 2)) >> 6);
      wv[p + P / 2] = vec_cast<V>(u & kE2m1RawMask) * f + nz;
      wv[p] = vec_cast<V>((u << 16) & kE2m1RawMask) * f + nz;
    }
  } else {
    wv[0] = vec_cast<V>(((src << lane_shifts<WeightFormat::fp4_block32, W>(0)) >> 6) & kE2m1RawMask) * f + nz;
  }
}

// The e4m3 codes of a 16-column block (c) decoded into its 16 / W vectors as fp32 values times
// 2^-120 (the scale and 2^120 are folded into x). With 32-byte vectors the block's 16 bytes go to
// both halves; lanes 0-3 keep their word, lanes 4-7 shift it up a byte, so bytes 3 and 1 (lanes
// 0-3) or 2 and 0 (lanes 4-7) sit at the tops of the two 16-bit halves, and one 16-bit arithmetic
// shift decodes both vectors' sign, exponent and mantissa: 3 shifts and 2 masks for 2 vectors
// instead of 4 and 2 (lane_elem<fp8, 8>).
template <int W>
DSV4_VEC_INLINE void fp8_decode_block(const uint8_t* c, typename Vec<W>::type* wv) {
  using V = typename Vec<W>::type;
  using I = typename IVec<W>::type;
  if constexpr (W == 8) {
    using H = typename HVec<W>::type;
    const I up = {0, 0, 0, 0, 8, 8, 8, 8};
    const I u = vec_cast<I>(vec_cast<H>(load_words<W, 4>(c) << up) >> 4);
    wv[0] = vec_cast<V>(u & kE4m3RawMask);
    wv[1] = vec_cast<V>((u << 16) & kE4m3RawMask);
  } else {
    const I src = load_words<W, 4>(c);
#pragma GCC unroll 4
    for (int p = 0; p < 16 / W; ++p)
      wv[p] = vec_cast<V>(((src << lane_shifts<WeightFormat::fp8_block128, W>(p)) >> 4) & kE4m3RawMask);
  }
}

// Position of element e in the lanes (inverse of lane_elem).
template <WeightFormat F, int W>
constexpr int elem_pos(int e) {
  for (int p = 0; p < 16 / W; ++p)
    for (int j = 0; j < W; ++j)
      if (lane_elem<F, W>(p, j) == e) return p * W + j;
  return -1;
}

// reduce16 of the lane sums l stored in lane order.
template <WeightFormat F, int W>
inline float reduce16_lanes(const float* l) {
  auto a = [&](int e) { return l[elem_pos<F, W>(e)]; };
  float s8[8];
  for (int j = 0; j < 8; ++j) s8[j] = a(j) + a(j + 8);
  float s4[4];
  for (int j = 0; j < 4; ++j) s4[j] = s8[j] + s8[j + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

// acc[r][t][p] += the decoded vectors wv[r][p] times token t's activations of one 16-column block
// (x: the block's first column of token 0, token rows ldx apart).
template <int R, int T, int W>
DSV4_VEC_INLINE void fma_block(const typename Vec<W>::type (&wv)[R][16 / W], const float* x, int64_t ldx,
                               typename Vec<W>::type (&acc)[R][T][16 / W]) {
  using V = typename Vec<W>::type;
#pragma GCC unroll 4
  for (int p = 0; p < 16 / W; ++p) {
    V xv[T];
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) std::memcpy(&xv[t], x + t * ldx + p * W, sizeof(V));
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int t = 0; t < T; ++t) acc[r][t][p] += wv[r][p] * xv[t];
  }
}

// 2^126 x an FP4 block's scale (exponent e <= 128): the factor of fp4_decode_block's raw values.
inline float fp4_factor(uint8_t e) { return std::bit_cast<float>(uint32_t(e + 126u) << 23); }
// 2^(e - 7) for an FP8 block's scale exponent e <= 134: the factor that makes a raw e4m3 decode
// (value x 2^-120) the scaled weight, or that the fused kernels fold into the activations.
inline float fp8_factor(uint32_t e) { return std::bit_cast<float>((e + 120u) << 23); }

// One row's stored bytes for the fused kernels.
struct RowPtr {
  const void* w = nullptr;        // first stored element of the (sub)row
  const uint8_t* s = nullptr;     // FP4: its scale exponents from column block col0 / 32
};

// R rows x T tokens. x: T token rows (stride ldx) with each 16-column block in lane_elem order (the
// tail in order), for FP8 already times 2^(e - 7) of its column's scale block (so the raw decode
// needs no multiply); out[t * R + r].
template <WeightFormat F, int R, int T, int W>
DSV4_CLONES void fused_block(const RowPtr* rp, const float* x, int64_t ldx, int64_t n, float* out) {
  using V = typename Vec<W>::type;
  using I = typename IVec<W>::type;
  constexpr int P = 16 / W;
  V acc[R][T][P] = {};
  [[maybe_unused]] const V nz = neg_zero_opaque<W>();
  int64_t i = 0;
  // bytes of a row per 2 columns; each row is prefetched kPrefetchBytes ahead of its reads (past
  // its end that is the next rows, which this thread reads next): the hardware prefetchers alone
  // leave decode at ~0.45 of the read bandwidth on Zen 3, ~0.6 with this (bench/matmul_bench)
  constexpr int64_t kEsz = F == WeightFormat::f32 ? 8 : F == WeightFormat::bf16 ? 4 : F == WeightFormat::fp8_block128 ? 2 : 1;
  if constexpr (F == WeightFormat::fp4_block32) {
    // 32 columns (one scale block) per pass: each row's scale is read and broadcast once
    for (; i + 32 <= n; i += 32) {
      float f[R];
      const uint8_t* c[R];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        c[r] = static_cast<const uint8_t*>(rp[r].w) + i / 2;
        __builtin_prefetch(c[r] + kPrefetchBytes);
        f[r] = fp4_factor(rp[r].s[i / 32]);
      }
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        V wv[R][P];
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          fp4_decode_block<W>(load_words<W, 2>(c[r] + 8 * h), f[r], nz, wv[r]);
        }
        fma_block<R, T, W>(wv, x + i + 16 * h, ldx, acc);
      }
    }
  }
  for (; i + 16 <= n; i += 16) {
    if ((i & 31) == 0)
      for (int r = 0; r < R; ++r) __builtin_prefetch(static_cast<const uint8_t*>(rp[r].w) + (i / 2) * kEsz + kPrefetchBytes);
    V wv[R][P];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      if constexpr (F == WeightFormat::f32) {
        for (int p = 0; p < P; ++p) std::memcpy(&wv[r][p], static_cast<const float*>(rp[r].w) + i + p * W, sizeof(V));
      } else if constexpr (F == WeightFormat::bf16) {
        const uint8_t* b = static_cast<const uint8_t*>(rp[r].w) + 2 * i;
        for (int p = 0; p < P; ++p) {
          I v;
          if constexpr (W == 16) {  // the 8 words twice
            typedef int32_t E __attribute__((vector_size(32)));
            E h;
            std::memcpy(&h, b, sizeof h);
            v = __builtin_shufflevector(h, h, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
          } else {
            std::memcpy(&v, b + 4 * W * (p / 2), sizeof v);
          }
          if constexpr (W == 16) v = (v << lane_shifts<F, W>(p)) & int32_t(0xffff0000u);
          else v = p % 2 ? v & int32_t(0xffff0000u) : v << 16;
          wv[r][p] = vec_cast<V>(v);
        }
      } else if constexpr (F == WeightFormat::fp8_block128) {
        fp8_decode_block<W>(static_cast<const uint8_t*>(rp[r].w) + i, wv[r]);
      } else {
        fp4_decode_block<W>(load_words<W, 2>(static_cast<const uint8_t*>(rp[r].w) + i / 2), fp4_factor(rp[r].s[i / 32]), nz,
                            wv[r]);
      }
    }
    fma_block<R, T, W>(wv, x + i, ldx, acc);
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      if (i == n) {  // no tail: reduce16 straight from the lanes
        float l[16];
        std::memcpy(l, acc[r][t], sizeof l);
        out[t * R + r] = reduce16_lanes<F, W>(l);
        continue;
      }
      float a[16];
      for (int p = 0; p < P; ++p)
        for (int j = 0; j < W; ++j) a[lane_elem<F, W>(p, j)] = acc[r][t][p][j];
      for (int64_t k = i; k < n; ++k) {
        float wk;
        if constexpr (F == WeightFormat::f32) {
          wk = static_cast<const float*>(rp[r].w)[k];
        } else if constexpr (F == WeightFormat::bf16) {
          wk = bf16_to_f32(static_cast<const uint16_t*>(rp[r].w)[k]);
        } else if constexpr (F == WeightFormat::fp8_block128) {
          wk = e4m3_raw(static_cast<const uint8_t*>(rp[r].w)[k]);
        } else {
          const uint8_t b = static_cast<const uint8_t*>(rp[r].w)[k / 2];
          wk = e2m1_raw((k & 1) ? b >> 4 : b & 15u) * fp4_factor(rp[r].s[k / 32]);
        }
        a[k & 15] += wk * x[t * ldx + k];
      }
      out[t * R + r] = reduce16(a);
    }
}

// x (n columns) into lane_elem order per 16-column block, the tail in order.
template <WeightFormat F, int W>
void permute_x(const float* x, int64_t n, float* xp) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int p = 0; p < 16 / W; ++p)
      for (int j = 0; j < W; ++j) xp[i + p * W + j] = x[i + lane_elem<F, W>(p, j)];
  for (; i < n; ++i) xp[i] = x[i];
}

// Whether any of R rows of n e4m3 codes holds a NaN code (0x7f, 0xff).
template <int R>
DSV4_CLONES bool e4m3_any_nan(const RowPtr* rp, int64_t n) {
  typedef uint8_t B __attribute__((vector_size(32)));
  B m = {};
  int64_t k = 0;
  for (; k + 32 <= n; k += 32)
    for (int r = 0; r < R; ++r) {
      B c;
      std::memcpy(&c, static_cast<const uint8_t*>(rp[r].w) + k, 32);
      c &= 0x7f;
      m = m > c ? m : c;
    }
  uint8_t mx = 0;
  for (int j = 0; j < 32; ++j) mx = std::max(mx, m[j]);
  for (int r = 0; r < R; ++r)
    for (int64_t j = k; j < n; ++j) mx = std::max<uint8_t>(mx, static_cast<const uint8_t*>(rp[r].w)[j] & 0x7fu);
  return mx == 0x7f;
}

// Whether n e4m3 codes hold a NaN code: bytes with (b & 0x7f) == 0x7f, found as the carry of
// (b & 0x7f) + 1 into bit 7 (no carry crosses a byte).
DSV4_CLONES bool e4m3_bytes_have_nan(const uint8_t* p, int64_t n) {
  typedef uint64_t U __attribute__((vector_size(32)));
  U acc = {};
  int64_t k = 0;
  for (; k + 32 <= n; k += 32) {
    U v;
    std::memcpy(&v, p + k, 32);
    acc |= (v & 0x7f7f7f7f7f7f7f7full) + 0x0101010101010101ull;
  }
  uint64_t m = 0;
  for (int j = 0; j < 4; ++j) m |= acc[j];
  if (m & 0x8080808080808080ull) return true;
  for (; k < n; ++k)
    if ((p[k] & 0x7f) == 0x7f) return true;
  return false;
}

// The whole stored tensor's NaN-code state (Linear::nan_codes), scanned once on first use.
bool tensor_has_nan_codes(const Linear& L) {
  int8_t st = L.nan_codes->load(std::memory_order_relaxed);
  if (st < 0) {
    st = e4m3_bytes_have_nan(L.w.as<uint8_t>(), L.w.numel()) ? 1 : 0;
    L.nan_codes->store(st, std::memory_order_relaxed);
  }
  return st == 1;
}

// x * 2^(e - 7) for FP8 column blocks (scale exponents e from srow, block of column col0 + k):
// false if a factor or a product is not exact (then the caller takes the decode-to-buffer path),
// or if a scale exponent is below min_e. With weight_bf16 (wo_a) the caller passes 3: every
// decoded weight e4m3 x 2^(e - 127) has at most 4 significant bits and an exponent >= e - 136, so
// for e >= 3 it is a bf16 value already and rounding it to bf16 changes nothing; the fused
// kernels (which never round weights) then give the decode-to-buffer path's bits.
DSV4_CLONES bool fp8_scale_x(const float* x, int64_t n, int64_t col0, const uint8_t* srow, float* xs,
                             uint32_t min_e) {
  bool ok = true;
  for (int64_t k = 0; k < n;) {
    const int64_t c = col0 + k, end = std::min(n, k + (128 - c % 128));
    const uint32_t e = srow[c / 128];
    if (e > 134 || e < min_e) return false;  // 2^(e - 7) not a finite float (e = 255 is NaN)
    const float f = fp8_factor(e), inv = std::bit_cast<float>((134u - e) << 23);
    int32_t bad = 0;  // an integer or-reduction, so that the loop vectorises
    for (int64_t j = k; j < end; ++j) {
      xs[j] = x[j] * f;
      bad |= int32_t(xs[j] * inv != x[j]);
    }
    ok = ok && bad == 0;
    k = end;
  }
  return ok;
}

// Every FP4 scale exponent of a row at most 128 (so 2^126 * scale is a finite float).
inline bool fp4_scales_ok(const uint8_t* s, int64_t nblocks) {
  uint8_t m = 0;
  for (int64_t b = 0; b < nblocks; ++b) m = std::max(m, s[b]);
  return m <= 128;
}

// Vector v of a 16-byte block's codes in column order, each lane's code still in its 32-bit word
// (PW codes a word: FP4 8, FP8 4): lane j holds column e = v * W + j, in word e / PW.
template <int W, int PW, int V, size_t... J>
DSV4_VEC_INLINE typename IVec<W>::type block_words(const uint8_t* p, std::index_sequence<J...>) {
  typedef int32_t Q4 __attribute__((vector_size(16)));
  Q4 q;
  std::memcpy(&q, p, 16);
  return __builtin_shufflevector(q, q, int((V * W + J) / PW)...);
}
// Left shifts that bring each lane's code (bits per code 32 / PW) to the top of its word.
template <int W, int PW, int V>
DSV4_VEC_INLINE constexpr typename IVec<W>::type block_shifts() {
  typename IVec<W>::type sh = {};
  for (int j = 0; j < W; ++j) sh[j] = 32 - 32 / PW * (1 + (V * W + j) % PW);
  return sh;
}

// f(integral_constant<int, v>) for v = 0 .. N - 1 (unrolled: v is a template argument in f).
template <int N, class F>
DSV4_VEC_INLINE void for_each_vec(F&& f) {
  [&]<int... Vs>(std::integer_sequence<int, Vs...>) { (f(std::integral_constant<int, Vs>{}), ...); }(
      std::make_integer_sequence<int, N>{});
}

// Stored row ar's FP8 scale exponents (its 128-row group's), and whether the bit decodes take the
// row: no NaN codes (not checked when the tensor is known to hold none) and every scale exponent of
// its column blocks at most 134 (2^(e - 7) a finite float).
inline const uint8_t* fp8_scale_row(const Linear& L, int64_t ar) {
  return L.scale.as<uint8_t>() + (ar / 128) * L.scale.dim(1);
}
inline bool fp8_row_decodes(const Linear& L, int64_t ar, bool nan_free) {
  const uint8_t* srow = fp8_scale_row(L, ar);
  for (int64_t c = L.col0 / 128; c <= (L.col0 + L.in - 1) / 128; ++c)
    if (srow[c] > 134) return false;
  return nan_free || !e4m3_bytes_have_nan(L.w.as<uint8_t>() + ar * L.ld + L.col0, L.in);
}

// Linear::decode_row for the GEMM's row tiles, 16 bytes of codes per step with the fused kernels'
// bit decodes instead of a table lookup per weight (the scalar decode ran at ~1 G weights/s per
// core: ~1/8 of a 256-token FP4 product, more than the GEMM itself at a few tokens). The same
// values: FP4 raw e2m1 x 2^-126 times 2^126 x scale, FP8 raw e4m3 x 2^-120 times 2^(e - 7), each an
// exact product (multiply-adds onto -0, see neg_zero_opaque). Rows the bit decodes do not cover
// (FP8 NaN codes or scale exponents above 134, FP4 scales above 2^1, sub-blocks that do not start
// on a scale block, lengths not a multiple of 16 (FP8) or 32 (FP4) columns) take decode_row.
template <int W>
DSV4_CLONES void decode_row_vec(const Linear& L, int64_t r, float* dst, bool fp8_nan_free) {
  using V = typename Vec<W>::type;
  const int64_t ar = L.row0 + r, in = L.in;
  const V nz = neg_zero_opaque<W>();
  if (L.fmt == WeightFormat::fp4_block32 && L.col0 % 32 == 0 && in % 32 == 0) {
    const uint8_t* p = L.w.as<uint8_t>() + ar * (L.ld / 2) + L.col0 / 2;
    const uint8_t* s = L.scale.as<uint8_t>() + ar * L.scale.dim(1) + L.col0 / 32;
    if (fp4_scales_ok(s, in / 32)) {
      for (int64_t b = 0; b < in / 32; ++b) {
        const float f = fp4_factor(s[b]);
        for_each_vec<32 / W>([&](auto v) {
          using I = typename IVec<W>::type;
          const I u = block_words<W, 8, v>(p + 16 * b, std::make_index_sequence<W>{}) << block_shifts<W, 8, v>();
          const V x = vec_cast<V>((u >> 6) & kE2m1RawMask) * f + nz;
          std::memcpy(dst + 32 * b + v * W, &x, sizeof x);
        });
      }
      return;
    }
  } else if (L.fmt == WeightFormat::fp8_block128 && L.col0 % 16 == 0 && in % 16 == 0) {
    const uint8_t* p = L.w.as<uint8_t>() + ar * L.ld + L.col0;
    const uint8_t* srow = fp8_scale_row(L, ar);
    if (fp8_row_decodes(L, ar, fp8_nan_free)) {
      for (int64_t i = 0; i < in; i += 16) {  // a 16-column block never straddles a scale block
        const float g = fp8_factor(srow[(L.col0 + i) / 128]);
        for_each_vec<16 / W>([&](auto v) {
          using I = typename IVec<W>::type;
          const I u = block_words<W, 4, v>(p + i, std::make_index_sequence<W>{}) << block_shifts<W, 4, v>();
          const V x = vec_cast<V>((u >> 4) & kE4m3RawMask) * g + nz;
          std::memcpy(dst + i + v * W, &x, sizeof x);
        });
      }
      return;
    }
  }
  L.decode_row(r, dst);
}

// The 16 bytes at each of 8 rows (p, ld bytes apart) as 4 vectors of 8 lanes: out[h] lane i = the
// 32-bit word h of row i (a 4 x 4 word transpose in each 128-bit half).
DSV4_VEC_INLINE void load_rows_8x16(const uint8_t* p, int64_t ld, IVec<8>::type (&out)[4]) {
  using I8 = IVec<8>::type;
  typedef int32_t Q4 __attribute__((vector_size(16)));
  I8 a[4];
  for (int i = 0; i < 4; ++i) {
    Q4 lo, hi;
    std::memcpy(&lo, p + i * ld, 16);
    std::memcpy(&hi, p + (i + 4) * ld, 16);
    a[i] = __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7);
  }
  const I8 t0 = __builtin_shufflevector(a[0], a[1], 0, 8, 1, 9, 4, 12, 5, 13);
  const I8 t1 = __builtin_shufflevector(a[0], a[1], 2, 10, 3, 11, 6, 14, 7, 15);
  const I8 t2 = __builtin_shufflevector(a[2], a[3], 0, 8, 1, 9, 4, 12, 5, 13);
  const I8 t3 = __builtin_shufflevector(a[2], a[3], 2, 10, 3, 11, 6, 14, 7, 15);
  out[0] = __builtin_shufflevector(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13);
  out[1] = __builtin_shufflevector(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
  out[2] = __builtin_shufflevector(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13);
  out[3] = __builtin_shufflevector(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
}

// The GEMM's packed lanes of MR rows (wp[j * lw + s * MR + r] = row r0 + r, column 16 s + j)
// decoded straight from the stored codes, 8 rows at a time: 16 bytes of each row transposed as
// 32-bit words (load_rows_8x16), so that one vector holds the same word of 8 rows and each column's
// 8 weights come out of it with the same bit decode as decode_row_vec (uniform shifts, one factor
// per row in a vector), ready to store; no row buffer and no float transposes (decoding rows into
// a buffer and packing it took ~1.5 ms of an FP4 expert's 2048 x 4096 product, the GEMM ~0.6 ms at
// 6 tokens). False, with nothing written, where decode_row_vec would not take a row or the columns
// are not whole 16-column blocks (FP4: 32); the caller then decodes rows and packs them.
template <int MR>
DSV4_CLONES bool decode_pack_rows(const Linear& L, int64_t r0, bool fp8_nan_free, float* wp, int64_t lw) {
  static_assert(MR % 8 == 0);
  using I8 = IVec<8>::type;
  using H8 = HVec<8>::type;
  const int64_t in = L.in;
  const F8 nz = neg_zero_opaque<8>();
  auto put = [&](const F8& v, int64_t rb, int64_t c) __attribute__((always_inline)) {
    std::memcpy(wp + (c % 16) * lw + (c / 16) * MR + rb, &v, sizeof v);
  };
  if (L.fmt == WeightFormat::fp4_block32) {
    if (L.col0 % 32 != 0 || in % 32 != 0) return false;
    const int64_t ls = L.scale.dim(1), lb = L.ld / 2;
    const uint8_t* srow[MR];  // each row's scale exponents
    for (int64_t r = 0; r < MR; ++r) {
      srow[r] = L.scale.as<uint8_t>() + (L.row0 + r0 + r) * ls + L.col0 / 32;
      if (!fp4_scales_ok(srow[r], in / 32)) return false;
    }
    const uint8_t* p0 = L.w.as<uint8_t>() + (L.row0 + r0) * lb + L.col0 / 2;
    for (int64_t b = 0; b < in / 32; ++b) {  // one scale block: 16 bytes of each row
      if (b % 4 == 0)  // MR rows read side by side: prefetched 512 bytes ahead (prefill +2-3%)
        for (int64_t r = 0; r < MR; ++r) __builtin_prefetch(p0 + r * lb + 16 * b + kPrefetchBytes / 4);
      for (int64_t rb = 0; rb < MR; rb += 8) {
        I8 w[4];
        load_rows_8x16(p0 + rb * lb + 16 * b, lb, w);
        I8 e;
        for (int i = 0; i < 8; ++i) e[i] = srow[rb + i][b];
        const F8 f = vec_cast<F8>((e + 126) << 23);  // fp4_factor of each row's block
        // nibbles k and k + 4 of word h (columns 8 h + k, 8 h + k + 4) are 16 bits apart: one shift
        // brings both to the tops of the two 16-bit halves, one 16-bit arithmetic shift spreads both
        // signs (fp4_decode_block's trick: 1.4 shifts a vector instead of 1.9)
#pragma GCC unroll 4
        for (int h = 0; h < 4; ++h)
#pragma GCC unroll 4
          for (int k = 0; k < 4; ++k) {
            const I8 u = vec_cast<I8>(vec_cast<H8>(w[h] << (12 - 4 * k)) >> 6);
            put(vec_cast<F8>(u & kE2m1RawMask) * f + nz, rb, 32 * b + 8 * h + k + 4);
            put(vec_cast<F8>((u << 16) & kE2m1RawMask) * f + nz, rb, 32 * b + 8 * h + k);
          }
      }
    }
    return true;
  }
  if (L.fmt == WeightFormat::fp8_block128) {
    if (L.col0 % 16 != 0 || in % 16 != 0) return false;
    const uint8_t* p0 = L.w.as<uint8_t>() + (L.row0 + r0) * L.ld + L.col0;
    const uint8_t* srow[MR];  // each row's scale row
    for (int64_t r = 0; r < MR; ++r) {
      if (!fp8_row_decodes(L, L.row0 + r0 + r, fp8_nan_free)) return false;
      srow[r] = fp8_scale_row(L, L.row0 + r0 + r);
    }
    F8 g[MR / 8] = {};  // 2^(e - 7) of each row's scale block at column c
    for (int64_t c = 0; c < in; c += 16) {  // a 16-column block never straddles a scale block
      if (c == 0 || (L.col0 + c) % 128 == 0)
        for (int64_t r = 0; r < MR; ++r)
          g[r / 8][r % 8] = fp8_factor(srow[r][(L.col0 + c) / 128]);
      if (c % 64 == 0)
        for (int64_t r = 0; r < MR; ++r) __builtin_prefetch(p0 + r * L.ld + c + kPrefetchBytes / 4);
      for (int64_t rb = 0; rb < MR; rb += 8) {
        I8 w[4];
        load_rows_8x16(p0 + rb * L.ld + c, L.ld, w);
        // bytes k and k + 2 of word h (columns 4 h + k, 4 h + k + 2) decoded together as nibbles are
#pragma GCC unroll 4
        for (int h = 0; h < 4; ++h)
#pragma GCC unroll 2
          for (int k = 0; k < 2; ++k) {
            const I8 u = vec_cast<I8>(vec_cast<H8>(w[h] << (8 - 8 * k)) >> 4);
            put(vec_cast<F8>(u & kE4m3RawMask) * g[rb / 8] + nz, rb, c + 4 * h + k + 2);
            put(vec_cast<F8>((u << 16) & kE4m3RawMask) * g[rb / 8] + nz, rb, c + 4 * h + k);
          }
      }
    }
    return true;
  }
  if (L.fmt == WeightFormat::bf16) {
    if (in % 16 != 0) return false;
    const uint8_t* p0 = L.w.as<uint8_t>() + ((L.row0 + r0) * L.ld + L.col0) * 2;
    for (int64_t c = 0; c < in; c += 8) {
      if (c % 32 == 0)
        for (int64_t r = 0; r < MR; ++r) __builtin_prefetch(p0 + (r * L.ld + c) * 2 + kPrefetchBytes / 4);
      for (int64_t rb = 0; rb < MR; rb += 8) {
        I8 w[4];
        load_rows_8x16(p0 + (rb * L.ld + c) * 2, L.ld * 2, w);
#pragma GCC unroll 4
        for (int h = 0; h < 4; ++h) {  // word h: columns 2 h (low half), 2 h + 1
          put(vec_cast<F8>(w[h] << 16), rb, c + 2 * h);
          put(vec_cast<F8>(w[h] & int32_t(0xffff0000u)), rb, c + 2 * h + 1);
        }
      }
    }
    return true;
  }
  return false;  // f32: decode_row is a copy
}

// y = W x for n <= kFusedTokens tokens with the fused kernels: rows split into one contiguous range
// per thread, R rows x T tokens at a time.
template <WeightFormat F, int R, int T, int W>
void matmul_fused_t(ThreadPool& pool, const Linear& L, const float* x, int64_t lx, int64_t n, float* y, int64_t ldy,
                    const MatmulOpts& opts, bool par) {
  const int64_t in = L.in, out = L.out;
  const bool fp8 = F == WeightFormat::fp8_block128, fp4 = F == WeightFormat::fp4_block32;
  const size_t esize = F == WeightFormat::f32 ? 4 : F == WeightFormat::bf16 ? 2 : 1;
  // activations in lane order, in the calling thread's buffer (kept between calls); a reference,
  // so that the pool threads read this thread's copy
  // (FP8: permuted once here, scaled per 128-row group below: a 16-column block never straddles a
  // 128-column scale block, col0 % 16 == 0 here, so scaling the permuted copy is permuting the
  // scaled one)
  thread_local std::vector<float> caller_xp;
  std::vector<float>& xp = caller_xp;
  resize_with_context(xp, F == WeightFormat::f32 ? 0 : size_t(n * in));
  if (!xp.empty())
    for (int64_t t = 0; t < n; ++t) permute_x<F, W>(x + t * lx, in, xp.data() + t * in);
  // FP8 rows need no NaN-code scan when the stored tensor is known to hold none
  const bool fp8_nan_free = fp8 && L.nan_codes && !tensor_has_nan_codes(L);
  auto body = [&](int64_t th, int64_t nt) {
    const int64_t units = (out + R - 1) / R;  // contiguous row range per thread, R-aligned
    const int64_t ra = std::min(out, units * th / nt * R), rb = std::min(out, units * (th + 1) / nt * R);
    thread_local std::vector<float> xs, wrow;  // each pool thread's, kept between calls
    resize_with_context(xs, fp8 ? size_t(n * in) : 0);
    int64_t group = -1;  // FP8: 128-row scale group xs is scaled for
    bool xs_ok = false;
    float tile[R * T];
    const uint8_t* wbase = L.w.as<uint8_t>();
    auto row_ptr = [&](int64_t r) {
      RowPtr p;
      const int64_t ar = L.row0 + r;
      if (fp4) {
        p.w = wbase + ar * (L.ld / 2) + L.col0 / 2;
        p.s = L.scale.as<uint8_t>() + ar * L.scale.dim(1) + L.col0 / 32;
      } else {
        p.w = wbase + size_t(ar * L.ld + L.col0) * esize;
      }
      return p;
    };
    // The decode-to-buffer path for one row (same arithmetic, see above).
    auto slow_row = [&](int64_t r) {
      resize_with_context(wrow, size_t(in));
      L.decode_row(r, wrow.data());
      if (opts.weight_bf16)
        for (float& v : wrow) v = round_bf16(v);
      for (int64_t t = 0; t < n; ++t) y[t * ldy + r] = finish(dot_f32(wrow.data(), x + t * lx, in), opts.out_bf16);
    };
    // Rows [r, r + nr) (nr == R, or 1) for tokens [t0, t0 + TT).
    auto rows_tokens = [&](int64_t r, auto rr, const float* xt, int64_t ldxt, int64_t t0, auto tt) {
      constexpr int RR = decltype(rr)::value, TT = decltype(tt)::value;
      RowPtr rp[RR];
      for (int k = 0; k < RR; ++k) rp[k] = row_ptr(r + k);
      fused_block<F, RR, TT, W>(rp, xt + t0 * ldxt, ldxt, in, tile);
      for (int t = 0; t < TT; ++t)
        for (int k = 0; k < RR; ++k) y[(t0 + t) * ldy + r + k] = finish(tile[t * RR + k], opts.out_bf16);
    };
    auto rows = [&](int64_t r, auto rr) {
      const float* xt = fp8 ? xs.data() : xp.empty() ? x : xp.data();
      const int64_t ldxt = fp8 || !xp.empty() ? in : lx;  // FP8: xs
      int64_t t0 = 0;
      for (; t0 + T <= n; t0 += T) rows_tokens(r, rr, xt, ldxt, t0, std::integral_constant<int, T>{});
      for (; t0 < n; ++t0) rows_tokens(r, rr, xt, ldxt, t0, std::integral_constant<int, 1>{});
    };
    for (int64_t r = ra; r < rb;) {
      int64_t nr = std::min<int64_t>(R, rb - r);
      if (fp8) {
        const int64_t g = (L.row0 + r) / 128;
        nr = std::min(nr, (g + 1) * 128 - (L.row0 + r));  // a block stays in one scale group
        if (g != group) {
          group = g;
          const uint8_t* srow = L.scale.as<uint8_t>() + g * L.scale.dim(1);
          xs_ok = true;
          const uint32_t min_e = opts.weight_bf16 ? 3u : 0u;
          for (int64_t t = 0; t < n && xs_ok; ++t)
            xs_ok = fp8_scale_x(xp.data() + t * in, in, L.col0, srow, xs.data() + t * in, min_e);
        }
      }
      // rows the fused kernels must not take: FP8 NaN codes or x not scalable, FP4 scale > 2^1
      auto fusable = [&](int64_t r1, auto rr) {
        constexpr int RR = decltype(rr)::value;
        RowPtr rp[RR];
        for (int k = 0; k < RR; ++k) rp[k] = row_ptr(r1 + k);
        if constexpr (F == WeightFormat::fp8_block128) return xs_ok && (fp8_nan_free || !e4m3_any_nan<RR>(rp, in));
        bool ok = true;
        if constexpr (F == WeightFormat::fp4_block32)
          for (int k = 0; k < RR; ++k) ok = ok && fp4_scales_ok(rp[k].s, (in + 31) / 32);
        return ok;
      };
      if (nr == R && fusable(r, std::integral_constant<int, R>{})) {
        rows(r, std::integral_constant<int, R>{});
      } else {
        for (int64_t k = 0; k < nr; ++k) {
          if (fusable(r + k, std::integral_constant<int, 1>{})) {
            rows(r + k, std::integral_constant<int, 1>{});
          } else {
            slow_row(r + k);
          }
        }
      }
      r += nr;
    }
  };
  if (par) {
    pool.run([&](int th, int nt) { body(th, nt); });
  } else {
    body(0, 1);
  }
}

// Rows per block and tokens per pass for the fused kernels (registers: R x T x 16 / W accumulators).
template <WeightFormat F, int W>
void matmul_fused_f(ThreadPool& pool, const Linear& L, const float* x, int64_t lx, int64_t n, float* y,
                    int64_t ldy, const MatmulOpts& opts, bool par) {
  // rows per block for one token: bf16 4 (2 measured slower on Zen 3), the others 2
  constexpr int R1 = W == 4 ? 1 : F == WeightFormat::bf16 ? 4 : 2;
  switch (n) {
    case 1: matmul_fused_t<F, R1, 1, W>(pool, L, x, lx, n, y, ldy, opts, par); break;
    case 2: matmul_fused_t<F, 1, 2, W>(pool, L, x, lx, n, y, ldy, opts, par); break;
    case 3: matmul_fused_t<F, 1, 3, W>(pool, L, x, lx, n, y, ldy, opts, par); break;
    default:
      // 4 or 5 tokens: FP8/FP4 in one pass of 5 where the registers hold 5 x 16 / W accumulators
      // (AVX2, AVX-512; 6 spills on AVX2: 4x slower), the others as 4 + 1
      if constexpr (W >= 8 && (F == WeightFormat::fp8_block128 || F == WeightFormat::fp4_block32)) {
        if (n >= 5) {
          matmul_fused_t<F, 1, 5, W>(pool, L, x, lx, n, y, ldy, opts, par);
          break;
        }
      }
      matmul_fused_t<F, 1, 4, W>(pool, L, x, lx, n, y, ldy, opts, par);
      break;
  }
}

template <int W>
void matmul_fused(ThreadPool& pool, const Linear& L, const float* x, int64_t lx, int64_t n, float* y,
                  int64_t ldy, const MatmulOpts& opts, bool par) {
  switch (L.fmt) {
    case WeightFormat::f32: matmul_fused_f<WeightFormat::f32, W>(pool, L, x, lx, n, y, ldy, opts, par); break;
    case WeightFormat::bf16: matmul_fused_f<WeightFormat::bf16, W>(pool, L, x, lx, n, y, ldy, opts, par); break;
    case WeightFormat::fp8_block128: matmul_fused_f<WeightFormat::fp8_block128, W>(pool, L, x, lx, n, y, ldy, opts, par); break;
    case WeightFormat::fp4_block32: matmul_fused_f<WeightFormat::fp4_block32, W>(pool, L, x, lx, n, y, ldy, opts, par); break;
  }
}

}  // namespace

DSV4_CLONES void axpy_f32(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void act_quant_fp8_row(float* x, int64_t k) {
  for (int64_t b = 0; b < k; b += 128) fp8_sim_block(x + b, size_t(std::min<int64_t>(128, k - b)));
}

namespace cpu {
void matmul(ThreadPool& pool, const Linear& W, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy,
            const MatmulOpts& opts) {
  DSV4_CHECK(W.w.valid(), "matmul: weight not bound");
  const int64_t in = W.in, out = W.out;
  if (n == 0 || out == 0) return;
  const float* xin = x;
  // The calling thread's buffer, kept between calls; a reference, so that the pool threads that
  // fill it below write this thread's copy (a thread_local named in the job would be theirs).
  thread_local std::vector<float> caller_xq;
  std::vector<float>& xq = caller_xq;
  if (opts.act_fp8) {
    resize_with_context(xq, size_t(n * in));
    pool.for_ranges(n, [&](int64_t t0, int64_t t1, int) {
      for (int64_t t = t0; t < t1; ++t) {
        std::copy(x + t * ldx, x + t * ldx + in, xq.data() + t * in);
        act_quant_fp8_row(xq.data() + t * in, in);
      }
    }, n * in >= (int64_t(1) << 16) ? 2 : n + 1);
    xin = xq.data();
  }
  const int64_t lx = opts.act_fp8 ? in : ldx;
  // Small products stay on one thread: a parallel region costs more than they do.
  const bool par = out * in * n >= (int64_t(1) << 16);
  // weight_bf16 rounds decoded weights to bf16: a no-op for FP8 codes under ordinary scales (see
  // fp8_scale_x), so FP8 takes the fused kernels then too; the other formats keep the buffer path.
  const bool fused_ok = !opts.weight_bf16 || W.fmt == WeightFormat::fp8_block128;
  // (column sub-blocks that split a 16-column block (FP8) or a scale block (FP4) take the buffer
  // path: the model uses none)
  const bool aligned = W.fmt == WeightFormat::fp4_block32 ? W.col0 % 32 == 0
                       : W.fmt == WeightFormat::fp8_block128 ? W.col0 % 16 == 0
                                                              : true;
  if (n <= kFusedTokens && fused_ok && aligned) {
    switch (vector_floats()) {
      case 16: matmul_fused<16>(pool, W, xin, lx, n, y, ldy, opts, par); break;
      case 8: matmul_fused<8>(pool, W, xin, lx, n, y, ldy, opts, par); break;
      default: matmul_fused<4>(pool, W, xin, lx, n, y, ldy, opts, par); break;
    }
    return;
  }
  switch (vector_floats()) {  // register tiles (2 x T accumulators) that fit each ISA's registers
    case 16: matmul_blocked<2, 8, 16>(pool, W, xin, lx, n, y, ldy, opts, par); break;
    case 8: matmul_blocked<2, 6, 8>(pool, W, xin, lx, n, y, ldy, opts, par); break;
    default: matmul_blocked<2, 6, 4>(pool, W, xin, lx, n, y, ldy, opts, par); break;
  }
}

}  // namespace cpu

}  // namespace dsv4::kernels
