// V4-ARCH §3.2: storage formats of cached rows.
//  - f32 numerics: plain fp32 rows.
//  - reference numerics ("native", the paper format): a KV row (window or compressed entry) is
//    [Dn x e4m3][ceil(Dn/64) x e8m0][pad to even][R x bf16] (Dh=512: 448+7+1+128 = 584 B);
//    an indexer key is [Di/2 bytes packed e2m1, low nibble first][Di/32 x e8m0] (Di=128: 68 B).
// The reference computes values that are exactly representable in these formats (FP8SIM_64 on
// KV dims 0..Dn, bf16 rope dims, FP4SIM_32 on index keys), so storing them this way is lossless:
// decode(encode(x)) == x bit for bit.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dsv4::cache {

enum class RowKind : uint8_t { f32, kv_native, index_native };

struct RowCodec {
  RowKind kind = RowKind::f32;
  int width = 0;  // floats per row
  int nope = 0;   // kv_native: e4m3 dims (the rest are bf16 rope dims)

  static RowCodec f32_rows(int width) { return {RowKind::f32, width, 0}; }
  static RowCodec kv(int head_dim, int rope_dim) { return {RowKind::kv_native, head_dim, head_dim - rope_dim}; }
  static RowCodec index_key(int dim) { return {RowKind::index_native, dim, 0}; }

  size_t bytes() const;
  void encode(const float* x, uint8_t* out) const;
  void decode(const uint8_t* in, float* x) const;
  // decode() writing value i to x[i * stride] (a key into a transposed tile; same values).
  void decode_strided(const uint8_t* in, float* x, int64_t stride) const;
};

}  // namespace dsv4::cache
