// V4-ARCH §2.7 quantisers and §4.3 decode tables.
#include "core/dtype.h"

#include <cmath>
#include <limits>

namespace dsv4 {

namespace {
struct DtypeInfo {
  Dtype d;
  const char* st;
  const char* name;
  size_t size;
};
constexpr DtypeInfo kInfo[] = {
    {Dtype::f32, "F32", "f32", 4},        {Dtype::bf16, "BF16", "bf16", 2},
    {Dtype::f16, "F16", "f16", 2},        {Dtype::e4m3, "F8_E4M3", "e4m3", 1},
    {Dtype::e8m0, "F8_E8M0", "e8m0", 1},  {Dtype::i8, "I8", "i8", 1},
    {Dtype::u8, "U8", "u8", 1},           {Dtype::i32, "I32", "i32", 4},
    {Dtype::i64, "I64", "i64", 8},        {Dtype::f64, "F64", "f64", 8},
    {Dtype::boolean, "BOOL", "bool", 1},
};

constexpr double pow2i(int e) {
  double p = 1.0;
  for (int i = 0; i < e; ++i) p *= 2.0;
  for (int i = 0; i < -e; ++i) p /= 2.0;
  return p;
}

struct E4m3Table {
  float t[256];
  constexpr E4m3Table() : t() {
    for (int b = 0; b < 256; ++b) {
      int s = b >> 7, e = (b >> 3) & 0xf, m = b & 7;
      double v;
      if (e == 0xf && m == 7)
        v = std::numeric_limits<double>::quiet_NaN();
      else if (e == 0)
        v = m * pow2i(-9);
      else
        v = (1.0 + m / 8.0) * pow2i(e - 7);
      t[b] = float(s ? -v : v);
    }
  }
};
constexpr E4m3Table kE4m3{};
}  // namespace

const float kE4m3Table[256] = {
#define R8(i) kE4m3.t[i], kE4m3.t[i + 1], kE4m3.t[i + 2], kE4m3.t[i + 3], kE4m3.t[i + 4], \
              kE4m3.t[i + 5], kE4m3.t[i + 6], kE4m3.t[i + 7]
#define R64(i) R8(i), R8(i + 8), R8(i + 16), R8(i + 24), R8(i + 32), R8(i + 40), R8(i + 48), R8(i + 56)
    R64(0), R64(64), R64(128), R64(192)
#undef R64
#undef R8
};

const float kE2m1Table[16] = {0.f,  0.5f,  1.f,  1.5f,  2.f,  3.f,  4.f,  6.f,
                              -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};

const char* dtype_safetensors_name(Dtype d) { return kInfo[int(d)].st; }
const char* dtype_name(Dtype d) { return kInfo[int(d)].name; }
size_t dtype_size(Dtype d) { return kInfo[int(d)].size; }
bool dtype_from_safetensors(std::string_view s, Dtype* out) {
  for (const auto& i : kInfo)
    if (s == i.st) {
      *out = i.d;
      return true;
    }
  return false;
}

float f16_to_f32(uint16_t h) {
  uint32_t s = uint32_t(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0) {
    float v = std::ldexp(float(m), -24);
    return s ? -v : v;
  }
  if (e == 31) return f32_from_bits(s | 0x7f800000u | (m << 13));
  return f32_from_bits(s | ((e + 112) << 23) | (m << 13));
}

// Round-to-nearest-even of a non-negative value that is an exact multiple of a power of two
// step; nearbyint uses the default (to-nearest-even) rounding mode.
static inline int rne(float v) { return int(std::nearbyint(v)); }

// 2^e as an fp32 value for e in [-127, 127] (2^-127 is subnormal, still exact). Multiplying by it
// is exactly ldexp(x, e) (both are correctly rounded) without the libm call.
static inline float pow2f(int e) {
  return e >= -126 ? f32_from_bits(uint32_t(e + 127) << 23) : f32_from_bits(0x00400000u);
}

uint8_t f32_to_e4m3(float x) {
  if (std::isnan(x)) return 0x7f;
  uint8_t sign = std::signbit(x) ? 0x80 : 0;
  float a = std::fabs(x);
  if (a >= 448.f) return sign | 0x7e;
  if (a < 0.015625f) {  // below 2^-6: subnormal grid 2^-9 (q = 8 rolls into code 0x08 = 2^-6)
    return sign | uint8_t(rne(a * 512.f));
  }
  // a normal: round the fp32 mantissa to 3 bits, ties to even, on the bit pattern; a carry out of
  // the mantissa moves into the exponent, which is the next binade's code.
  uint32_t u = f32_bits(a);
  u += 0x7ffffu + ((u >> 20) & 1u);
  const int el = int(u >> 23) - 127;  // in [-6, 8]
  int code = ((el + 7) << 3) | int((u >> 20) & 7u);
  if (code > 0x7e) code = 0x7e;
  return sign | uint8_t(code);
}

uint8_t f32_to_e2m1(float x) {
  if (std::isnan(x)) return 0;
  uint8_t sign = std::signbit(x) ? 0x8 : 0;
  float a = std::fabs(x);
  if (a >= 6.f) return sign | 0x7;
  if (a < 1.f) return sign | uint8_t(rne(a * 2.f));  // 0, 0.5, 1.0 (code 2)
  uint32_t u = f32_bits(a);  // a in [1, 6): round the mantissa to 1 bit, ties to even
  u += 0x1fffffu + ((u >> 22) & 1u);
  const int el = int(u >> 23) - 127;  // 0, 1, 2 (3 only as the saturated carry from 6)
  int code = ((el + 1) << 1) | int((u >> 22) & 1u);
  if (code > 7) code = 7;
  return sign | uint8_t(code);
}

int ceil_log2_exact(float r) {
  uint32_t u = f32_bits(r);
  int exp = int((u >> 23) & 0xff);
  uint32_t man = u & 0x7fffffu;
  if (exp == 0) {  // subnormal: r = man * 2^-149
    int hi = 31 - __builtin_clz(man);
    return (hi - 149) + ((man & (man - 1)) ? 1 : 0);
  }
  return (exp - 127) + (man != 0 ? 1 : 0);
}

uint8_t e8m0_scale_for_amax(float amax, float qmax, float amax_floor) {
  float a = amax > amax_floor ? amax : amax_floor;
  int e = ceil_log2_exact(a / qmax);
  int b = e + 127;
  if (b < 0) b = 0;
  if (b > 254) b = 254;
  return uint8_t(b);
}

static void sim_block(float* x, size_t n, float qmax, float floor_, uint8_t (*enc)(float),
                      float (*dec)(uint8_t), uint8_t* codes, uint8_t* scale_out) {
  float amax = 0.f;
  for (size_t i = 0; i < n; ++i) {  // == fmax(amax, |x|): a NaN never wins, as in fmax
    const float a = std::fabs(x[i]);
    amax = a > amax ? a : amax;
  }
  uint8_t se = e8m0_scale_for_amax(amax, qmax, floor_);
  const int e = int(se) - 127;  // in [-127, 127]
  const float down = pow2f(-e), up = pow2f(e);
  for (size_t i = 0; i < n; ++i) {
    float v = x[i] * down;
    v = std::fmin(std::fmax(v, -qmax), qmax);
    uint8_t c = enc(v);
    if (codes) codes[i] = c;
    x[i] = dec(c) * up;
  }
  if (scale_out) *scale_out = se;
}

static float dec_e4m3(uint8_t c) { return kE4m3Table[c]; }
static float dec_e2m1(uint8_t c) { return kE2m1Table[c & 0xf]; }

// The bits of e4m3(a) as a value, for a = |v| <= 448 given by its bits: below 2^-6 the subnormal
// grid 2^-9 (adding and taking away 2^14 rounds to it, ties to even, as f32_to_e4m3's rne(a x 512)),
// from 2^-6 on the mantissa rounded to 3 bits on the bit pattern as f32_to_e4m3 does. Both computed
// and merged with a mask, so that loops over it vectorise (GCC keeps a select's float arithmetic
// conditional, -ftrapping-math, and then cannot vectorise the loop).
static inline int32_t e4m3_round_abs_bits(int32_t ab) {
  const int32_t nrm = (ab + 0x7ffff + ((ab >> 20) & 1)) & int32_t(0xfff00000u);
  const int32_t sub = int32_t(f32_bits((f32_from_bits(uint32_t(ab)) + 0x1p14f) - 0x1p14f));
  const int32_t small = -int32_t(ab < 0x3c800000);  // below 2^-6: all ones
  return (sub & small) | (nrm & ~small);             // a mask, not a select: see above
}

void fp8_sim_block(float* x, size_t n, uint8_t* codes, uint8_t* scale_e8m0) {
  constexpr float kQmax = 448.f, kAmaxFloor = 1e-4f;
  if (codes) {
    sim_block(x, n, kQmax, kAmaxFloor, f32_to_e4m3, dec_e4m3, codes, scale_e8m0);
    return;
  }
  // sim_block's arithmetic on bit patterns (as signed integers: magnitudes' bits are below 2^31,
  // and baseline x86-64 vectors compare only signed ones), the code round trip written as one
  // rounding (tests: Dtype.Fp8SimBlockFastPathEqualsCodeRoundTrip); activations are quantised
  // before every FP8 product, so this runs per token and matmul. amax: the largest |x| bits, NaN
  // left out (as sim_block's comparison leaves it out).
  int32_t amax_bits = 0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t ab = int32_t(f32_bits(x[i]) & 0x7fffffffu);
    const int32_t m = ab > 0x7f800000 ? 0 : ab;
    amax_bits = m > amax_bits ? m : amax_bits;
  }
  const uint8_t se = e8m0_scale_for_amax(f32_from_bits(uint32_t(amax_bits)), kQmax, kAmaxFloor);
  const int e = int(se) - 127;
  const float down = pow2f(-e), up = pow2f(e);
  constexpr int32_t k448 = 0x43e00000;  // kQmax's bits
  for (size_t i = 0; i < n; ++i) {
    // sim_block's fmin(fmax(v, -448), 448): |v| at most 448, a NaN becomes -448 (fmax returns its
    // other operand)
    const uint32_t b = f32_bits(x[i] * down);
    const int32_t ab = int32_t(b & 0x7fffffffu);
    const int32_t nan = -int32_t(ab > 0x7f800000);  // all ones for a NaN
    const int32_t sign = int32_t(b & 0x80000000u) | (nan & int32_t(0x80000000u));
    const int32_t mag = ab < k448 ? ab : k448;  // a NaN's bits exceed 448's
    x[i] = f32_from_bits(uint32_t(sign | e4m3_round_abs_bits(mag))) * up;
  }
  if (scale_e8m0) *scale_e8m0 = se;
}
void fp4_sim_block(float* x, size_t n, uint8_t* codes, uint8_t* scale_e8m0) {
  sim_block(x, n, 6.f, 6.f * 1.1754943508222875e-38f, f32_to_e2m1, dec_e2m1, codes, scale_e8m0);
}

}  // namespace dsv4
