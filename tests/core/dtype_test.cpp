// Known-answer tests for the V4 number formats (V4-ARCH §2.7, §4.3).
#include "core/dtype.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

using namespace dsv4;

TEST(Dtype, E4m3DecodeKnownValues) {
  EXPECT_EQ(e4m3_to_f32(0x00), 0.f);
  EXPECT_EQ(e4m3_to_f32(0x01), std::ldexp(1.f, -9));   // smallest subnormal
  EXPECT_EQ(e4m3_to_f32(0x07), 7 * std::ldexp(1.f, -9));
  EXPECT_EQ(e4m3_to_f32(0x08), std::ldexp(1.f, -6));    // smallest normal
  EXPECT_EQ(e4m3_to_f32(0x38), 1.f);
  EXPECT_EQ(e4m3_to_f32(0x7e), 448.f);
  EXPECT_EQ(e4m3_to_f32(0xfe), -448.f);
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0x7f)));
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0xff)));
  EXPECT_TRUE(std::signbit(e4m3_to_f32(0x80)));
}

TEST(Dtype, E4m3ExhaustiveRoundTripAndMonotone) {
  // Every finite code encodes back to itself; positive codes are strictly increasing.
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7f) == 0x7f) continue;
    float v = e4m3_to_f32(uint8_t(b));
    EXPECT_EQ(f32_to_e4m3(v), b == 0x80 ? 0x80 : b) << b;
    if ((b & 0x7f) > 0 && (b & 0x7f) < 0x7e && b < 0x80) EXPECT_LT(v, e4m3_to_f32(uint8_t(b + 1)));
  }
}

TEST(Dtype, E4m3RoundsToNearestEven) {
  // Midpoint between 1.0 (0x38) and 1.125 (0x39) -> even mantissa 0x38; 1.1875 -> 0x3a (1.25).
  EXPECT_EQ(f32_to_e4m3(1.0625f), 0x38);
  EXPECT_EQ(f32_to_e4m3(1.1875f), 0x3a);
  // Subnormal midpoint 1.5 * 2^-9 -> 2 * 2^-9 (even).
  EXPECT_EQ(f32_to_e4m3(1.5f * std::ldexp(1.f, -9)), 0x02);
  EXPECT_EQ(f32_to_e4m3(0.5f * std::ldexp(1.f, -9)), 0x00);
  EXPECT_EQ(f32_to_e4m3(1000.f), 0x7e);  // saturates
  EXPECT_EQ(f32_to_e4m3(-1000.f), 0xfe);
  // Between every pair of adjacent codes, the nearest one wins.
  for (int b = 0; b < 0x7e; ++b) {
    float lo = e4m3_to_f32(uint8_t(b)), hi = e4m3_to_f32(uint8_t(b + 1));
    EXPECT_EQ(f32_to_e4m3(lo + (hi - lo) * 0.49f), b);
    EXPECT_EQ(f32_to_e4m3(lo + (hi - lo) * 0.51f), b + 1);
  }
}

TEST(Dtype, E2m1ExhaustiveTable) {
  const float expect[16] = {0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6};
  for (int c = 0; c < 16; ++c) {
    EXPECT_EQ(e2m1_to_f32(uint8_t(c)), expect[c]);
    EXPECT_EQ(std::signbit(e2m1_to_f32(uint8_t(c))), c >= 8);
    EXPECT_EQ(f32_to_e2m1(expect[c]), c == 8 ? 8 : c);
  }
  EXPECT_EQ(f32_to_e2m1(0.25f), 0);   // tie -> even (0)
  EXPECT_EQ(f32_to_e2m1(0.75f), 2);   // tie between .5 (1) and 1 (2) -> even code 2
  EXPECT_EQ(f32_to_e2m1(2.5f), 4);    // tie between 2 (4) and 3 (5) -> 4
  EXPECT_EQ(f32_to_e2m1(5.f), 6);     // tie between 4 (6) and 6 (7) -> 6
  EXPECT_EQ(f32_to_e2m1(100.f), 7);
}

// Independent reference for the encoders: the nearest representable value by binary search over
// the decode table, ties to the even code, saturation at the largest finite value.
static uint8_t nearest_code(float a, const float* pos_values, int n_pos) {
  const float* hi = std::lower_bound(pos_values, pos_values + n_pos, a);
  if (hi == pos_values + n_pos) return uint8_t(n_pos - 1);
  if (hi == pos_values || *hi == a) return uint8_t(hi - pos_values);
  const float* lo = hi - 1;
  const float dl = a - *lo, dh = *hi - a;
  if (dl < dh) return uint8_t(lo - pos_values);
  if (dh < dl) return uint8_t(hi - pos_values);
  return uint8_t(((lo - pos_values) & 1) == 0 ? lo - pos_values : hi - pos_values);
}

