// kernels::matmul on weights in every stored format (f32, bf16, FP8 128x128 blocks, FP4 1x32
// blocks): against a double-precision evaluation of the decoded weights, and bit-identical for a
// token whatever the batch size, row sub-block or column sub-block it comes with (chunked ==
// one-shot prefill rests on this).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/linear.h"
#include "random_linear.h"

namespace dsv4::kernels {
namespace {

class MatmulFormats : public ::testing::TestWithParam<WeightFormat> {};

TEST_P(MatmulFormats, MatchesDoubleAndIsIndependentOfBatchAndBlocks) {
  const int64_t out = 300, in = 384, n = 21;  // out not a multiple of the row block or of 128
  test::Owned o = test::make_random_linear(GetParam(), out, in, 17);
  const Linear& W = o.lin;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n * in));
  for (auto& v : x) v = nd(rng);

  std::vector<float> y(static_cast<size_t>(n * out));
  matmul(W, x.data(), n, in, y.data(), out);

  std::vector<float> wrow(static_cast<size_t>(in));
  for (int64_t r = 0; r < out; ++r) {
    W.decode_row(r, wrow.data());
    for (int64_t t = 0; t < n; ++t) {
      double want = 0, mag = 0;
      for (int64_t k = 0; k < in; ++k) {
        want += double(wrow[size_t(k)]) * x[size_t(t * in + k)];
        mag += std::fabs(double(wrow[size_t(k)]) * x[size_t(t * in + k)]);
      }
      ASSERT_NEAR(y[size_t(t * out + r)], want, 1e-6 * mag + 1e-12) << "row " << r << " token " << t;
    }
  }
  // one token at a time: the same bits
  for (int64_t t = 0; t < n; ++t) {
    std::vector<float> y1(static_cast<size_t>(out));
    matmul(W, &x[size_t(t * in)], 1, in, y1.data(), out);
    for (int64_t r = 0; r < out; ++r)
      ASSERT_EQ(f32_bits(y1[size_t(r)]), f32_bits(y[size_t(t * out + r)])) << "row " << r << " token " << t;
  }
  // a sub-block of rows (grouped projections) gives the same bits as the full product
  const Linear sub = W.rows(37, 150);
  std::vector<float> ys(static_cast<size_t>(n * 150));
  matmul(sub, x.data(), n, in, ys.data(), 150);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < 150; ++r)
      ASSERT_EQ(f32_bits(ys[size_t(t * 150 + r)]), f32_bits(y[size_t(t * out + 37 + r)])) << r;
  // out_bf16 rounds exactly the fp32 result
  MatmulOpts ob;
  ob.out_bf16 = true;
  std::vector<float> yb(static_cast<size_t>(n * out));
  matmul(W, x.data(), n, in, yb.data(), out, ob);
  for (size_t i = 0; i < yb.size(); ++i) ASSERT_EQ(f32_bits(yb[i]), f32_bits(round_bf16(y[i]))) << i;
}

TEST(LinearDecode, EveryFp8AndFp4CodeEqualsTheTables) {
  // one row holding each e4m3 code twice (two 128-column blocks with scales 2^0 and 2^-3)
  std::vector<uint8_t> w8(256), s8 = {127, 124};
  for (int c = 0; c < 256; ++c) w8[size_t(c)] = uint8_t(c);
  Linear l8;
  l8.fmt = WeightFormat::fp8_block128;
  l8.out = 1, l8.in = 256, l8.ld = 256;
  l8.w = TensorView{w8.data(), Dtype::e4m3, 2, {1, 256}};
  l8.scale = TensorView{s8.data(), Dtype::e8m0, 2, {1, 2}};
  std::vector<float> row(256);
  l8.decode_row(0, row.data());
  for (int c = 0; c < 256; ++c) {
    const float want = kE4m3Table[c] * (c < 128 ? 1.f : 0.125f);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(row[size_t(c)])) << c;
    } else {
      EXPECT_EQ(f32_bits(row[size_t(c)]), f32_bits(want)) << "code " << c;
    }
  }
  // FP4: the 256 byte values are every (low, high) nibble pair
  std::vector<uint8_t> w4(256), s4(16, 126);
  for (int c = 0; c < 256; ++c) w4[size_t(c)] = uint8_t(c);
  Linear l4;
  l4.fmt = WeightFormat::fp4_block32;
  l4.out = 1, l4.in = 512, l4.ld = 512;
  l4.w = TensorView{w4.data(), Dtype::u8, 2, {1, 256}};
  l4.scale = TensorView{s4.data(), Dtype::e8m0, 2, {1, 16}};
  std::vector<float> row4(512);
  l4.decode_row(0, row4.data());
  for (int c = 0; c < 256; ++c) {
    EXPECT_EQ(f32_bits(row4[size_t(2 * c)]), f32_bits(kE2m1Table[c & 15] * 0.5f)) << c;
    EXPECT_EQ(f32_bits(row4[size_t(2 * c + 1)]), f32_bits(kE2m1Table[c >> 4] * 0.5f)) << c;
  }
}

