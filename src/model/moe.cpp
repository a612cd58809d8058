#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/linear.h"
#include "kernels/ops.h"
#include "model/attention.h"
#include "model/expert_parallel.h"
#include "model/expert_store.h"

namespace dsv4::model {

// A hash-routed layer's k-th expert for token `tok` (its tid2eid table, i64 or i32 as stored).
static int32_t hash_expert(const MoeWeights& w, int64_t tok, int64_t k, int64_t K) {
  const TensorView& t = w.tid2eid;
  return int32_t(t.dtype == Dtype::i64 ? t.as<int64_t>()[tok * K + k] : t.as<int32_t>()[tok * K + k]);
}

void moe_route(const MoeWeights& w, bool hash, const float* xn, const BatchLayout& b, MoeRouting& out) {
  const Config& c = *b.config;
  PassScratch& ws = *b.scratch;
  const int64_t N = b.n_rows(), D = c.dim, E = c.n_routed_experts, K = c.n_activated_experts;
  std::vector<float>& logits = ws.router_logits;
  logits.resize(size_t(N * E));
  b.backend->matmul(w.gate, xn, N, D, logits.data(), E);  // fp32 router
  out.experts.assign(size_t(N * K), 0);
  out.weights.assign(size_t(N * K), 0.f);
  std::vector<float>& s = ws.s;
  std::vector<float>& biased = ws.biased;
  std::vector<int32_t>& order = ws.order;
  s.resize(size_t(E));
  biased.resize(size_t(E));
  order.resize(size_t(E));
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t e = 0; e < E; ++e) s[size_t(e)] = std::sqrt(kernels::softplus(logits[size_t(r * E + e)]));
    int32_t* idx = &out.experts[size_t(r * K)];
    if (hash) {
      const int64_t tok = b.rows[size_t(r)].token;
      for (int64_t k = 0; k < K; ++k) idx[k] = hash_expert(w, tok, k, K);
    } else {
      const float* bias = w.gate_bias.as<float>();
      for (int64_t e = 0; e < E; ++e) biased[size_t(e)] = s[size_t(e)] + bias[e];
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int32_t a, int32_t bb) {
        return biased[size_t(a)] > biased[size_t(bb)] || (biased[size_t(a)] == biased[size_t(bb)] && a < bb);
      });
      std::copy(order.begin(), order.begin() + K, idx);
    }
    float sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += s[size_t(idx[k])];
    for (int64_t k = 0; k < K; ++k) out.weights[size_t(r * K + k)] = s[size_t(idx[k])] / sum * c.route_scale;
  }
}

// One expert over a gathered set of rows: out = w2 . (silu(min(w1 x, L)) * clamp(w3 x, -L, L) * weight).
static void expert_forward(kernels::Backend& be, PassScratch& ws, const ExpertWeights& ew, const float* x, int64_t n,
                           const float* row_weight, const Config& c, bool ref, float* out) {
  const int64_t D = c.dim, I = c.moe_inter_dim;
  std::vector<float>& g = ws.g;
  std::vector<float>& u = ws.u;
  g.resize(size_t(n * I));
  u.resize(size_t(n * I));
  be.matmul(ew.w1, x, n, D, g.data(), I, gemm_opts(ew.w1, ref));
  be.matmul(ew.w3, x, n, D, u.data(), I, gemm_opts(ew.w3, ref));
  be.swiglu(g.data(), u.data(), n, I, c.swiglu_limit, row_weight, ref);
  be.matmul(ew.w2, g.data(), n, I, out, D, gemm_opts(ew.w2, ref));
}

// Prefetch for the layer after `layer` (issue 14): a hash layer's experts follow from the token ids;
// a score-routed layer's router runs on this layer's FFN input as a guess (a wrong one costs only
// bandwidth: the real routing is computed at that layer as always).
// Under expert parallelism only this rank's experts are prefetched.
static void prefetch_next(ExpertStore& st, int layer, const float* xn, const BatchLayout& b,
                          const ExpertPlacement& placement, int rank) {
  const ModelWeights& W = st.model().weights();
  if (layer + 1 >= int(W.layers.size())) return;
  const LayerWeights& next = W.layers[size_t(layer + 1)];
  PassScratch& ws = *b.scratch;
  const Config& c = *b.config;
  const int64_t N = b.n_rows(), K = c.n_activated_experts;
  std::vector<int32_t>& ex = ws.guess.experts;
  if (next.hash) {
    ex.resize(size_t(N * K));
    for (int64_t r = 0; r < N; ++r)
      for (int64_t k = 0; k < K; ++k) ex[size_t(r * K + k)] = hash_expert(next.ffn, b.rows[size_t(r)].token, k, K);
  } else {
    moe_route(next.ffn, false, xn, b, ws.guess);
  }
  std::vector<int32_t>& set = ws.guess_set;
  set.assign(ex.begin(), ex.end());
  std::sort(set.begin(), set.end());
  set.erase(std::unique(set.begin(), set.end()), set.end());
  set.erase(std::remove_if(set.begin(), set.end(), [&](int32_t e) { return placement.owner(layer + 1, e) != rank; }),
            set.end());
  st.prefetch(layer + 1, set.data(), int(set.size()));
}

