#include "model/indexer.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <utility>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/index_score.h"
#include "kernels/linear.h"
#include "kernels/ops.h"
#include "model/attention.h"
#include "model/compressor.h"

namespace dsv4::model {

// The top k under (score desc, index asc) are every score above the k-th largest value plus its
// ties, lowest index first. The k-th largest value is found by a radix select on the scores'
// order-preserving integer keys, 11 + 11 + 10 bits: a histogram of the top bits finds the bucket
// that holds it, only that bucket's keys go on to the next digit, and one ascending pass collects
// the result. No comparator sort or nth_element: at 1M tokens of context this runs over 262K
// entries per query, and bf16-rounded or ReLU-zeroed scores tie in large groups.
namespace {
inline uint32_t order_key(float f) {  // a < b  <=>  order_key(a) < order_key(b); -0 == +0
  uint32_t u = f32_bits(f);
  if (u == 0x80000000u) u = 0;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Walks buckets from the top; returns the bucket holding the need-th largest key and lowers
// `need` by the count of keys in the buckets above it.
uint32_t pick_bucket(const std::vector<uint32_t>& hist, int64_t& need) {
  uint32_t bucket = uint32_t(hist.size() - 1);
  while (int64_t(hist[bucket]) < need) need -= hist[bucket--];
  return bucket;
}
}  // namespace

// Fast path for k much smaller than n: a threshold t just below the k-th value, estimated from a
// strided sample, leaves few scores above it, so one pass collects those (and the first k equal
// to t) and only they are ordered. Returns false when the estimate missed (then the exact radix
// select runs); the result never depends on the sample.
static bool topk_by_sampled_threshold(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out) {
  constexpr int64_t m = 1024;
  thread_local std::vector<float> sample;
  thread_local std::vector<int32_t> gt, eq;
  sample.resize(size_t(m));
  for (int64_t i = 0; i < m; ++i) sample[size_t(i)] = scores[i * n / m];
  const int64_t rank = std::min(m - 1, 2 * k * m / n + 8);  // about 2k of n expected above t
  std::nth_element(sample.begin(), sample.begin() + rank, sample.end(), std::greater<float>());
  const float t = sample[size_t(rank)];
  if (std::isnan(t)) return false;
  const int64_t max_gt = 8 * k + 4096;
  gt.resize(size_t(max_gt + 16));
  eq.resize(size_t(k + 1));
  int32_t* g = gt.data();
  int32_t* e = eq.data();
  int64_t n_gt = 0, n_eq = 0;
  for (int64_t j0 = 0; j0 < n; j0 += 16) {
    const int64_t j1 = std::min(n, j0 + 16);
    int hits = 0;  // vectorised test of a block; blocks without a candidate are the common case
    for (int64_t j = j0; j < j1; ++j) hits += scores[j] >= t;
    if (hits == 0) continue;
    // branch-free: ties with t can be half the block (ReLU zeros), so no data-dependent jumps
    for (int64_t j = j0; j < j1; ++j) {
      const float v = scores[j];
      g[n_gt] = int32_t(j);
      n_gt += v > t;
      e[std::min(n_eq, k)] = int32_t(j);
      n_eq += v == t;
    }
    if (n_gt > max_gt) return false;
  }
  gt.resize(size_t(n_gt));
  eq.resize(size_t(std::min(n_eq, k)));
  if (n_gt >= k) {  // the k-th value is above t: order the few above it
    std::nth_element(gt.begin(), gt.begin() + (k - 1), gt.end(), [&](int32_t a, int32_t b) {
      return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
    });
    gt.resize(size_t(k));
    std::sort(gt.begin(), gt.end());
    out.assign(gt.begin(), gt.end());
    return true;
  }
  if (n_gt + n_eq < k) return false;  // t was above the k-th value
  // the k-th value is t: everything above it plus the lowest-index ties
  out.resize(size_t(k));
  std::merge(gt.begin(), gt.end(), eq.begin(), eq.begin() + (k - n_gt), out.begin());
  return true;
}

void topk_indices(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out) {
  out.clear();
  if (k >= n) {
    out.resize(size_t(n));
    std::iota(out.begin(), out.end(), 0);
    return;
  }
  if (k <= 0) return;
  if (n >= 4096 && k <= n / 16 && topk_by_sampled_threshold(scores, n, k, out)) return;
  thread_local std::vector<uint32_t> hist, cand;  // reused: no allocation per query once grown
  int64_t need = k;  // rank of the k-th value among the keys still in play
  // digit 1: bits 31..21 over all scores
  hist.assign(2048, 0);
  for (int64_t j = 0; j < n; ++j) ++hist[order_key(scores[j]) >> 21];
  const uint32_t b1 = pick_bucket(hist, need);
  cand.clear();
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t key = order_key(scores[j]);
    if ((key >> 21) == b1) cand.push_back(key);
  }
  // digits 2 and 3: bits 20..10, then 9..0, over the surviving keys
  for (const auto& [shift, mask] : {std::pair<int, uint32_t>{10, 0x7ffu}, std::pair<int, uint32_t>{0, 0x3ffu}}) {
    hist.assign(size_t(mask) + 1, 0);
    for (uint32_t key : cand) ++hist[(key >> shift) & mask];
    const uint32_t bd = pick_bucket(hist, need);
    size_t m = 0;
    for (uint32_t key : cand)
      if (((key >> shift) & mask) == bd) cand[m++] = key;
    cand.resize(m);
  }
  // cand now holds only copies of the k-th key; `need` of them (lowest indices first) are taken.
  const uint32_t kth = cand.front();
  int64_t ties = need;
  out.reserve(size_t(k));
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t key = order_key(scores[j]);
    if (key > kth) out.push_back(int32_t(j));
    else if (key == kth && ties > 0) out.push_back(int32_t(j)), --ties;
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
