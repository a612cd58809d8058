// dsv4 core: the number formats of V4 checkpoints and activations (V4-ARCH §2.7, §4.3).
// bf16, f16, e4m3 (FP8 E4M3FN), e8m0 (UE8M0 power-of-two scale), e2m1 (FP4, two per byte,
// low nibble first). Decoding is exact; encoding rounds to nearest, ties to even, like torch.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace dsv4 {

enum class Dtype : uint8_t { f32, bf16, f16, e4m3, e8m0, i8, u8, i32, i64, f64, boolean };

// Name as safetensors spells it ("F32", "BF16", "F8_E4M3", "F8_E8M0", "I8", ...).
const char* dtype_safetensors_name(Dtype d);
// Short spec name ("f32", "bf16", "e4m3", "e8m0", "fp4x2(i8)", ...).
const char* dtype_name(Dtype d);
size_t dtype_size(Dtype d);
// Parses a safetensors dtype string; returns false for an unknown one.
bool dtype_from_safetensors(std::string_view s, Dtype* out);

// ---- scalar conversions ----------------------------------------------------------------------
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }
// Round-to-nearest-even, NaN preserved (quiet).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
// Rounds an fp32 value through bf16 (what storing an activation in bf16 does).
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

float f16_to_f32(uint16_t h);

// e4m3 (FN: bias 7, no inf, 0x7f/0xff NaN, subnormals m*2^-9). Table-driven decode.
extern const float kE4m3Table[256];
inline float e4m3_to_f32(uint8_t b) { return kE4m3Table[b]; }
// Encode with saturation to +-448 and round-to-nearest-even (torch float8_e4m3fn cast of a
// clamped value). NaN encodes as 0x7f.
uint8_t f32_to_e4m3(float x);

// e8m0: 2^(e-127); 255 = NaN.
inline float e8m0_to_f32(uint8_t e) {
  if (e == 255) return f32_from_bits(0x7fc00000u);
  if (e == 0) return 5.877471754111438e-39f;  // 2^-127 (subnormal in fp32)
  return f32_from_bits(uint32_t(e) << 23);
}

// e2m1 code (4 bits, bit 3 = sign) -> value.
extern const float kE2m1Table[16];
inline float e2m1_to_f32(uint8_t code) { return kE2m1Table[code & 0xf]; }
// Encode with saturation to +-6, round-to-nearest-even.
uint8_t f32_to_e2m1(float x);

// ---- power-of-two block scales (V4-ARCH §2.7) -------------------------------------------------
// ceil(log2(r)) computed exactly from the fp32 bit pattern of r (r > 0, normal or subnormal).
int ceil_log2_exact(float r);
// e8m0 exponent byte of 2^ceil(log2(amax/qmax)) with the reference's amax floor applied.
uint8_t e8m0_scale_for_amax(float amax, float qmax, float amax_floor);
// The FP4 (e2m1, 1x32) block scale for a block's amax: qmax 6, amax floor 6 x 2^-126.
inline uint8_t fp4_scale_for_amax(float amax) { return e8m0_scale_for_amax(amax, 6.f, 6.f * 1.1754943508222875e-38f); }

// FP8 activation/KV simulation of one block: amax=max(|x|,1e-4), s=2^ceil(log2(amax/448)),
// x <- e4m3(x/s)*s. Writes codes/scale if the pointers are non-null. In-place on x.
void fp8_sim_block(float* x, size_t n, uint8_t* codes = nullptr, uint8_t* scale_e8m0 = nullptr);
// FP4 simulation of one block: amax=max(|x|,6*2^-126), s=2^ceil(log2(amax/6)), x <- e2m1(x/s)*s.
void fp4_sim_block(float* x, size_t n, uint8_t* codes = nullptr, uint8_t* scale_e8m0 = nullptr);

}  // namespace dsv4