void moe_run_experts(const MoeWeights& w, const float* xn, int64_t N, const MoeRouting& rt,
                     const ExpertPlacement& placement, int layer, int rank, const Config& c, bool ref,
                     kernels::Backend& be, PassScratch& ws, float* outs, ExpertStore* st, const BatchLayout* prefetch_b) {
  const int64_t D = c.dim, E = c.n_routed_experts, K = c.n_activated_experts;
  // Group (row, slot) pairs by expert; each expert runs once over its rows (ascending).
  auto& by_expert = ws.by_expert;  // entries r*K + k
  if (int64_t(by_expert.size()) < E) by_expert.resize(size_t(E));
  for (int64_t e = 0; e < E; ++e) by_expert[size_t(e)].clear();
  for (int64_t i = 0; i < N * K; ++i) by_expert[size_t(rt.experts[size_t(i)])].push_back(i);
  std::vector<float>& xg = ws.xg;
  std::vector<float>& wg = ws.wg;
  std::vector<float>& og = ws.og;
  // The experts this rank runs in this layer, in order (expert parallelism: its own only); the
  // store (issue 14) reads the missing ones.
  std::vector<int32_t>& needed = ws.needed;
  needed.clear();
  for (int64_t e = 0; e < E; ++e)
    if (!by_expert[size_t(e)].empty() && placement.owner(layer, int(e)) == rank) needed.push_back(int32_t(e));
  if (layer < 0) st = nullptr;
  if (st) {
    st->begin_layer(layer, N, needed.data(), int(needed.size()));
    if (st->prefetching() && prefetch_b) prefetch_next(*st, layer, xn, *prefetch_b, placement, rank);
  }
  for (const int32_t e : needed) {
    const auto& list = by_expert[size_t(e)];
    const int64_t n = int64_t(list.size());
    xg.resize(size_t(n * D));
    wg.resize(size_t(n));
    og.resize(size_t(n * D));
    for (int64_t j = 0; j < n; ++j) {
      std::copy_n(xn + (list[size_t(j)] / K) * D, D, &xg[size_t(j * D)]);
      wg[size_t(j)] = rt.weights[size_t(list[size_t(j)])];
    }
    const ExpertWeights& ew = st ? st->acquire(layer, e) : w.experts[size_t(e)];
    expert_forward(be, ws, ew, xg.data(), n, wg.data(), c, ref, og.data());
    if (st) st->release(layer, e);
    for (int64_t j = 0; j < n; ++j) std::copy_n(&og[size_t(j * D)], D, &outs[size_t(list[size_t(j)] * D)]);
  }
}

void moe_forward(const MoeWeights& w, bool hash, const float* xn, const BatchLayout& b, float* y) {
  const Config& c = *b.config;
  PassScratch& ws = *b.scratch;
  kernels::Backend& be = *b.backend;
  const bool ref = b.ref();
  const int64_t N = b.n_rows(), D = c.dim, K = c.n_activated_experts;
  MoeRouting& rt = ws.routing;
  moe_route(w, hash, xn, b, rt);

  std::vector<float>& outs = ws.outs;  // [N, K, D] per-slot outputs
  outs.resize(size_t(N * K * D));
  // Expert parallelism (model/expert_parallel.h): other ranks get the rows their experts need,
  // this rank runs its own, then their slots come back. One process: all experts are local.
  ExpertExchange& ex = expert_exchange();
  ex.post_layer(b.layer, ref, b.decode, xn, N, D, rt);
  moe_run_experts(w, xn, N, rt, ex.placement(), b.layer, ex.rank(), c, ref, be, ws, outs.data(), b.experts, &b);
  std::vector<float>& shared = ws.shared;
  if (w.has_shared) {
    shared.resize(size_t(N * D));
    expert_forward(be, ws, w.shared, xn, N, nullptr, c, ref, shared.data());
  }
  ex.collect_layer(b.layer, N, D, rt, outs.data());  // (after the shared expert: more overlap)
  // Sum in slot order, fp32, then the shared expert.
  for (int64_t r = 0; r < N; ++r) {
    float* yr = y + r * D;
    std::fill(yr, yr + D, 0.f);
    for (int64_t k = 0; k < K; ++k) kernels::axpy_f32(1.f, &outs[size_t((r * K + k) * D)], yr, D);
    if (w.has_shared) kernels::axpy_f32(1.f, &shared[size_t(r * D)], yr, D);
    round_if(ref, yr, D);
  }
}

}  // namespace dsv4::model
