// Random weights of every stored format for the kernel tests, owning the bytes the Linear points
// at. FP4 also for odd K (ld rounded up to whole bytes); FP8 without NaN codes.
#pragma once
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/linear.h"

namespace dsv4::kernels::test {

struct Owned {
  std::vector<uint8_t> w, s;
  Linear lin;
};

// FP4 scales [out, ceil(in/32)], FP8 [ceil(out/128), ceil(in/128)].
inline Owned make_random_linear(WeightFormat fmt, int64_t out, int64_t in, uint32_t seed) {
  std::mt19937 rng(seed);
  Owned o;
  Linear& l = o.lin;
  l.fmt = fmt;
  l.out = out;
  l.in = in;
  l.ld = in;
  std::normal_distribution<float> nd(0.f, 0.05f);
  switch (fmt) {
    case WeightFormat::f32:
      o.w.resize(size_t(out * in * 4));
      for (int64_t i = 0; i < out * in; ++i) {
        const float v = nd(rng);
        std::memcpy(&o.w[size_t(i * 4)], &v, 4);
      }
      l.w = TensorView{o.w.data(), Dtype::f32, 2, {out, in}};
      break;
    case WeightFormat::bf16:
      o.w.resize(size_t(out * in * 2));
      for (int64_t i = 0; i < out * in; ++i) {
        const uint16_t h = f32_to_bf16(nd(rng));
        std::memcpy(&o.w[size_t(i * 2)], &h, 2);
      }
      l.w = TensorView{o.w.data(), Dtype::bf16, 2, {out, in}};
      break;
    case WeightFormat::fp8_block128: {
      o.w.resize(size_t(out * in));
      for (auto& b : o.w) {
        b = uint8_t(rng());
        if ((b & 0x7f) == 0x7f) b ^= 1;  // no NaN codes here
      }
      const int64_t so = (out + 127) / 128, si = (in + 127) / 128;
      o.s.resize(size_t(so * si));
      for (auto& b : o.s) b = uint8_t(118 + rng() % 4);
      l.w = TensorView{o.w.data(), Dtype::e4m3, 2, {out, in}};
      l.scale = TensorView{o.s.data(), Dtype::e8m0, 2, {so, si}};
      break;
    }
    case WeightFormat::fp4_block32: {
      o.w.resize(size_t(out * ((in + 1) / 2)));
      for (auto& b : o.w) b = uint8_t(rng());
      const int64_t sb = (in + 31) / 32;
      o.s.resize(size_t(out * sb));
      for (auto& b : o.s) b = uint8_t(121 + rng() % 4);
      l.ld = (in + 1) / 2 * 2;
      l.w = TensorView{o.w.data(), Dtype::u8, 2, {out, l.ld / 2}};
      l.scale = TensorView{o.s.data(), Dtype::e8m0, 2, {out, sb}};
      break;
    }
  }
  return o;
}

}  // namespace dsv4::kernels::test
