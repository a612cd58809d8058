// dsv4 kernels: the backend seam (DESIGN.md "One op set for compute", issue 11). Every op the model
// calls goes through a Backend: matmul on stored formats, RMSNorm, RoPE, mHC pre/post/head, sink
// attention over (window + selected entries), compressor pooling, lightning-indexer scoring +
// top-k, SwiGLU. The arguments are plain arrays and views (kernels know no model types), so a GPU
// backend can implement the same interface. The CPU backend (kernels/cpu/cpu_backend.h) owns the
// one thread pool; model code holds no threads and no SIMD.
//
// Numerics are the model's: each op documents its order of operations, and `round_bf16` flags
// put the reference's bf16 rounding points where the model asks for them.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "kernels/index_score.h"
#include "kernels/linear.h"

namespace dsv4::kernels {

// mHC (V4-ARCH §2.2) parameters of one site as arrays: fn [nmix, hc*dim], base [nmix], scale [3].
inline constexpr int kMaxHc = 8;
struct HcSite {
  const float* fn = nullptr;
  const float* base = nullptr;
  const float* scale = nullptr;
  int hc = 0;
  int64_t dim = 0;
  int sinkhorn_iters = 0;
  float hc_eps = 0;
  float norm_eps = 0;
};
// One token's mixing coefficients from mhc_pre, used by mhc_post.
struct HcMix {
  float post[kMaxHc];
  float comb[kMaxHc * kMaxHc];  // comb[j * hc + k]
};

// RoPE frequencies (V4-ARCH §2.3.1): rotates the last 2 * npairs dims of a vector by angles
// float(pos) * omega[i] (interleaved pairs).
struct RopeFreqs {
  const float* omega = nullptr;
  int npairs = 0;
};

// A store of fp32-decodable rows the backend reads in place (compressed KV entries, index keys).
class RowSource {
 public:
  virtual ~RowSource() = default;
  virtual int64_t rows() const = 0;
  // Row j decoded as fp32 into dst[0], dst[stride], dst[2*stride], ...
  virtual void decode_strided(int64_t j, float* dst, int64_t stride) const = 0;
  // Rows j0 .. j0 + n - 1 (n <= kIndexTile) into one transposed tile: value d of row j0 + l to
  // dst[d * ld + l], lanes n .. kIndexTile - 1 set to 0 (ld >= kIndexTile). The default decodes
  // row by row; a source whose format has a whole-tile decoder uses it (same values).
  virtual void decode_tile(int64_t j0, int64_t n, int64_t width, float* dst, int64_t ld) const {
    for (int64_t l = 0; l < n; ++l) decode_strided(j0 + l, dst + l, ld);
    for (int64_t d = 0; d < width; ++d)
      for (int64_t l = n; l < kIndexTile; ++l) dst[d * ld + l] = 0.f;
  }
  // Row j's stored bytes when the rows are index keys as e2m1 codes + e8m0 block scales (the
  // layout decode_fp4_keys_transposed reads; reference numerics), for integer scoring; nullptr
  // when they are stored otherwise.
  virtual const uint8_t* fp4_row(int64_t /*j*/) const { return nullptr; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual int threads() const = 0;

  // y[n, out] = x[n, in] . W^T on W's stored format (linear.h), fp32 accumulation.
  virtual void matmul(const Linear& W, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy,
                      const MatmulOpts& opts = {}) = 0;

  // rows vectors x + r*ld of length dim, in place: RMSNorm (weight w bf16 [dim], null: none), then
  // bf16 rounding when round_bf16.
  virtual void rms_norm(float* x, int64_t rows, int64_t dim, int64_t ld, const TensorView* w, float eps,
                        bool round_bf16) = 0;

  // RoPE (or its inverse) on rows x heads vectors x + r*ld + h*dim of length dim at position
  // pos[r], then bf16 rounding when round_bf16.
  virtual void rope(float* x, int64_t rows, int64_t heads, int64_t dim, int64_t ld, const int64_t* pos,
                    const RopeFreqs& f, bool inverse, bool round_bf16) = 0;

  // mHC for rows tokens, X [rows, hc, dim]: pre -> x_in [rows, dim] and mix[rows]; post updates X
  // in place: X[k] = post[k] * y + sum_j comb[j][k] X_old[j]; head -> x [rows, dim].
  virtual void mhc_pre(const float* X, int64_t rows, const HcSite& s, bool round_bf16, float* x_in, HcMix* mix) = 0;
  virtual void mhc_post(float* X, const float* y, int64_t rows, const HcMix* mix, int hc, int64_t dim,
                        bool round_bf16) = 0;
  virtual void mhc_head(const float* X, int64_t rows, const HcSite& s, bool round_bf16, float* x) = 0;

  // Sink attention (V4-ARCH §2.3.7) for rows x heads queries q [rows, heads, dim]: row r attends to
  // keys[key_begin[r] .. key_begin[r+1]) (pointers to dim floats; K = V), head h with sink logit
  // sinks[h]; softmax in fp32 with the sink in the denominator, probabilities rounded to bf16 when
  // round_probs, then out = sum p_i k_i, rounded to bf16 when round_out. out [rows, heads, dim].
  virtual void sink_attention(const float* q, int64_t rows, int64_t heads, int64_t dim, const float* const* keys,
                              const int64_t* key_begin, const float* sinks, float scale, bool round_probs,
                              bool round_out, float* out) = 0;

  // Compressor pooling (V4-ARCH §2.3.5): out[c] = sum_s softmax_s(score[s][c]) * value[s][c] over
  // `slots` (value, score) row pointers, c < width (a score of -inf drops its slot).
  virtual void softmax_pool(const float* const* values, const float* const* scores, int slots, int64_t width,
                            float* out) = 0;

  // SwiGLU of the experts in place on g [rows, inter]: g = silu(min(g, L)) * clamp(u, -L, L) * w[r]
  // (limit L <= 0: no clamp; row_weight null: 1), rounded to bf16 when round_bf16.
  virtual void swiglu(float* g, const float* u, int64_t rows, int64_t inter, float limit, const float* row_weight,
                      bool round_bf16) = 0;

  // Lightning-indexer selection (V4-ARCH §2.3.6) for rows queries q [rows, hi, di] with head
  // weights w [rows, hi] (already scaled): row r scores keys 0 .. n_eligible[r]-1 of `keys` as
  // sum_h w[h] * max(q_h . k, 0) (bf16-rounded when round_bf16) and gets the top k by (score desc,
  // index asc), ascending, in selected[r]. n_eligible is non-decreasing over the rows.
  virtual void index_topk(const RowSource& keys, const float* q, const float* w, int64_t rows, int64_t hi,
                          int64_t di, const int64_t* n_eligible, int64_t topk, bool round_bf16,
                          std::vector<int32_t>* selected) = 0;
};

// The process's CPU backend, created on first use with ThreadPool::default_threads() threads.
Backend& default_backend();

}  // namespace dsv4::kernels
