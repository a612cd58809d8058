#include "model/indexer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/index_score.h"
#include "kernels/linear.h"
#include "kernels/ops.h"
#include "model/attention.h"
#include "model/compressor.h"

namespace dsv4::model {

// The top k under (score desc, index asc), in ascending index order. The indexer calls it only
// on the few candidates its RunningTopks keep (at most 4k per thread), never on all L/4 scores.
void topk_indices(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out) {
  out.resize(size_t(n));
  std::iota(out.begin(), out.end(), 0);
  if (k < n) {
    const int64_t kk = std::max<int64_t>(k, 0);
    std::nth_element(out.begin(), out.begin() + kk, out.end(), [&](int32_t a, int32_t b) {
      return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
    });
    out.resize(size_t(kk));
  }
  std::sort(out.begin(), out.end());
}

// Reference: Hadamard rotation then FP4 (e2m1, 1x32 blocks) simulation of an index q/k vector.
static void index_vec_quant(float* v, int n) {
  kernels::hadamard_orthonormal(v, n);
  for (int b0 = 0; b0 < n; b0 += 32) fp4_sim_block(v + b0, size_t(std::min(32, n - b0)));
}

void indexer_select(const IndexerWeights& w, int il, const RopeTable& rope, const float* xn, const float* qr,
                    BatchLayout& b, std::vector<std::vector<int32_t>>& selected) {
  const Config& c = *b.config;
  const bool ref = b.ref();
  const int64_t N = b.n_rows(), D = c.dim, Q = c.q_lora_rank, Hi = c.index_n_heads, Di = c.index_head_dim;
  const int64_t topk = c.index_topk;

  // Index keys: the indexer's own ratio-4 compressor, then bf16, RMSNorm, RoPE at w*4.
  std::vector<float> ca, cg;
  compressor_project(w.compressor, xn, b, ca, cg);
  const int64_t cols = 2 * Di;
  std::vector<float> key(static_cast<size_t>(Di));
  for (const BatchItem& it : b.items) {
    cache::LayerState& S = it.state->layer(il);
    for (int64_t i = 0; i < it.n; ++i) {
      const int64_t r = it.row0 + i, pos = it.start + i;
      if (!compressor_push(S.index_compressor, &ca[size_t(r * cols)], &cg[size_t(r * cols)], pos, key.data()))
        continue;
      round_if(ref, key.data(), Di);
      kernels::rms_norm(key.data(), &w.compressor.norm, c.norm_eps, Di, key.data());
      round_if(ref, key.data(), Di);
      rope.apply(key.data(), int(Di), (pos / 4) * 4);
      round_if(ref, key.data(), Di);
      if (ref) index_vec_quant(key.data(), int(Di));
      S.index_keys.append(key.data());
    }
  }

  selected.assign(size_t(N), {});
  // Rows that need scoring: more eligible entries than top-k.
  std::vector<int64_t> need;
  for (int64_t r = 0; r < N; ++r) {
    const int64_t n_elig = (b.rows[size_t(r)].pos + 1) / 4;
    if (n_elig > topk) {
      need.push_back(r);
    } else {
      selected[size_t(r)].resize(size_t(n_elig));
      std::iota(selected[size_t(r)].begin(), selected[size_t(r)].end(), 0);
    }
  }
  if (need.empty()) return;

  // Index queries and head weights for all rows (cheap next to the scoring).
  std::vector<float> qi(static_cast<size_t>(N * Hi * Di));  // [N, Hi, Di]
  kernels::matmul(w.wq_b, qr, N, Q, qi.data(), Hi * Di, gemm_opts(w.wq_b, ref));
  std::vector<float> wi(static_cast<size_t>(N * Hi));       // [N, Hi]
  kernels::MatmulOpts wo;
  wo.out_bf16 = ref;
  kernels::matmul(w.weights_proj, xn, N, D, wi.data(), Hi, wo);
  const float wscale = 1.f / std::sqrt(float(Hi * Di));

  // Index queries: RoPE, then (reference) bf16, Hadamard and FP4 simulation; head weights scaled.
#pragma omp parallel for schedule(static)
  for (size_t ni = 0; ni < need.size(); ++ni) {
    const int64_t r = need[ni];
    float* qrow = &qi[size_t(r * Hi * Di)];
    for (int64_t h = 0; h < Hi; ++h) {
      float* qh = qrow + h * Di;
      rope.apply(qh, int(Di), b.rows[size_t(r)].pos);
      round_if(ref, qh, Di);
      if (ref) index_vec_quant(qh, int(Di));
      wi[size_t(r * Hi + h)] *= wscale;
    }
  }

  // Scoring, per sequence: the rows that need it are a suffix of the item's rows, with ascending
  // eligible counts. The keys go in groups of kGroup tiles of kIndexTile entries, split over the
  // threads in contiguous ranges; each group is decoded once (FP4 -> fp32, transposed tiles, in
  // L2) and scored against the rows that can see it, kRows rows at a time (their queries stay in
  // cache across the group's tiles). Each (thread, row) keeps a RunningTopk, so no buffer grows
  // with the context; the candidates of all threads are merged per row at the end.
  constexpr int64_t T = kernels::kIndexTile, kGroup = 16, kRows = 8;
  const int n_threads = omp_get_max_threads();
  // Per thread and row of a block; rows in a block are capped so this stays under ~8 MiB/thread.
  thread_local std::vector<std::vector<RunningTopk>> running;  // [thread][row]; reused between calls
  const int64_t max_rows = std::max<int64_t>(1, (int64_t(1) << 20) / (4 * topk));
  if (int(running.size()) < n_threads) running.resize(size_t(n_threads));
  auto* const run = running.data();
  for (const BatchItem& it : b.items) {
    const cache::PagedRows& keys = it.state->layer(il).index_keys;
    int64_t i0 = 0;  // first row of the item with more eligible entries than top-k
    while (i0 < it.n && (it.start + i0 + 1) / 4 <= topk) ++i0;
    for (int64_t i = i0; i < it.n;) {
      const int64_t nb = std::min(it.n - i, max_rows), r0 = it.row0 + i;
      const int64_t last_elig = (it.start + i + nb) / 4;  // keys seen by the block's last row
      DSV4_CHECK(keys.size() >= last_elig, "indexer: index keys missing for the rows");
      const int64_t n_groups = (last_elig + kGroup * T - 1) / (kGroup * T);
#pragma omp parallel num_threads(n_threads)
      {
        std::vector<RunningTopk>& mine = run[omp_get_thread_num()];
        if (int64_t(mine.size()) < nb) mine.resize(size_t(nb));
        for (int64_t k = 0; k < nb; ++k) mine[size_t(k)].reset(topk);
        thread_local std::vector<float> kt, tile_scores;
        kt.resize(size_t(kGroup * Di * T));
        tile_scores.resize(size_t(kRows * T));
#pragma omp for schedule(static)
        for (int64_t g = 0; g < n_groups; ++g) {
          const int64_t g0 = g * kGroup * T;
          const int64_t g1 = std::min(last_elig, g0 + kGroup * T);
          const int64_t n_tiles = (g1 - g0 + T - 1) / T;
          for (int64_t j = g0; j < g1; ++j) {
            const int64_t t = (j - g0) / T, l = (j - g0) % T;
            keys.codec().decode_strided(keys.raw(j), &kt[size_t((t * Di) * T + l)], T);
          }
          for (int64_t j = g1; j < g0 + n_tiles * T; ++j) {  // pad the last tile with zeros
            const int64_t t = (j - g0) / T, l = (j - g0) % T;
            for (int64_t d = 0; d < Di; ++d) kt[size_t((t * Di + d) * T + l)] = 0.f;
          }
          // rows that see key g0: (pos + 1) / 4 > g0, a suffix of the block
          int64_t k0 = 0;
          while (k0 < nb && (it.start + i + k0 + 1) / 4 <= g0) ++k0;
          for (int64_t ka = k0; ka < nb; ka += kRows) {
            const int64_t nr = std::min(kRows, nb - ka);
            for (int64_t t = 0; t < n_tiles; ++t) {
              const int64_t j0 = g0 + t * T;
              kernels::index_scores_tile(&kt[size_t(t * Di * T)], Di, Hi, &qi[size_t((r0 + ka) * Hi * Di)], Hi * Di,
                                         &wi[size_t((r0 + ka) * Hi)], Hi, nr, tile_scores.data(), T, ref);
              for (int64_t q = 0; q < nr; ++q) {
                const int64_t valid = std::min<int64_t>(T, (it.start + i + ka + q + 1) / 4 - j0);
                RunningTopk& top = mine[size_t(ka + q)];
                for (int64_t l = 0; l < valid; ++l) top.push(tile_scores[size_t(q * T + l)], int32_t(j0 + l));
              }
            }
          }
        }
        // implicit barrier: every thread's candidates are complete
#pragma omp for schedule(dynamic, 1)
        for (int64_t k = 0; k < nb; ++k) {
          thread_local std::vector<RunningTopk::Entry> merged;
          thread_local std::vector<float> merged_scores;
          thread_local std::vector<int32_t> pos;
          merged.clear();
          for (int t = 0; t < n_threads; ++t) {
            const RunningTopk& top = run[t][size_t(k)];
            merged.insert(merged.end(), top.begin(), top.end());
          }
          std::sort(merged.begin(), merged.end(), [](const auto& x, const auto& y) { return x.index < y.index; });
          merged_scores.resize(merged.size());
          for (size_t m = 0; m < merged.size(); ++m) merged_scores[m] = merged[m].score;
          topk_indices(merged_scores.data(), int64_t(merged.size()), topk, pos);
          std::vector<int32_t>& out = selected[size_t(r0 + k)];
          out.resize(pos.size());
          for (size_t m = 0; m < pos.size(); ++m) out[m] = merged[size_t(pos[m])].index;
        }
      }
      i += nb;
    }
  }
}

void RunningTopk::reset(int64_t k) {
  k_ = k;
  n_ = 0;
  threshold_ = -std::numeric_limits<float>::infinity();
  entries_.resize(size_t(std::max<int64_t>(4 * k, 1)));
}

void RunningTopk::prune() {
  if (k_ <= 0) {  // nothing can be selected
    n_ = 0;
    threshold_ = std::numeric_limits<float>::infinity();
    return;
  }
  if (n_ <= k_) return;
  std::nth_element(entries_.begin(), entries_.begin() + (k_ - 1), entries_.begin() + n_,
                   [](const Entry& x, const Entry& y) { return x.score > y.score || (x.score == y.score && x.index < y.index); });
  threshold_ = entries_[size_t(k_ - 1)].score;
  n_ = k_;
}

}  // namespace dsv4::model
