// The CPU backend's ops (kernels/backend.h). Each op's arithmetic is the model's reference order;
// the threads split rows (or heads, or key groups), never a reduction, so results do not depend on
// the thread count.
#include "kernels/cpu/cpu_backend.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>

#include "core/alloc_guard.h"
#include "core/dtype.h"
#include "core/error.h"
#include "kernels/index_score.h"
#include "kernels/ops.h"

namespace dsv4::kernels {

namespace {
// Below this many floats of work an op stays on the calling thread (a run costs more).
constexpr int64_t kParallelFloats = 16384;
int64_t min_rows_for(int64_t floats_per_row) {
  return std::max<int64_t>(2, kParallelFloats / std::max<int64_t>(floats_per_row, 1));
}
void round_if(bool on, float* x, int64_t n) {
  if (on) round_bf16_inplace(x, n);
}
}  // namespace

Backend& default_backend() {
  static CpuBackend backend;
  return backend;
}

void matmul(const Linear& W, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy, const MatmulOpts& opts) {
  default_backend().matmul(W, x, n, ldx, y, ldy, opts);
}

CpuBackend::CpuBackend(int threads) : pool_(threads), scratch_(size_t(pool_.size())) {}

void CpuBackend::matmul(const Linear& W, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy,
                        const MatmulOpts& opts) {
  cpu::matmul(pool_, W, x, n, ldx, y, ldy, opts);
}

void CpuBackend::rms_norm(float* x, int64_t rows, int64_t dim, int64_t ld, const TensorView* w, float eps,
                          bool round_bf16) {
  pool_.for_ranges(rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      kernels::rms_norm(x + r * ld, w, eps, dim, x + r * ld);
      round_if(round_bf16, x + r * ld, dim);
    }
  }, min_rows_for(dim));
}

void CpuBackend::rope(float* x, int64_t rows, int64_t heads, int64_t dim, int64_t ld, const int64_t* pos,
                      const RopeFreqs& f, bool inverse, bool round_bf16) {
  DSV4_CHECK(f.npairs <= 256 && 2 * f.npairs <= dim, "rope: rotated dims out of range");
  pool_.for_ranges(rows, [&](int64_t r0, int64_t r1, int) {
    float cs[256], sn[256];
    for (int64_t r = r0; r < r1; ++r) {
      const float p = float(pos[r]);
      for (int i = 0; i < f.npairs; ++i) {
        const float a = p * f.omega[i];
        cs[i] = std::cos(a);
        sn[i] = std::sin(a);
      }
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x + r * ld + h * dim;
        rope_rotate(v + (dim - 2 * f.npairs), cs, sn, f.npairs, inverse);
        round_if(round_bf16, v, dim);
      }
    }
  }, min_rows_for(heads * dim));
}

// ---- mHC (V4-ARCH §2.2) ------------------------------------------------------------------------

namespace {
// m = (fn . flatten(X)) * rsqrt(mean(X^2) + eps), one scalar over all hc*dim values.
void mix_logits(const float* X, const HcSite& s, int nmix, float* m) {
  const int64_t n = int64_t(s.hc) * s.dim;
  const float r = 1.f / std::sqrt(dot_f32(X, X, n) / float(n) + s.norm_eps);
  for (int i = 0; i < nmix; ++i) m[i] = dot_f32(s.fn + i * n, X, n) * r;
}

void mix_streams(const float* X, const float* pre, int hc, int64_t dim, bool round_bf16, float* x) {
  for (int64_t d = 0; d < dim; ++d) {
    float acc = 0;
    for (int k = 0; k < hc; ++k) acc += pre[k] * X[k * dim + d];
    x[d] = round_bf16 ? dsv4::round_bf16(acc) : acc;
  }
}
}  // namespace

void CpuBackend::mhc_pre(const float* X, int64_t rows, const HcSite& s, bool round_bf16, float* x_in, HcMix* mix) {
  const int hc = s.hc, nmix = (2 + hc) * hc;
  DSV4_CHECK(hc >= 1 && hc <= kMaxHc, "mhc: hc_mult out of range");
  pool_.for_ranges(rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* Xr = X + r * hc * s.dim;
      float m[(2 + kMaxHc) * kMaxHc], pre[kMaxHc];
      mix_logits(Xr, s, nmix, m);
      HcMix& mx = mix[r];
      for (int k = 0; k < hc; ++k) {
        pre[k] = sigmoid(m[k] * s.scale[0] + s.base[k]) + s.hc_eps;
        mx.post[k] = 2.f * sigmoid(m[hc + k] * s.scale[1] + s.base[hc + k]);
      }
      for (int i = 0; i < hc * hc; ++i) mx.comb[i] = m[2 * hc + i] * s.scale[2] + s.base[2 * hc + i];
      sinkhorn_split(mx.comb, hc, s.sinkhorn_iters, s.hc_eps);
      mix_streams(Xr, pre, hc, s.dim, round_bf16, x_in + r * s.dim);
    }
  });
}

