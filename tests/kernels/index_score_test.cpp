// kernels::index_scores_tiles (lightning-indexer scoring on a transposed key tile) against a
// scalar evaluation of the same formula, and the exactness that reference numerics rely on:
// with FP4-simulated queries and keys every score is exact, whatever the summation order.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/index_score.h"

namespace dsv4::kernels {
namespace {

constexpr int T = kIndexTile;

// score = sum_h w[h] * max(sum_d q[h][d] * k[d], 0), sequential in h and d, in fp32.
float scalar_score(const float* q, const float* w, const std::vector<float>& kt, int l, int Hi, int Di) {
  float s = 0;
  for (int h = 0; h < Hi; ++h) {
    float d = 0;
    for (int i = 0; i < Di; ++i) d += q[h * Di + i] * kt[size_t(i * T + l)];
    s += w[h] * std::max(d, 0.f);
  }
  return s;
}

TEST(IndexScores, TileMatchesScalarFormula) {
  // The SIMD builds may fuse multiply-adds, so agreement with the scalar formula is to rounding
  // (relative to the sum of |terms|); the scores of one row must not depend on how many rows are
  // scored with it or where it sits (chunked prefill == one-shot prefill relies on that).
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int Hi : {1, 3, 8}) {
    for (int Di : {32, 40, 128}) {
      const int n_all = 9;
      std::vector<float> kt(size_t(Di * T)), q(size_t(n_all * Hi * Di)), w(size_t(n_all * Hi));
      for (auto& v : kt) v = nd(rng);
      for (auto& v : q) v = nd(rng);
      for (auto& v : w) v = nd(rng);
      for (bool round : {false, true}) {
        const int stride = T + 5;
        std::vector<float> all(size_t(n_all * stride), -7.f);
        index_scores_tiles(kt.data(), 1, Di, Hi, q.data(), Hi * Di, w.data(), Hi, n_all, all.data(), stride, round);
        for (int r = 0; r < n_all; ++r) {
          for (int l = 0; l < T; ++l) {
            const float* qr = &q[size_t(r * Hi * Di)];
            const float* wr = &w[size_t(r * Hi)];
            double mag = 0;
            for (int h = 0; h < Hi; ++h) {
              double dm = 0;
              for (int i = 0; i < Di; ++i) dm += std::fabs(double(qr[h * Di + i]) * kt[size_t(i * T + l)]);
              mag += std::fabs(wr[h]) * dm;
            }
            const float want = scalar_score(qr, wr, kt, l, Hi, Di);
            ASSERT_NEAR(all[size_t(r * stride + l)], want, mag * (round ? 8e-3 : 1e-5) + 1e-30)
                << "Hi=" << Hi << " Di=" << Di << " r=" << r << " l=" << l;
          }
          for (int l = T; l < stride; ++l) ASSERT_EQ(all[size_t(r * stride + l)], -7.f) << "wrote past the tile";
        }
        // every suffix and single row reproduces the same bits
        for (int first = 0; first < n_all; ++first) {
          for (int n : {1, n_all - first}) {
            std::vector<float> part(size_t(n * T));
            index_scores_tiles(kt.data(), 1, Di, Hi, &q[size_t(first * Hi * Di)], Hi * Di, &w[size_t(first * Hi)], Hi, n,
                              part.data(), T, round);
            for (int r = 0; r < n; ++r)
              for (int l = 0; l < T; ++l)
                ASSERT_EQ(f32_bits(part[size_t(r * T + l)]), f32_bits(all[size_t((first + r) * stride + l)]))
                    << "Hi=" << Hi << " Di=" << Di << " first=" << first << " n=" << n << " r=" << r;
          }
        }
      }
    }
  }
}

TEST(IndexScores, ManyTilesEqualOneTileAtATime) {
  // Decode scores one row against many tiles at once (the tiles supply the independent chains):
  // every (row, key) score must have the bits of the one-tile, one-row call, for any tile count
  // and row count (decode == chunked == prefill relies on that).
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int Hi = 5, Di = 40;
  for (int n_tiles : {1, 2, 3, 4, 5, 7, 8, 9, 16}) {
    for (int n_rows : {1, 2, 3, 5, 8}) {
      std::vector<float> kt(size_t(n_tiles * Di * T)), q(size_t(n_rows * Hi * Di)), w(size_t(n_rows * Hi));
      for (auto& v : kt) v = nd(rng);
      for (auto& v : q) v = nd(rng);
      for (auto& v : w) v = nd(rng);
      for (bool round : {false, true}) {
        const int stride = n_tiles * T + 3;
        std::vector<float> all(size_t(n_rows * stride), -7.f);
        index_scores_tiles(kt.data(), n_tiles, Di, Hi, q.data(), Hi * Di, w.data(), Hi, n_rows, all.data(), stride, round);
        for (int r = 0; r < n_rows; ++r) {
          for (int t = 0; t < n_tiles; ++t) {
            float one[T];
            index_scores_tiles(&kt[size_t(t * Di * T)], 1, Di, Hi, &q[size_t(r * Hi * Di)], Hi * Di, &w[size_t(r * Hi)], Hi,
                               1, one, T, round);
            for (int l = 0; l < T; ++l)
              ASSERT_EQ(f32_bits(all[size_t(r * stride + t * T + l)]), f32_bits(one[l]))
                  << "tiles=" << n_tiles << " rows=" << n_rows << " r=" << r << " t=" << t << " l=" << l;
          }
          for (int l = n_tiles * T; l < stride; ++l) ASSERT_EQ(all[size_t(r * stride + l)], -7.f) << "wrote past the tiles";
        }
      }
    }
  }
}

TEST(IndexScores, Fp4InputsGiveExactScores) {
  // e2m1 values times power-of-two block scales: every product and partial sum of a 32-block is
  // exact in fp32, so the kernel must equal the score computed in double.
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 2.f);
  const int Di = 32;
  std::vector<float> kt(size_t(Di * T)), q(Di), key(Di);
  for (int l = 0; l < T; ++l) {
    for (auto& v : key) v = nd(rng);
    fp4_sim_block(key.data(), Di);
    for (int d = 0; d < Di; ++d) kt[size_t(d * T + l)] = key[size_t(d)];
  }
  for (auto& v : q) v = nd(rng);
  fp4_sim_block(q.data(), Di);
  const float w = 0.25f;  // a power of two keeps the weighting exact too
  float out[T];
  index_scores_tiles(kt.data(), 1, Di, 1, q.data(), Di, &w, 1, 1, out, T, false);
  int positive = 0;
  for (int l = 0; l < T; ++l) {
    double d = 0;
    for (int i = 0; i < Di; ++i) d += double(q[size_t(i)]) * double(kt[size_t(i * T + l)]);
    EXPECT_EQ(double(out[l]), 0.25 * std::max(d, 0.0)) << l;
    positive += d > 0;
  }
  EXPECT_GT(positive, 0);
  EXPECT_LT(positive, T);  // both sides of the ReLU exercised
}

}  // namespace
}  // namespace dsv4::kernels

