// kernels::matmul for few tokens (the fused decode-and-multiply kernels, n <= 8, FP8/FP4 n <= 16) and many (the
// decode-to-buffer path): every format x shapes with K not a multiple of 16 or 128, row/column
// sub-blocks, scales and activations that force the fallback rows, and n from 1 to 17 and 64.
// Each (token, row) value must be the bits of decode_row + dot_f32 (the reference order), close to
// a double-precision product, and the same as in the n = 64 product.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/linear.h"
#include "random_linear.h"

namespace dsv4::kernels {
namespace {

const char* name(WeightFormat f) {
  switch (f) {
    case WeightFormat::f32: return "f32";
    case WeightFormat::bf16: return "bf16";
    case WeightFormat::fp8_block128: return "fp8";
    default: return "fp4";
  }
}

std::vector<float> randn(size_t n, uint32_t seed, float sd = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// The reference: decode_row then dot_f32 (what the decode-to-buffer path computes), rounded and
// NaN-canonicalised as matmul stores results.
float reference(const Linear& W, const std::vector<float>& wrow, const float* x, const MatmulOpts& o) {
  float v = dot_f32(wrow.data(), x, W.in);
  if (std::isnan(v)) return std::numeric_limits<float>::quiet_NaN();
  return o.out_bf16 ? round_bf16(v) : v;
}

// Checks matmul(W, x, n) for every n in the list against the reference, a double product and the
// n = 64 result. x holds 64 token rows of stride ldx.
void check_all_n(const Linear& W, const std::vector<float>& x, int64_t ldx, const MatmulOpts& o,
                 const std::string& what, bool check_double = true) {
  const int64_t out = W.out, in = W.in;
  std::vector<float> y64(size_t(64 * out));
  matmul(W, x.data(), 64, ldx, y64.data(), out, o);
  // activations as matmul sees them
  std::vector<float> xq(x);
  if (o.act_fp8)
    for (int64_t t = 0; t < 64; ++t) act_quant_fp8_row(&xq[size_t(t * ldx)], in);
  std::vector<float> wrow(static_cast<size_t>(in));
  for (int64_t r = 0; r < out; ++r) {
    W.decode_row(r, wrow.data());
    if (o.weight_bf16)
      for (auto& v : wrow) v = round_bf16(v);
    for (int64_t t = 0; t < 64; ++t) {
      const float* xt = &xq[size_t(t * ldx)];
      const float ref = reference(W, wrow, xt, o);
      const float got = y64[size_t(t * out + r)];
      ASSERT_EQ(f32_bits(got), f32_bits(ref)) << what << " n=64 row " << r << " token " << t;
      if (check_double && !std::isnan(ref)) {
        double want = 0, mag = 0;
        for (int64_t k = 0; k < in; ++k) {
          want += double(wrow[size_t(k)]) * xt[k];
          mag += std::fabs(double(wrow[size_t(k)]) * xt[k]);
        }
        const double tol = (o.out_bf16 ? 8e-3 : 2e-6) * mag + 1e-30;
        ASSERT_NEAR(got, want, tol) << what << " row " << r << " token " << t;
      }
    }
  }
  for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16, 17}) {
    for (int64_t t0 : {int64_t(0), 64 - n}) {  // first and last tokens
      std::vector<float> y(size_t(n * out));
      matmul(W, &x[size_t(t0 * ldx)], n, ldx, y.data(), out, o);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t r = 0; r < out; ++r)
          ASSERT_EQ(f32_bits(y[size_t(t * out + r)]), f32_bits(y64[size_t((t0 + t) * out + r)]))
              << what << " n=" << n << " token " << t0 + t << " row " << r;
    }
  }
}

class FusedFormats : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(FusedFormats, EveryShapeAndTokenCountGivesTheReferenceBits) {
  const WeightFormat f = GetParam();
  // K: multiples of 128, of 16 only, of 2 only (FP4 packs two per byte)
  for (int64_t in : {int64_t(256), int64_t(208), int64_t(130), int64_t(1000)}) {
    const int64_t out = 67;
    test::Owned o = test::make_random_linear(f, out, in, uint32_t(in));
    const std::vector<float> x = randn(size_t(64 * in), 3);
    check_all_n(o.lin, x, in, {}, std::string(name(f)) + " in=" + std::to_string(in));
  }
}