void CpuBackend::mhc_post(float* X, const float* y, int64_t rows, const HcMix* mix, int hc, int64_t dim,
                          bool round_bf16) {
  pool_.for_ranges(rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      float* Xr = X + r * hc * dim;
      const float* yr = y + r * dim;
      const HcMix& mx = mix[r];
      float old[kMaxHc];
      for (int64_t d = 0; d < dim; ++d) {
        for (int j = 0; j < hc; ++j) old[j] = Xr[j * dim + d];
        for (int k = 0; k < hc; ++k) {
          float acc = mx.post[k] * yr[d];
          for (int j = 0; j < hc; ++j) acc += mx.comb[j * hc + k] * old[j];
          Xr[k * dim + d] = round_bf16 ? dsv4::round_bf16(acc) : acc;
        }
      }
    }
  });
}

void CpuBackend::mhc_head(const float* X, int64_t rows, const HcSite& s, bool round_bf16, float* x) {
  const int hc = s.hc;
  DSV4_CHECK(hc >= 1 && hc <= kMaxHc, "mhc: hc_mult out of range");
  pool_.for_ranges(rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* Xr = X + r * hc * s.dim;
      float m[kMaxHc], pre[kMaxHc];
      mix_logits(Xr, s, hc, m);
      for (int k = 0; k < hc; ++k) pre[k] = sigmoid(m[k] * s.scale[0] + s.base[k]) + s.hc_eps;
      mix_streams(Xr, pre, hc, s.dim, round_bf16, x + r * s.dim);
    }
  });
}

// ---- attention core (V4-ARCH §2.3.7) -----------------------------------------------------------

// All heads of a row attend the same entries (one KV head; V4-ARCH §2.3.7), so the keys are
// taken a block at a time (about 24 KiB of them, 12 at dim 512, stay in L1) by every head of a
// group, instead of each head streaming all of the row's keys from L3 in turn (measured: ~1/3 of
// the multiply-add peak that way, 16% of a 2K-context prefill). A row's heads are split into one
// group per thread (a decode step: both threads on its single row, each reading the keys once).
// The arithmetic per (row, head) does not depend on the blocks: every score is dot_f32's times
// the scale, the softmax is the same, and each output element adds p * key for the keys in order.
void CpuBackend::sink_attention(const float* q, int64_t rows, int64_t heads, int64_t dim, const float* const* keys,
                                const int64_t* key_begin, const float* sinks, float scale, bool round_probs,
                                bool round_out, float* out) {
  std::lock_guard<std::mutex> lock(scratch_mu_);
  // keys per block (bench: 8 / 12 / 16 / 32 keys of 2 KiB, one thread, G multiply-adds/s: scores
  // 25 / 25 / 23 / 19, outputs 18 / 21 / 22 / 16); a multiple of four, dot_keys_f32's pass
  const int64_t block = std::max<int64_t>(4, (24 * 1024 / (4 * std::max<int64_t>(dim, 1))) / 4 * 4);
  const int64_t groups = std::max<int64_t>(1, std::min<int64_t>(heads, pool_.size()));
  pool_.for_each_dynamic(rows * groups, 1, [&](int64_t item, int th) {
    const int64_t r = item / groups, g = item % groups;
    const int64_t h0 = heads * g / groups, h1 = heads * (g + 1) / groups;
    const float* const* ks = keys + key_begin[r];
    const int64_t nk = key_begin[r + 1] - key_begin[r];
    std::vector<float>& sc = scratch_[size_t(th)].a;  // scores, then probabilities: [head - h0][key]
    resize_with_context(sc, size_t((h1 - h0) * nk));
    for (int64_t kb = 0; kb < nk; kb += block) {
      const int64_t ke = std::min(nk, kb + block);
      for (int64_t h = h0; h < h1; ++h)
        dot_keys_f32(q + (r * heads + h) * dim, ks + kb, ke - kb, dim, scale, &sc[size_t((h - h0) * nk + kb)]);
    }
    for (int64_t h = h0; h < h1; ++h) {
      float* s = &sc[size_t((h - h0) * nk)];
      float mx = sinks[h];
      for (int64_t i = 0; i < nk; ++i) mx = std::max(mx, s[i]);
      float den = std::exp(sinks[h] - mx);
      for (int64_t i = 0; i < nk; ++i) den += (s[i] = std::exp(s[i] - mx));
      for (int64_t i = 0; i < nk; ++i) {  // probabilities in place of the scores
        float p = s[i] / den;
        if (round_probs) p = dsv4::round_bf16(p);
        s[i] = p;
      }
      float* oh = out + (r * heads + h) * dim;
      std::fill(oh, oh + dim, 0.f);
    }
    for (int64_t kb = 0; kb < nk; kb += block) {
      const int64_t ke = std::min(nk, kb + block);
      for (int64_t h = h0; h < h1; ++h)
        axpy_keys_f32(&sc[size_t((h - h0) * nk + kb)], ks + kb, ke - kb, out + (r * heads + h) * dim, dim);
    }
    for (int64_t h = h0; h < h1; ++h) round_if(round_out, out + (r * heads + h) * dim, dim);
  });
}