namespace dsv4::kernels {
namespace {

// decode_fp4_keys_transposed against the scalar formula (e2m1 table x e8m0 scale) bit for bit,
// every code and scale exponent (those > 128 take the scalar fallback), lanes past n zeroed.
TEST(DecodeFp4Keys, TransposedTileEqualsScalarDecode) {
  std::mt19937 rng(5);
  const uint8_t scales[] = {0, 1, 60, 120, 127, 128, 129, 200, 254, 255};
  for (int Di : {32, 128}) {
    for (int n : {1, 5, 8, 13, 16}) {
      const int bytes = Di / 2 + Di / 32;
      std::vector<std::vector<uint8_t>> key_bytes(static_cast<size_t>(n), std::vector<uint8_t>(static_cast<size_t>(bytes)));
      std::vector<const uint8_t*> ptr;
      for (int l = 0; l < n; ++l) {
        for (int b = 0; b < Di / 2; ++b) key_bytes[size_t(l)][size_t(b)] = uint8_t(rng());
        for (int s = 0; s < Di / 32; ++s)
          key_bytes[size_t(l)][size_t(Di / 2 + s)] = l % 3 == 0 ? scales[(l + s) % 10] : uint8_t(110 + rng() % 20);
        ptr.push_back(key_bytes[size_t(l)].data());
      }
      const int ld = T + 3;
      std::vector<float> out(size_t(Di * ld), 123.f);
      decode_fp4_keys_transposed(ptr.data(), n, Di, out.data(), ld);
      for (int d = 0; d < Di; ++d)
        for (int l = 0; l < T; ++l) {
          const float got = out[size_t(d * ld + l)];
          if (l >= n) {
            ASSERT_EQ(std::bit_cast<uint32_t>(got), 0u) << "pad lane " << l << " dim " << d;
            continue;
          }
          const uint8_t b = key_bytes[size_t(l)][size_t(d / 2)];
          const float want = e2m1_to_f32(d % 2 ? uint8_t(b >> 4) : uint8_t(b & 15)) *
                             e8m0_to_f32(key_bytes[size_t(l)][size_t(Di / 2 + d / 32)]);
          if (std::isnan(want)) {
            ASSERT_TRUE(std::isnan(got)) << "key " << l << " dim " << d;
          } else {
            ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(want))
                << "Di " << Di << " n " << n << " key " << l << " dim " << d << ": " << got << " vs " << want;
          }
        }
      for (int d = 0; d < Di; ++d)  // columns past the tile untouched
        for (int l = T; l < ld; ++l) ASSERT_EQ(out[size_t(d * ld + l)], 123.f);
    }
  }
}

}  // namespace
}  // namespace dsv4::kernels