TEST_P(FusedFormats, RowAndColumnSubBlocks) {
  const WeightFormat f = GetParam();
  const int64_t out = 300, in = 512;
  test::Owned o = test::make_random_linear(f, out, in, 7);
  const std::vector<float> x = randn(size_t(64 * in), 4);
  // rows crossing FP8's 128-row scale groups, odd starts
  check_all_n(o.lin.rows(101, 60), x, in, {}, std::string(name(f)) + " rows(101,60)");
  check_all_n(o.lin.rows(3, 250), x, in, {}, std::string(name(f)) + " rows(3,250)");
  // columns: block aligned, 16-aligned (FP4 falls back), odd (FP4 too); x rows keep stride in
  for (int64_t c0 : {int64_t(128), int64_t(32), int64_t(48), int64_t(5)}) {
    const Linear sub = o.lin.rows(20, 40).cols(c0, 300);
    check_all_n(sub, x, in, {}, std::string(name(f)) + " cols(" + std::to_string(c0) + ",300)");
  }
}

TEST_P(FusedFormats, MatmulOptions) {
  const WeightFormat f = GetParam();
  const int64_t out = 45, in = 384;
  test::Owned o = test::make_random_linear(f, out, in, 9);
  const std::vector<float> x = randn(size_t(64 * in), 5);
  MatmulOpts ob;
  ob.out_bf16 = true;
  check_all_n(o.lin, x, in, ob, std::string(name(f)) + " out_bf16");
  MatmulOpts wb;
  wb.weight_bf16 = true;
  check_all_n(o.lin, x, in, wb, std::string(name(f)) + " weight_bf16");
  MatmulOpts aq;
  aq.act_fp8 = true;
  check_all_n(o.lin, x, in, aq, std::string(name(f)) + " act_fp8");
}

INSTANTIATE_TEST_SUITE_P(Stored, FusedFormats,
                         ::testing::Values(WeightFormat::f32, WeightFormat::bf16, WeightFormat::fp8_block128,
                                           WeightFormat::fp4_block32),
                         [](const auto& info) { return std::string(name(info.param)); });

// FP8 scale exponents at the edges: 0 (2^-127), 134 (the largest the fused kernel folds into x),
// 135 and 200 (not foldable: those row groups take the fallback), with activations whose scaled
// copy under- or overflows.
TEST(FusedFp8, ExtremeScalesAndActivations) {
  const int64_t out = 300, in = 384;
  test::Owned o = test::make_random_linear(WeightFormat::fp8_block128, out, in, 11);
  // groups x column blocks: 3 x 3
  o.s = {0, 127, 134, 135, 120, 1, 200, 64, 127};
  o.lin.scale.data = o.s.data();
  std::vector<float> x = randn(size_t(64 * in), 6);
  x[300] = 3e38f;        // token 0: overflows when scaled by 2^(134-7) (group 0, column block 2)
  x[in + 7] = 1e-44f;    // token 1: subnormal; scaling by 2^(0-7) loses bits (group 0, block 0)
  x[2 * in + 300] = 0.f;
  check_all_n(o.lin, x, in, {}, "fp8 extreme", /*check_double=*/false);
  // weight_bf16 (wo_a): scale exponents 0..2 make some decoded weights lose bits in bf16, so their
  // groups must take the rounding path; 3 and above are exact and stay fused.
  MatmulOpts wb;
  wb.weight_bf16 = true;
  o.s = {0, 1, 2, 3, 2, 4, 127, 64, 134};
  check_all_n(o.lin, x, in, wb, "fp8 extreme weight_bf16", /*check_double=*/false);
}