INSTANTIATE_TEST_SUITE_P(Stored, MatmulFormats,
                         ::testing::Values(WeightFormat::f32, WeightFormat::bf16, WeightFormat::fp8_block128,
                                           WeightFormat::fp4_block32),
                         [](const auto& info) {
                           switch (info.param) {
                             case WeightFormat::f32: return std::string("f32");
                             case WeightFormat::bf16: return std::string("bf16");
                             case WeightFormat::fp8_block128: return std::string("fp8");
                             default: return std::string("fp4");
                           }
                         });

}  // namespace
}  // namespace dsv4::kernels

// dot_keys_f32 / axpy_keys_f32 (attention over a key list) give dot_f32's bits times the scale and
// those of axpy_f32 called key by key, for lengths with and without a tail, key counts with and
// without a remainder of four, whatever the alignment of the rows.
TEST(AttentionKeyKernels, SameBitsAsOneKeyAtATime) {
  std::mt19937 rng(17);
  std::normal_distribution<float> nd(0.f, 1.f);
  const float scale = 0.044194173f;  // 1 / sqrt(512)
  for (int64_t n : {int64_t(1), int64_t(15), int64_t(16), int64_t(17), int64_t(100), int64_t(512), int64_t(523)})
    for (int64_t nk : {int64_t(1), int64_t(3), int64_t(4), int64_t(9), int64_t(32), int64_t(37)}) {
      std::vector<float> buf(size_t((nk + 2) * (n + 3)));
      for (float& v : buf) v = nd(rng);
      const float* a = buf.data() + 1;  // odd offsets: unaligned rows
      std::vector<const float*> b;
      for (int64_t i = 0; i < nk; ++i) b.push_back(buf.data() + (i + 1) * (n + 3) + (i * 7) % 4);
      std::vector<float> got(static_cast<size_t>(nk));
      dsv4::kernels::dot_keys_f32(a, b.data(), nk, n, scale, got.data());
      for (int64_t k = 0; k < nk; ++k) {
        const float want = dsv4::kernels::dot_f32(a, b[size_t(k)], n) * scale;
        ASSERT_EQ(std::memcmp(&got[size_t(k)], &want, 4), 0)
            << "n=" << n << " nk=" << nk << " key " << k << ": " << got[size_t(k)] << " vs " << want;
      }
      std::vector<float> p(static_cast<size_t>(nk));
      for (float& v : p) v = nd(rng) * 0.1f;
      std::vector<float> y1(static_cast<size_t>(n)), y2(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) y1[size_t(i)] = y2[size_t(i)] = nd(rng);
      dsv4::kernels::axpy_keys_f32(p.data(), b.data(), nk, y1.data(), n);
      for (int64_t k = 0; k < nk; ++k) dsv4::kernels::axpy_f32(p[size_t(k)], b[size_t(k)], y2.data(), n);
      ASSERT_EQ(std::memcmp(y1.data(), y2.data(), size_t(n) * 4), 0) << "n=" << n << " nk=" << nk;
    }
}
