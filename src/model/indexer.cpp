#include "model/indexer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/alloc_guard.h"
#include "core/dtype.h"
#include "core/error.h"
#include "kernels/index_score.h"
#include "kernels/linear.h"
#include "kernels/ops.h"
#include "model/attention.h"
#include "model/compressor.h"

namespace dsv4::model {

// Reference: Hadamard rotation then FP4 (e2m1, 1x32 blocks) simulation of an index q/k vector.
static void index_vec_quant(float* v, int n) {
  kernels::hadamard_orthonormal(v, n);
  for (int b0 = 0; b0 < n; b0 += 32) fp4_sim_block(v + b0, size_t(std::min(32, n - b0)));
}

namespace {
// The state's index keys as the backend reads them.
class IndexKeys final : public kernels::RowSource {
 public:
  explicit IndexKeys(const cache::PagedRows& rows)
      : rows_(rows),
        fp4_(rows.codec().kind == cache::RowKind::index_native && rows.codec().width % 32 == 0) {}
  int64_t rows() const override { return rows_.size(); }
  void decode_strided(int64_t j, float* dst, int64_t stride) const override {
    rows_.codec().decode_strided(rows_.raw(j), dst, stride);
  }
  // Keys stored as e2m1 + e8m0 (reference numerics) take the vector tile decoder; f32 keys the
  // row-by-row default.
  void decode_tile(int64_t j0, int64_t n, int64_t width, float* dst, int64_t ld) const override {
    if (!fp4_) {
      RowSource::decode_tile(j0, n, width, dst, ld);
      return;
    }
    const uint8_t* in[kernels::kIndexTile];
    for (int64_t l = 0; l < n; ++l) in[l] = rows_.raw(j0 + l);
    kernels::decode_fp4_keys_transposed(in, n, rows_.codec().width, dst, ld);
  }
  const uint8_t* fp4_row(int64_t j) const override { return fp4_ ? rows_.raw(j) : nullptr; }

 private:
  const cache::PagedRows& rows_;
  const bool fp4_;  // stored as e2m1 codes + e8m0 block scales
};
}  // namespace

void indexer_select(const IndexerWeights& w, int il, const RopeTable& rope, const float* xn, const float* qr,
                    BatchLayout& b, std::vector<std::vector<int32_t>>& selected) {
  const Config& c = *b.config;
  kernels::Backend& be = *b.backend;
  PassScratch& ws = *b.scratch;
  const bool ref = b.ref();
  const int64_t N = b.n_rows(), D = c.dim, Q = c.q_lora_rank, Hi = c.index_n_heads, Di = c.index_head_dim;
  const int64_t topk = c.index_topk;

  // Index keys: the indexer's own ratio-4 compressor, then bf16, RMSNorm, RoPE at w*4.
  std::vector<float>& ca = ws.ica;
  std::vector<float>& cg = ws.icg;
  compressor_project(w.compressor, xn, b, ca, cg);
  const int64_t cols = 2 * Di;
  std::vector<float>& key = ws.key;
  key.resize(size_t(Di));
  for (const BatchItem& it : b.items) {
    cache::LayerState& S = it.state->layer(il);
    for (int64_t i = 0; i < it.n; ++i) {
      const int64_t r = it.row0 + i, pos = it.start + i;
      if (!compressor_push(be, S.index_compressor, &ca[size_t(r * cols)], &cg[size_t(r * cols)], pos, key.data()))
        continue;
      round_if(ref, key.data(), Di);
      be.rms_norm(key.data(), 1, Di, Di, &w.compressor.norm, c.norm_eps, ref);
      const int64_t key_pos = (pos / 4) * 4;
      be.rope(key.data(), 1, 1, Di, Di, &key_pos, rope.freqs(), /*inverse=*/false, ref);
      if (ref) index_vec_quant(key.data(), int(Di));
      AllowAllocScope state_grows;  // a new page now and then
      S.index_keys.append(key.data());
    }
  }

  if (int64_t(selected.size()) < N) resize_with_context(selected, size_t(N));
  for (int64_t r = 0; r < N; ++r) selected[size_t(r)].clear();  // (keeping their capacity)
  // Rows that need scoring: more eligible entries than top-k.
  std::vector<int64_t>& need = ws.need;
  std::vector<int64_t>& n_elig = ws.n_elig;
  resize_with_context(need, size_t(N));  // capacity for every row (a decode step may be the first to need any)
  need.clear();
  resize_with_context(n_elig, size_t(N));
  for (int64_t r = 0; r < N; ++r) {
    n_elig[size_t(r)] = (b.rows[size_t(r)].pos + 1) / 4;
    if (n_elig[size_t(r)] > topk) {
      need.push_back(r);
    } else {
      resize_with_context(selected[size_t(r)], size_t(n_elig[size_t(r)]));
      std::iota(selected[size_t(r)].begin(), selected[size_t(r)].end(), 0);
    }
  }
  if (need.empty()) return;

  // Index queries and head weights for all rows (cheap next to the scoring).
  std::vector<float>& qi = ws.qi;  // [N, Hi, Di]
  resize_with_context(qi, size_t(N * Hi * Di));
  be.matmul(w.wq_b, qr, N, Q, qi.data(), Hi * Di, gemm_opts(w.wq_b, ref));
  std::vector<float>& wi = ws.wi;  // [N, Hi]
  resize_with_context(wi, size_t(N * Hi));
  kernels::MatmulOpts wo;
  wo.out_bf16 = ref;
  be.matmul(w.weights_proj, xn, N, D, wi.data(), Hi, wo);
  const float wscale = 1.f / std::sqrt(float(Hi * Di));

  // Index queries: RoPE, then (reference) bf16, Hadamard and FP4 simulation; head weights scaled.
  be.rope(qi.data(), N, Hi, Di, Hi * Di, b.positions.data(), rope.freqs(), /*inverse=*/false, ref);
  for (int64_t r : need) {
    if (ref)
      for (int64_t h = 0; h < Hi; ++h) index_vec_quant(&qi[size_t((r * Hi + h) * Di)], int(Di));
    for (int64_t h = 0; h < Hi; ++h) wi[size_t(r * Hi + h)] *= wscale;
  }

  // Scoring, per sequence: the rows that need it are a suffix of the item's rows, with ascending
  // eligible counts.
  for (const BatchItem& it : b.items) {
    int64_t i0 = 0;  // first row of the item with more eligible entries than top-k
    while (i0 < it.n && n_elig[size_t(it.row0 + i0)] <= topk) ++i0;
    if (i0 == it.n) continue;
    const int64_t r0 = it.row0 + i0;
    const IndexKeys keys(it.state->layer(il).index_keys);
    be.index_topk(keys, &qi[size_t(r0 * Hi * Di)], &wi[size_t(r0 * Hi)], it.n - i0, Hi, Di, &n_elig[size_t(r0)], topk,
                  ref, &selected[size_t(r0)]);
  }
}

}  // namespace dsv4::model