// FP4 scale exponents: 0, 128 (largest folded), 129 and 254 (rows fall back), 255 (NaN).
TEST(FusedFp4, ExtremeScales) {
  const int64_t out = 20, in = 256;
  test::Owned o = test::make_random_linear(WeightFormat::fp4_block32, out, in, 12);
  o.s[0] = 0;
  o.s[8 * 1 + 3] = 128;
  o.s[8 * 2 + 7] = 129;
  o.s[8 * 5 + 1] = 254;
  o.s[8 * 9 + 2] = 255;
  const std::vector<float> x = randn(size_t(64 * in), 8, 1e-3f);
  check_all_n(o.lin, x, in, {}, "fp4 extreme", /*check_double=*/false);
}

// e4m3 NaN codes (0x7f, 0xff) make their row's result NaN in every path.
TEST(FusedFp8, NanCodesGiveNan) {
  const int64_t out = 8, in = 256;
  test::Owned o = test::make_random_linear(WeightFormat::fp8_block128, out, in, 13);
  o.w[size_t(2 * in + 17)] = 0x7f;
  o.w[size_t(5 * in + 200)] = 0xff;
  const std::vector<float> x = randn(size_t(64 * in), 9);
  check_all_n(o.lin, x, in, {}, "fp8 nan", /*check_double=*/false);
  std::vector<float> y(out);
  matmul(o.lin, x.data(), 1, in, y.data(), out);
  for (int64_t r = 0; r < out; ++r) EXPECT_EQ(std::isnan(y[size_t(r)]), r == 2 || r == 5) << r;
  // With the per-tensor NaN-code state a loaded model keeps (Linear::nan_codes): the first call
  // finds the codes, and the results stay the reference bits, NaN rows included.
  std::atomic<int8_t> state{-1};
  o.lin.nan_codes = &state;
  check_all_n(o.lin, x, in, {}, "fp8 nan, tensor state", /*check_double=*/false);
  EXPECT_EQ(state.load(), 1);
  matmul(o.lin, x.data(), 1, in, y.data(), out);
  for (int64_t r = 0; r < out; ++r) EXPECT_EQ(std::isnan(y[size_t(r)]), r == 2 || r == 5) << r;
  // A tensor without NaN codes is found clean (rows then skip the scan) and gives the same bits.
  o.w[size_t(2 * in + 17)] = 0x7e;
  o.w[size_t(5 * in + 200)] = 0x80;
  state.store(-1);
  check_all_n(o.lin, x, in, {}, "fp8 clean, tensor state", /*check_double=*/false);
  EXPECT_EQ(state.load(), 0);
  // The NaN code in the last byte (the scan's tail) and in a 32-byte body chunk are both found.
  for (size_t at : {o.w.size() - 1, size_t(64)}) {
    o.w[at] = 0xff;
    state.store(-1);
    matmul(o.lin, x.data(), 1, in, y.data(), out);
    EXPECT_EQ(state.load(), 1) << at;
    EXPECT_TRUE(std::isnan(y[at / size_t(in)])) << at;
    o.w[at] = 0;
  }
}

// Every e4m3 code (all 256, NaN excepted) and e2m1 nibble pair, one at a time: y = w_k * x_k.
TEST(FusedDecode, EachCodeTimesOneActivation) {
  for (WeightFormat f : {WeightFormat::fp8_block128, WeightFormat::fp4_block32}) {
    const int64_t in = f == WeightFormat::fp8_block128 ? 256 : 512, out = 1;
    test::Owned o = test::make_random_linear(f, out, in, 14);
    for (int c = 0; c < 256; ++c) o.w[size_t(c)] = (f == WeightFormat::fp8_block128 && (c & 0x7f) == 0x7f) ? 0 : uint8_t(c);
    std::vector<float> row(static_cast<size_t>(in));
    o.lin.decode_row(0, row.data());
    for (int64_t k = 0; k < in; ++k) {
      std::vector<float> x(size_t(in), 0.f);
      x[size_t(k)] = 1.5f;
      float y = 0;
      matmul(o.lin, x.data(), 1, in, &y, 1);
      ASSERT_EQ(y, row[size_t(k)] * 1.5f) << name(f) << " column " << k;  // -0 sums to +0
    }
  }
}

}  // namespace
}  // namespace dsv4::kernels