namespace dsv4::kernels {
namespace {

// Index keys as the state stores them (e2m1 codes, low nibble first, then e8m0 block scales),
// FP4-simulated from Gaussian values with block scales a few powers of two apart.
std::vector<std::vector<uint8_t>> fp4_keys(int n, int Di, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<std::vector<uint8_t>> keys(size_t(n), std::vector<uint8_t>(size_t(Di / 2 + Di / 32)));
  std::vector<float> v(static_cast<size_t>(Di));
  std::vector<uint8_t> codes(32);
  for (auto& k : keys) {
    for (int b = 0; b < Di / 32; ++b) {
      const float sd = std::ldexp(1.f, int(rng() % 5) - 2);
      for (int d = 0; d < 32; ++d) v[size_t(d)] = sd * nd(rng);
      fp4_sim_block(v.data(), 32, codes.data(), &k[size_t(Di / 2 + b)]);
      for (int d = 0; d < 32; d += 2) k[size_t(b * 16 + d / 2)] = uint8_t(codes[size_t(d)] | (codes[size_t(d + 1)] << 4));
    }
  }
  return keys;
}

// The documented integer-path formula, evaluated plainly: exact block sums, then
// dot = ((0 + T_0) + T_1) + ..., score = fma(w, max(dot, 0), score) over heads.
float spec_score_i8(const std::vector<float>& q, const float* w, const std::vector<uint8_t>& key, int Hi, int Di) {
  float tot = 0.f;
  for (int h = 0; h < Hi; ++h) {
    float dot = 0.f;
    for (int b = 0; b < Di / 32; ++b) {
      float amax = 0.f;
      for (int d = 0; d < 32; ++d) amax = std::max(amax, std::fabs(q[size_t(h * Di + b * 32 + d)]));
      const int e = int(e8m0_scale_for_amax(amax, 6.f, 6.f * 1.1754943508222875e-38f)) - 127;
      int64_t S = 0;
      for (int d = 0; d < 32; ++d) {
        const int64_t qi = std::lround(std::ldexp(double(q[size_t(h * Di + b * 32 + d)]), 1 - e));
        const uint8_t byte = key[size_t((b * 32 + d) / 2)];
        const int64_t ki = std::lround(2.0 * e2m1_to_f32(d % 2 ? uint8_t(byte >> 4) : uint8_t(byte & 15)));
        S += qi * ki;
      }
      const float unit = std::ldexp(1.f, e - 1) * (e8m0_to_f32(key[size_t(Di / 2 + b)]) * 0.5f);
      dot = dot + float(S) * unit;
    }
    tot = std::fma(w[h], dot < 0.f ? 0.f : dot, tot);
  }
  return tot;
}

TEST(IndexScoresI8, QueryAsIntegersOnlyWhenFp4Simulated) {
  std::mt19937 rng(21);
  std::normal_distribution<float> nd(0.f, 3.f);
  const int Hi = 4, Di = 128, nb = Di / 32;
  std::vector<float> q(size_t(Hi * Di));
  for (auto& v : q) v = nd(rng);
  std::vector<int8_t> q8(q.size());
  std::vector<float> qs(size_t(Hi * nb));
  std::vector<int32_t> corr(size_t(Hi * nb));
  EXPECT_FALSE(index_query_i8(q.data(), Hi, Di, q8.data(), qs.data(), corr.data())) << "raw Gaussian query";
  for (int b = 0; b < Hi * nb; ++b) fp4_sim_block(&q[size_t(b * 32)], 32);
  q[5] = 0.f;
  for (int d = 32; d < 64; ++d) q[size_t(d)] = 0.f;  // an all-zero block
  ASSERT_TRUE(index_query_i8(q.data(), Hi, Di, q8.data(), qs.data(), corr.data()));
  for (int h = 0; h < Hi; ++h)
    for (int b = 0; b < nb; ++b) {
      int32_t sum = 0;
      for (int d = 0; d < 32; ++d) {
        const size_t i = size_t(h * Di + b * 32 + d);
        ASSERT_LE(std::abs(int(q8[i])), 12);
        ASSERT_EQ(float(q8[i]) * qs[size_t(h * nb + b)], q[i]) << "h " << h << " b " << b << " d " << d;
        sum += q8[i];
      }
      ASSERT_EQ(corr[size_t(h * nb + b)], 12 * sum);
    }
  q[7] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(index_query_i8(q.data(), Hi, Di, q8.data(), qs.data(), corr.data())) << "NaN";
}

TEST(IndexScoresI8, IntegerTileHoldsTheKeyValues) {
  std::mt19937 rng(22);
  const int Di = 128, nb = Di / 32;
  for (int n : {1, 7, 16}) {
    auto keys = fp4_keys(n, Di, rng);
    std::vector<const uint8_t*> ptr;
    for (auto& k : keys) ptr.push_back(k.data());
    std::vector<float> kt(size_t(Di * T));
    decode_fp4_keys_transposed(ptr.data(), n, Di, kt.data(), T);
    std::vector<uint8_t> k8(size_t(index_tile_i8_bytes(Di)), 99);
    std::vector<float> ks(size_t(nb * T), 99.f);
    decode_fp4_keys_i8(ptr.data(), n, Di, k8.data(), ks.data());
    for (int l = 0; l < T; ++l)
      for (int d = 0; d < Di; ++d) {
        const int b = d / 32, g = (d % 32) / 4, j = d % 4;
        const uint8_t byte = k8[size_t(((b * 8 + g) * T + l) * 4 + j)];
        ASSERT_LE(byte, 24);
        const float v = float(int(byte) - 12) * ks[size_t(b * T + l)];
        ASSERT_EQ(v, kt[size_t(d * T + l)]) << "n " << n << " key " << l << " dim " << d;
        if (l >= n) {
          ASSERT_EQ(byte, 12);
        }
      }
  }
}

TEST(IndexScoresI8, ScoresFollowTheFormulaAndMatchTheFp32Path) {
  std::mt19937 rng(23);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int Hi = 8, Di = 128, nb = Di / 32, rows = 3;
  for (int n_tiles : {1, 3}) {
    const int n_keys = n_tiles * T - 5;  // the last tile padded
    auto keys = fp4_keys(n_keys, Di, rng);
    std::vector<const uint8_t*> ptr;
    for (auto& k : keys) ptr.push_back(k.data());
    std::vector<float> kt(size_t(n_tiles * Di * T));
    std::vector<uint8_t> k8(size_t(n_tiles * index_tile_i8_bytes(Di)));
    std::vector<float> ks(size_t(n_tiles * nb * T));
    for (int t = 0; t < n_tiles; ++t) {
      const int n = std::min(int(T), n_keys - t * T);
      decode_fp4_keys_transposed(&ptr[size_t(t * T)], n, Di, &kt[size_t(t * Di * T)], T);
      decode_fp4_keys_i8(&ptr[size_t(t * T)], n, Di, &k8[size_t(t * index_tile_i8_bytes(Di))], &ks[size_t(t * nb * T)]);
    }
    std::vector<float> q(size_t(rows * Hi * Di)), w(size_t(rows * Hi));
    for (auto& v : q) v = nd(rng);
    for (int b = 0; b < rows * Hi * nb; ++b) fp4_sim_block(&q[size_t(b * 32)], 32);
    for (auto& v : w) v = nd(rng) * 0.1f;
    std::vector<int8_t> q8(q.size());
    std::vector<float> qs(size_t(rows * Hi * nb));
    std::vector<int32_t> corr(qs.size());
    for (int r = 0; r < rows; ++r)
      ASSERT_TRUE(index_query_i8(&q[size_t(r * Hi * Di)], Hi, Di, &q8[size_t(r * Hi * Di)], &qs[size_t(r * Hi * nb)],
                                 &corr[size_t(r * Hi * nb)]));
    for (bool round : {false, true}) {
      const int stride = n_tiles * T + 2;
      std::vector<float> got(size_t(rows * stride), -7.f), f32(size_t(rows * stride), -7.f);
      index_scores_tiles_i8(k8.data(), ks.data(), n_tiles, Di, Hi, q8.data(), qs.data(), corr.data(), w.data(), Hi, rows,
                            got.data(), stride, round);
      index_scores_tiles(kt.data(), n_tiles, Di, Hi, q.data(), Hi * Di, w.data(), Hi, rows, f32.data(), stride, round);
      int positive = 0;
      for (int r = 0; r < rows; ++r) {
        for (int l = 0; l < n_keys; ++l) {
          std::vector<float> qr(q.begin() + r * Hi * Di, q.begin() + (r + 1) * Hi * Di);
          float want = spec_score_i8(qr, &w[size_t(r * Hi)], keys[size_t(l)], Hi, Di);
          if (round) want = round_bf16(want);
          const float g = got[size_t(r * stride + l)];
          ASSERT_EQ(f32_bits(g), f32_bits(want)) << "tiles " << n_tiles << " row " << r << " key " << l;
          // the fp32 path: the same value up to its rounding (bits equal where it fuses the
          // head weighting and its running sums are exact, as here on AVX2)
          ASSERT_NEAR(g, f32[size_t(r * stride + l)], 1e-5f * (std::fabs(g) + 1e-3f) + (round ? std::fabs(g) * 8e-3f : 0.f));
          positive += g > 0;
        }
        for (int l = n_tiles * T; l < stride; ++l) ASSERT_EQ(got[size_t(r * stride + l)], -7.f) << "wrote past";
      }
      EXPECT_GT(positive, 0);
      // one row at a time: the same bits
      for (int r = 0; r < rows; ++r) {
        std::vector<float> one(size_t(n_tiles * T));
        index_scores_tiles_i8(k8.data(), ks.data(), n_tiles, Di, Hi, &q8[size_t(r * Hi * Di)], &qs[size_t(r * Hi * nb)],
                              &corr[size_t(r * Hi * nb)], &w[size_t(r * Hi)], Hi, 1, one.data(), n_tiles * T, round);
        for (int l = 0; l < n_tiles * T; ++l)
          ASSERT_EQ(f32_bits(one[size_t(l)]), f32_bits(got[size_t(r * stride + l)])) << "row " << r << " key " << l;
      }
    }
  }
}

}  // namespace
}  // namespace dsv4::kernels
