#include "model/indexer.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "kernels/linear.h"
#include "kernels/ops.h"
#include "model/attention.h"
#include "model/compressor.h"

namespace dsv4::model {

// The top k under (score desc, index asc) are every score above the k-th largest value plus its
// ties, lowest index first. Selecting that value over a copy of the scores, then one ascending
// pass, avoids selecting indices through an indirect comparator and the final sort: at 1M tokens
// of context this runs over 262K entries per query and was a third of the indexer's time.
void topk_indices(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out) {
  out.clear();
  if (k >= n) {
    out.resize(size_t(n));
    std::iota(out.begin(), out.end(), 0);
    return;
  }
  if (k <= 0) return;
  thread_local std::vector<float> vals;  // reused: no allocation per query once grown
  vals.assign(scores, scores + n);
  std::nth_element(vals.begin(), vals.begin() + (k - 1), vals.end(), std::greater<float>());
  const float kth = vals[size_t(k - 1)];
  int64_t ties = 1;  // vals[k-1] itself; vals[0..k-1) are >= kth
  for (int64_t j = 0; j < k - 1; ++j) ties += vals[size_t(j)] == kth;
  out.reserve(size_t(k));
  for (int64_t j = 0; j < n; ++j) {
    const float s = scores[j];
    if (s > kth) out.push_back(int32_t(j));
    else if (s == kth && ties > 0) out.push_back(int32_t(j)), --ties;
  }
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

  // Index keys decoded once per sequence (FP4 rows -> fp32), shared by all its rows.
  std::vector<std::vector<float>> keys(b.items.size());
  for (size_t ii = 0; ii < b.items.size(); ++ii) {
    const BatchItem& it = b.items[ii];
    const int64_t n_need = (it.start + it.n) / 4;
    if (n_need <= topk) continue;
    const cache::LayerState& S = it.state->layer(il);
    keys[ii].resize(size_t(n_need * Di));
#pragma omp parallel for schedule(static) if (n_need > 1024)
    for (int64_t j = 0; j < n_need; ++j) S.index_keys.decode(j, &keys[ii][size_t(j * Di)]);
  }

#pragma omp parallel
  {
    std::vector<float> scores;
#pragma omp for schedule(dynamic, 1)
    for (size_t ni = 0; ni < need.size(); ++ni) {
      const int64_t r = need[ni];
      const BatchRow& row = b.rows[size_t(r)];
      const float* kall = keys[size_t(row.item)].data();
      float* qrow = &qi[size_t(r * Hi * Di)];
      for (int64_t h = 0; h < Hi; ++h) {
        float* qh = qrow + h * Di;
        rope.apply(qh, int(Di), row.pos);
        round_if(ref, qh, Di);
        if (ref) index_vec_quant(qh, int(Di));
      }
      const int64_t n_elig = (row.pos + 1) / 4;
      scores.resize(size_t(n_elig));
      const float* wr = &wi[size_t(r * Hi)];
      for (int64_t j = 0; j < n_elig; ++j) {
        const float* kj = kall + j * Di;
        float s = 0;
        for (int64_t h = 0; h < Hi; ++h) {
          float d = kernels::dot_f32(qrow + h * Di, kj, Di);
          s += wr[h] * wscale * std::max(d, 0.f);  // ReLU per head, then weighted sum
        }
        scores[size_t(j)] = ref ? round_bf16(s) : s;
      }
      topk_indices(scores.data(), n_elig, topk, selected[size_t(r)]);
    }
  }
}

}  // namespace dsv4::model
