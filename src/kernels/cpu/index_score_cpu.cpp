// CPU lightning-indexer scoring. GCC vector extensions of 16 floats: one zmm with AVX-512, two
// ymm with AVX2, four xmm (or NEON q registers) otherwise; the function is compiled for each ISA
// and picked at run time like the matmul kernels.
#include <cstring>

#include "core/dtype.h"
#include "kernels/index_score.h"

// The 64-byte helpers below are inlined into each clone; their by-value ABI never crosses a call.
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__x86_64__) && !defined(__clang__)
#define DSV4_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DSV4_CLONES
#endif

namespace dsv4::kernels {

namespace {
typedef float v16 __attribute__((vector_size(64)));
static_assert(sizeof(v16) == sizeof(float) * kIndexTile);

inline v16 load16(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline v16 relu(v16 x) {
  const v16 zero = {};
  return x < zero ? zero : x;  // == std::max(x, 0.f) lane by lane (keeps -0 and NaN)
}
}  // namespace

DSV4_CLONES void index_scores_tile(const float* kt, int64_t Di, int64_t Hi, const float* q, int64_t q_stride,
                                   const float* w, int64_t w_stride, int64_t n_rows, float* out,
                                   int64_t out_stride, bool round_bf16) {
  constexpr int R = 4;  // rows at once: independent accumulator chains, one key load per R rows
  int64_t r = 0;
  for (; r + R <= n_rows; r += R) {
    v16 tot[R] = {};
    for (int64_t h = 0; h < Hi; ++h) {
      v16 acc[R] = {};
      const float* qh = q + r * q_stride + h * Di;
      for (int64_t d = 0; d < Di; ++d) {
        const v16 k = load16(kt + d * kIndexTile);
        for (int i = 0; i < R; ++i) acc[i] += qh[i * q_stride + d] * k;
      }
      for (int i = 0; i < R; ++i) tot[i] += w[(r + i) * w_stride + h] * relu(acc[i]);
    }
    for (int i = 0; i < R; ++i) std::memcpy(out + (r + i) * out_stride, &tot[i], sizeof(v16));
  }
  for (; r < n_rows; ++r) {
    v16 tot = {};
    for (int64_t h = 0; h < Hi; ++h) {
      v16 acc = {};
      const float* qh = q + r * q_stride + h * Di;
      for (int64_t d = 0; d < Di; ++d) acc += qh[d] * load16(kt + d * kIndexTile);
      tot += w[r * w_stride + h] * relu(acc);
    }
    std::memcpy(out + r * out_stride, &tot, sizeof(v16));
  }
  if (round_bf16)
    for (int64_t i = 0; i < n_rows; ++i)
      for (int l = 0; l < kIndexTile; ++l) out[i * out_stride + l] = dsv4::round_bf16(out[i * out_stride + l]);
}

}  // namespace dsv4::kernels