// ---- compressor pooling (V4-ARCH §2.3.5) --------------------------------------------------------

void CpuBackend::softmax_pool(const float* const* values, const float* const* scores, int slots, int64_t width,
                              float* out) {
  for (int64_t c = 0; c < width; ++c) {
    float mx = scores[0][c];
    for (int s = 1; s < slots; ++s) mx = std::max(mx, scores[s][c]);
    float den = 0, num = 0;
    for (int s = 0; s < slots; ++s) {
      const float e = std::exp(scores[s][c] - mx);  // exp(-inf) = 0 drops a slot
      den += e;
      num += e * values[s][c];
    }
    out[c] = num / den;
  }
}

// ---- MoE expert activation ---------------------------------------------------------------------

void CpuBackend::swiglu(float* g, const float* u, int64_t rows, int64_t inter, float limit, const float* row_weight,
                        bool round_bf16) {
  pool_.for_ranges(rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t t = r0; t < r1; ++t) {
      const float wt = row_weight ? row_weight[t] : 1.f;
      float* gr = g + t * inter;
      const float* ur = u + t * inter;
      for (int64_t i = 0; i < inter; ++i) {
        float gv = gr[i], uv = ur[i];
        if (limit > 0) {
          gv = std::min(gv, limit);
          uv = std::clamp(uv, -limit, limit);
        }
        const float h = silu(gv) * uv * wt;
        gr[i] = round_bf16 ? dsv4::round_bf16(h) : h;
      }
    }
  }, min_rows_for(inter));
}