TEST(Dtype, EncodersMatchNearestValueSearchOnManyFloats) {
  float e4m3_pos[0x7f], e2m1_pos[8];
  for (int c = 0; c < 0x7f; ++c) e4m3_pos[c] = e4m3_to_f32(uint8_t(c));
  for (int c = 0; c < 8; ++c) e2m1_pos[c] = e2m1_to_f32(uint8_t(c));
  // every 61st fp32 pattern from 0 up to 1000.0 (subnormals, every binade, the saturation range)
  int64_t checked = 0;
  for (uint32_t u = 0; u <= f32_bits(1000.f); u += 61, ++checked) {
    const float a = f32_from_bits(u);
    ASSERT_EQ(f32_to_e4m3(a), nearest_code(a, e4m3_pos, 0x7f)) << a;
    ASSERT_EQ(f32_to_e4m3(-a), uint8_t(0x80 | nearest_code(a, e4m3_pos, 0x7f))) << -a;
    ASSERT_EQ(f32_to_e2m1(a), nearest_code(a, e2m1_pos, 8)) << a;
    ASSERT_EQ(f32_to_e2m1(-a), uint8_t(0x8 | nearest_code(a, e2m1_pos, 8))) << -a;
  }
  EXPECT_GT(checked, 15000000);
}

TEST(Dtype, E8m0AllExponents) {
  for (int e = 1; e < 255; ++e) EXPECT_EQ(e8m0_to_f32(uint8_t(e)), std::ldexp(1.f, e - 127));
  EXPECT_EQ(e8m0_to_f32(0), std::ldexp(1.f, -127));
  EXPECT_TRUE(std::isnan(e8m0_to_f32(255)));
}

TEST(Dtype, Bf16RoundTripAndRounding) {
  for (uint32_t h = 0; h < 65536; h += 7) {
    float f = bf16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_bf16(f), h);
  }
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f808000u)), 0x3f80);  // tie -> even
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f818000u)), 0x3f82);
}

TEST(Dtype, CeilLog2Exact) {
  EXPECT_EQ(ceil_log2_exact(1.f), 0);
  EXPECT_EQ(ceil_log2_exact(1.0000001f), 1);
  EXPECT_EQ(ceil_log2_exact(0.5f), -1);
  EXPECT_EQ(ceil_log2_exact(0.75f), 0);
  EXPECT_EQ(ceil_log2_exact(std::ldexp(1.f, -140)), -140);
}

TEST(Dtype, Fp8SimBlockPowerOfTwoScale) {
  float x[4] = {448.f * 2.f, -3.f, 0.1f, 0.f};  // amax 896 -> s = 2
  uint8_t codes[4], se;
  fp8_sim_block(x, 4, codes, &se);
  EXPECT_EQ(se, 128);
  EXPECT_EQ(x[0], 896.f);
  EXPECT_EQ(x[1], -3.f);
  EXPECT_EQ(x[3], 0.f);
  // Everything is (code * scale).
  for (int i = 0; i < 4; ++i) EXPECT_EQ(x[i], e4m3_to_f32(codes[i]) * 2.f);
  float tiny[2] = {0.f, 0.f};
  fp8_sim_block(tiny, 2, nullptr, &se);  // amax floored at 1e-4
  EXPECT_EQ(se, 127 + ceil_log2_exact(1e-4f / 448.f));
}

// fp8_sim_block without codes takes a vectorisable one-rounding path; it must give the bits of the
// code round trip (the path with codes) for every input: a sweep over fp32 bit patterns in blocks
// of 128 (each block with its own scale), blocks of one magnitude with ties on the e4m3 grid, and
// the special values.
TEST(Dtype, Fp8SimBlockFastPathEqualsCodeRoundTrip) {
  auto check_block = [](std::vector<float> v) {
    std::vector<float> a = v, b = v;
    std::vector<uint8_t> codes(v.size());
    uint8_t sa = 0, sb = 0;
    fp8_sim_block(a.data(), a.size(), codes.data(), &sa);
    fp8_sim_block(b.data(), b.size(), nullptr, &sb);
    ASSERT_EQ(sa, sb);
    for (size_t i = 0; i < v.size(); ++i)
      ASSERT_EQ(f32_bits(a[i]), f32_bits(b[i])) << "input " << v[i] << " (bits " << f32_bits(v[i]) << ") at " << i;
  };
  std::vector<float> blk;
  for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 4093) {  // ~1M patterns: every exponent, NaNs, infs
    blk.push_back(f32_from_bits(uint32_t(u)));
    if (blk.size() == 128) {
      check_block(blk);
      blk.clear();
    }
  }
  // one magnitude per block, so that the scale puts the values on the e4m3 grid's ties and subnormals
  std::mt19937 rng(5);
  for (int b = 0; b < 2000; ++b) {
    const int e = int(rng() % 60) - 30;
    blk.clear();
    blk.push_back(std::ldexp(1.f, e));  // amax
    for (int i = 1; i < 128; ++i) {
      const float q = float(int(rng() % 8192) - 4096) / 16.f;  // multiples of 2^-4 up to 256
      blk.push_back(std::ldexp(q / 448.f, e) * ((rng() & 1) ? 1.f : -1.f));
    }
    check_block(blk);
  }
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  check_block({0.f, -0.f, nan, -nan, inf, -inf, 1e-45f, -1e-45f, 448.f, -449.f, 1e-4f, 3.4e38f});
  check_block({-0.f, 0.f});
}

TEST(Dtype, Fp4SimBlock) {
  float x[4] = {12.f, -6.f, 1.f, 2.9f};  // amax 12 -> s = 2; values /2 = 6, -3, .5, 1.45 -> 1.5
  uint8_t se;
  fp4_sim_block(x, 4, nullptr, &se);
  EXPECT_EQ(se, 128);
  EXPECT_EQ(x[0], 12.f);
  EXPECT_EQ(x[1], -6.f);
  EXPECT_EQ(x[2], 1.f);
  EXPECT_EQ(x[3], 3.f);
}
