// dsv4 CPU kernels: how hot functions are compiled. Release builds compile each one for AVX-512,
// AVX2 and baseline x86-64 (GCC target_clones; the loader picks one at run time via ifunc), so
// one binary runs on any x86-64 and uses what the CPU has. Other architectures (ARM64) and
// clang builds get the portable code, vectorised for the build's baseline.
//
// DSV4_KERNEL_ISA (CMake option) pins one level instead, so the AVX2 and baseline paths can be
// built and tested on a machine that would otherwise always pick AVX-512:
//   -DDSV4_KERNEL_ISA=avx2      every kernel compiled for AVX2 only
//   -DDSV4_KERNEL_ISA=baseline  no SIMD beyond the build's baseline (what ARM64 builds get)
// and the tests build one more pinned variant, DSV4_KERNEL_ISA_WIDE: AVX2 code that takes the
// AVX-512 clones' paths (vector_floats() 16: 16-float vectors, 32-row GEMM tiles, 8-token tiles),
// GCC splitting each 64-byte vector in two, so those paths are tested on machines without AVX-512.
#pragma once

// The AVX2 level is x86-64-v3 (AVX2 with FMA, F16C, BMI: every AVX2 CPU from Intel Haswell and
// AMD Zen on); GCC's plain "avx2" target leaves out FMA.
#if defined(DSV4_KERNEL_ISA_AVX2) || defined(DSV4_KERNEL_ISA_WIDE)
#define DSV4_CLONES __attribute__((target("arch=x86-64-v3")))
#elif defined(DSV4_KERNEL_ISA_BASELINE)
#define DSV4_CLONES
#elif defined(__x86_64__) && !defined(__clang__)
#define DSV4_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define DSV4_CLONES
#endif

namespace dsv4::kernels {
// GCC vector of W floats (W = 16: 64 bytes, 8: 32 bytes, 4: 16 bytes).
template <int W>
struct Vec {
  typedef float type __attribute__((vector_size(4 * W)));
};

// Helpers that take or return vectors must be inlined into each clone (DSV4_VEC_INLINE): a call
// between code compiled for different ISAs passes 32- and 64-byte vectors differently (GCC's
// -Wpsabi), which breaks unoptimised (-O0, sanitizer) builds, where nothing is inlined unasked.
#define DSV4_VEC_INLINE __attribute__((always_inline)) inline

// A vector's bytes as another type of the same size (std::bit_cast is a call at -O0, see above).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // always inlined: no vector crosses a call
template <class To, class From>
DSV4_VEC_INLINE To vec_cast(const From& f) {
  static_assert(sizeof(To) == sizeof(From));
  To t;
  __builtin_memcpy(&t, &f, sizeof t);
  return t;
}

// A vector of -0 that the optimiser treats as unknown, so that x * f + nz is kept as a
// multiply-add (not folded back to x * f): the same value as the product for every x, but Zen 3
// multiplies slow down on subnormal inputs and its multiply-adds do not (the raw FP4 decodes of
// +-0.5 are subnormal; linear_cpu.cpp, index_score_cpu.cpp). It goes through memory: make it once
// per kernel call, outside the loops.
template <int W>
DSV4_VEC_INLINE typename Vec<W>::type neg_zero_opaque() {
  typename Vec<W>::type v;
  for (int j = 0; j < W; ++j) v[j] = -0.f;
  __asm__("" : "+m"(v));
  return v;
}
#pragma GCC diagnostic pop

// The vector width, in floats, that the running clones handle in registers: 16 when the AVX-512
// clones run, 8 for AVX2, 4 otherwise (SSE2 baseline, ARM64 NEON). GCC keeps vector values wider
// than the ISA's registers in memory, so kernels pick their vector type and register blocking
// from this (same arithmetic per lane whatever they pick).
inline int vector_floats() {
#if defined(DSV4_KERNEL_ISA_WIDE)
  return 16;
#elif defined(DSV4_KERNEL_ISA_AVX2)
  return 8;
#elif defined(DSV4_KERNEL_ISA_BASELINE)
  return 4;
#elif defined(__x86_64__) && !defined(__clang__)
  static const int w = __builtin_cpu_supports("avx512f") ? 16 : __builtin_cpu_supports("x86-64-v3") ? 8 : 4;
  return w;
#else
  return 4;
#endif
}
}  // namespace dsv4::kernels
