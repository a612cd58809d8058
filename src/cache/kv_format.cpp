#include "cache/kv_format.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/dtype.h"

namespace dsv4::cache {

namespace {
int nscale_kv(int nope) { return (nope + 63) / 64; }
size_t rope_offset(int nope) {
  size_t o = size_t(nope) + size_t(nscale_kv(nope));
  return (o + 1) & ~size_t(1);  // bf16 alignment
}
}  // namespace

size_t RowCodec::bytes() const {
  switch (kind) {
    case RowKind::f32: return size_t(width) * 4;
    case RowKind::kv_native: return rope_offset(nope) + size_t(width - nope) * 2;
    case RowKind::index_native: return size_t(width + 1) / 2 + size_t((width + 31) / 32);
  }
  return 0;
}

void RowCodec::encode(const float* x, uint8_t* out) const {
  switch (kind) {
    case RowKind::f32: std::memcpy(out, x, size_t(width) * 4); return;
    case RowKind::kv_native: {
      float tmp[64];
      uint8_t* scales = out + nope;
      for (int b = 0, s = 0; b < nope; b += 64, ++s) {
        const int n = std::min(64, nope - b);
        std::copy(x + b, x + b + n, tmp);
        fp8_sim_block(tmp, size_t(n), out + b, scales + s);
      }
      size_t ro = rope_offset(nope);
      if (ro > size_t(nope + nscale_kv(nope))) out[ro - 1] = 0;
      for (int i = nope; i < width; ++i) {
        uint16_t h = f32_to_bf16(x[i]);
        std::memcpy(out + ro + size_t(i - nope) * 2, &h, 2);
      }
      return;
    }
    case RowKind::index_native: {
      float tmp[32];
      uint8_t codes[32];
      const size_t packed = size_t(width + 1) / 2;
      std::memset(out, 0, packed);
      for (int b = 0, s = 0; b < width; b += 32, ++s) {
        const int n = std::min(32, width - b);
        std::copy(x + b, x + b + n, tmp);
        fp4_sim_block(tmp, size_t(n), codes, out + packed + s);
        for (int i = 0; i < n; ++i) {
          const int e = b + i;
          out[e >> 1] |= uint8_t((codes[i] & 0xf) << ((e & 1) ? 4 : 0));
        }
      }
      return;
    }
  }
}

void RowCodec::decode(const uint8_t* in, float* x) const {
  switch (kind) {
    case RowKind::f32: std::memcpy(x, in, size_t(width) * 4); return;
    case RowKind::kv_native: {
      const uint8_t* scales = in + nope;
      for (int i = 0; i < nope; ++i) x[i] = e4m3_to_f32(in[i]) * e8m0_to_f32(scales[i / 64]);
      const size_t ro = rope_offset(nope);
      for (int i = nope; i < width; ++i) {
        uint16_t h;
        std::memcpy(&h, in + ro + size_t(i - nope) * 2, 2);
        x[i] = bf16_to_f32(h);
      }
      return;
    }
    case RowKind::index_native: {
      const size_t packed = size_t(width + 1) / 2;
      for (int i = 0; i < width; ++i) {
        const uint8_t b = in[i >> 1];
        const uint8_t code = (i & 1) ? uint8_t(b >> 4) : uint8_t(b & 0xf);
        x[i] = e2m1_to_f32(code) * e8m0_to_f32(in[packed + size_t(i / 32)]);
      }
      return;
    }
  }
}

void RowCodec::decode_strided(const uint8_t* in, float* x, int64_t stride) const {
  switch (kind) {
    case RowKind::f32:
      for (int i = 0; i < width; ++i) std::memcpy(&x[i * stride], in + size_t(i) * 4, 4);
      return;
    case RowKind::kv_native: {  // not a hot path: KV rows are read whole by attention
      std::vector<float> tmp(static_cast<size_t>(width));
      decode(in, tmp.data());
      for (int i = 0; i < width; ++i) x[i * stride] = tmp[size_t(i)];
      return;
    }
    case RowKind::index_native: {
      const size_t packed = size_t(width + 1) / 2;
      for (int b0 = 0; b0 < width; b0 += 32) {
        const float s = e8m0_to_f32(in[packed + size_t(b0 / 32)]);
        const int b1 = std::min(width, b0 + 32);
        for (int i = b0; i < b1; ++i) {
          const uint8_t b = in[i >> 1];
          x[i * stride] = e2m1_to_f32((i & 1) ? uint8_t(b >> 4) : uint8_t(b & 0xf)) * s;
        }
      }
      return;
    }
  }
}

}  // namespace dsv4::cache