// ---- lightning indexer (V4-ARCH §2.3.6) ---------------------------------------------------------
//
// The keys go in groups of kGroup tiles of kIndexTile entries, split over the threads in
// contiguous ranges; each group is decoded once (transposed tiles, in L2) and scored against the
// rows that can see it, kRows rows at a time (their queries stay in cache across the group's
// tiles). Under reference numerics, with keys stored as FP4 (RowSource::fp4_row) and every query
// row of the block FP4-simulated (always, unless a query holds NaN), the tiles are integer tiles
// and the scoring integer (index_scores_tiles_i8: ~2x fp32's speed on AVX2, a quarter of the tile
// bytes, the same scores); otherwise fp32. Each (thread, row) keeps a RunningTopk, so no buffer
// grows with the context; the candidates of all threads are merged per row at the end.
void CpuBackend::index_topk(const RowSource& keys, const float* q, const float* w, int64_t rows, int64_t hi,
                            int64_t di, const int64_t* n_eligible, int64_t topk, bool round_bf16,
                            std::vector<int32_t>* selected) {
  std::lock_guard<std::mutex> lock(scratch_mu_);
  constexpr int64_t T = kIndexTile, kGroup = 16, kRows = 8;
  // rows per block: the (thread, row) candidate lists stay under ~8 MiB per thread
  const int64_t max_rows = std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(4 * topk, 1));
  for (int64_t i = 0; i < rows;) {
    const int64_t nb = std::min(rows - i, max_rows);
    const int64_t last_elig = n_eligible[i + nb - 1];  // keys seen by the block's last row
    DSV4_CHECK(keys.rows() >= last_elig, "indexer: index keys missing for the rows");
    const int64_t n_groups = (last_elig + kGroup * T - 1) / (kGroup * T);
    const int64_t nb32 = di / 32, tile_i8 = index_tile_i8_bytes(di);
    bool i8 = round_bf16 && di % 32 == 0 && last_elig > 0 && keys.fp4_row(0) != nullptr;
    if (i8) {
      resize_with_context(iq8_, size_t(nb * hi * di));
      resize_with_context(iqs_, size_t(nb * hi * nb32));
      resize_with_context(iqc_, size_t(nb * hi * nb32));
      for (int64_t k = 0; k < nb && i8; ++k)
        i8 = index_query_i8(q + (i + k) * hi * di, hi, di, &iq8_[size_t(k * hi * di)], &iqs_[size_t(k * hi * nb32)],
                            &iqc_[size_t(k * hi * nb32)]);
    }
    std::atomic<int> used{1};
    pool_.run([&](int th, int nth) {
      if (th == 0) used.store(nth, std::memory_order_relaxed);
      Scratch& sc = scratch_[size_t(th)];
      if (int64_t(sc.tops.size()) < nb) resize_with_context(sc.tops, size_t(nb));
      for (int64_t k = 0; k < nb; ++k) sc.tops[size_t(k)].reset(topk);
      resize_with_context(sc.a, size_t(kGroup * di * T));  // fp32 tiles, or the integer tiles' scales
      resize_with_context(sc.b, size_t(kRows * kGroup * T));
      if (i8) resize_with_context(sc.k8, size_t(kGroup * tile_i8));
      float* kt = sc.a.data();
      float* tile_scores = sc.b.data();
      for (int64_t g = n_groups * th / nth; g < n_groups * (th + 1) / nth; ++g) {
        const int64_t g0 = g * kGroup * T;
        const int64_t g1 = std::min(last_elig, g0 + kGroup * T);
        const int64_t n_tiles = (g1 - g0 + T - 1) / T;
        for (int64_t t = 0; t < n_tiles; ++t) {  // the last tile padded with zeros
          const int64_t n_t = std::min(T, g1 - g0 - t * T);
          if (i8) {
            const uint8_t* rows_t[T];
            for (int64_t l = 0; l < n_t; ++l) rows_t[l] = keys.fp4_row(g0 + t * T + l);
            decode_fp4_keys_i8(rows_t, n_t, di, &sc.k8[size_t(t * tile_i8)], &kt[size_t(t * nb32 * T)]);
          } else {
            keys.decode_tile(g0 + t * T, n_t, di, &kt[size_t(t * di * T)], T);
          }
        }
        // rows that see key g0 (n_eligible > g0): a suffix of the block
        int64_t k0 = 0;
        while (k0 < nb && n_eligible[i + k0] <= g0) ++k0;
        for (int64_t ka = k0; ka < nb; ka += kRows) {
          const int64_t nr = std::min(kRows, nb - ka);
          if (i8)
            index_scores_tiles_i8(sc.k8.data(), kt, n_tiles, di, hi, &iq8_[size_t(ka * hi * di)],
                                  &iqs_[size_t(ka * hi * nb32)], &iqc_[size_t(ka * hi * nb32)], w + (i + ka) * hi, hi,
                                  nr, tile_scores, kGroup * T, round_bf16);
          else
            index_scores_tiles(kt, n_tiles, di, hi, q + (i + ka) * hi * di, hi * di, w + (i + ka) * hi, hi, nr,
                               tile_scores, kGroup * T, round_bf16);
          for (int64_t r = 0; r < nr; ++r) {
            const int64_t valid = std::min<int64_t>(g1 - g0, n_eligible[i + ka + r] - g0);
            RunningTopk& top = sc.tops[size_t(ka + r)];
            const float* sr = &tile_scores[size_t(r * kGroup * T)];
            for (int64_t l = 0; l < valid; ++l) top.push(sr[l], int32_t(g0 + l));
          }
        }
      }
    });
    const int n_used = used.load(std::memory_order_relaxed);
    pool_.for_each_dynamic(nb, 1, [&](int64_t k, int th) {
      Scratch& sc = scratch_[size_t(th)];
      // at most 4 x topk candidates per thread: reserved once, then no step allocates here
      const size_t most = size_t(n_used) * size_t(std::max<int64_t>(4 * topk, 1));
      if (sc.merged.capacity() < most || sc.b.capacity() < most || sc.pos.capacity() < most) {
        AllowAllocScope once;
        sc.merged.reserve(most);
        sc.b.reserve(most);
        sc.pos.reserve(most);
      }
      sc.merged.clear();
      for (int t = 0; t < n_used; ++t) {
        const RunningTopk& top = scratch_[size_t(t)].tops[size_t(k)];
        sc.merged.insert(sc.merged.end(), top.begin(), top.end());
      }
      std::sort(sc.merged.begin(), sc.merged.end(), [](const auto& x, const auto& y) { return x.index < y.index; });
      std::vector<float>& ms = sc.b;
      ms.resize(sc.merged.size());
      for (size_t m = 0; m < sc.merged.size(); ++m) ms[m] = sc.merged[m].score;
      topk_indices(ms.data(), int64_t(sc.merged.size()), topk, sc.pos);
      std::vector<int32_t>& out = selected[i + k];
      resize_with_context(out, sc.pos.size());
      for (size_t m = 0; m < sc.pos.size(); ++m) out[m] = sc.merged[size_t(sc.pos[m])].index;
    });
    i += nb;
  }
}

}  // namespace dsv4::kernels
