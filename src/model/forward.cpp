// V4-ARCH §2: the layer loop. Embedding -> hc streams -> N blocks (mHC + attention, mHC + MoE)
// -> hc_head -> final norm -> fp32 LM head. All ops live in their own files; this is only the loop.
#include "model/forward.h"

#include <malloc.h>

#include <algorithm>
#include <optional>

#include "core/alloc_guard.h"
#include "core/error.h"
#include "kernels/linear.h"
#include "kernels/ops.h"
#include "model/attention.h"
#include "model/batch.h"
#include "model/expert_parallel.h"
#include "model/expert_store.h"
#include "model/mhc.h"
#include "model/moe.h"
#include "model/rope.h"

namespace dsv4::model {

const char* numerics_name(Numerics n) { return n == Numerics::reference ? "reference" : "f32"; }
bool numerics_from_string(const std::string& s, Numerics* out) {
  if (s == "reference") *out = Numerics::reference;
  else if (s == "f32") *out = Numerics::f32;
  else return false;
  return true;
}

ForwardPass::ForwardPass(const Model& model, Numerics numerics, kernels::Backend* backend)
    : model_(model),
      numerics_(numerics),
      backend_(backend ? backend : &kernels::default_backend()),
      rope_swa_(model.config(), false),
      rope_comp_(model.config(), true),
      scratch_(std::make_unique<PassScratch>()) {
  // Expert parallelism: the other ranks load this checkpoint and their share of the experts
  // (nothing to do in one process).
  expert_exchange().attach(model_);
#ifdef M_MMAP_THRESHOLD
  // Transient per-step buffers that scale with context (decoded index keys, attention key rows)
  // must go back to the OS when freed, or glibc's adaptive threshold parks them on the heap and
  // resident memory creeps up with context beyond what the sequence state holds. A fixed
  // threshold keeps every buffer above it mmap-backed.
  static const bool once = [] {
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
    return true;
  }();
  (void)once;
#endif
}

ForwardPass::~ForwardPass() = default;

cache::StateShape state_shape_for(const Config& c, Numerics n) {
  cache::StateShape s;
  s.n_layers = c.n_layers;
  s.window = c.window_size;
  s.head_dim = c.head_dim;
  s.index_head_dim = c.index_head_dim;
  s.rope_dim = c.rope_head_dim;
  s.native = n == Numerics::reference;
  s.ratios.assign(c.compress_ratios.begin(), c.compress_ratios.begin() + c.n_layers);
  return s;
}

cache::StateShape ForwardPass::state_shape() const { return state_shape_for(model_.config(), numerics_); }

std::unique_ptr<cache::SeqState> ForwardPass::new_state() const {
  return std::make_unique<cache::SeqState>(state_shape());
}

void ForwardPass::forward(std::span<SeqChunk> batch, std::vector<float>& logits) {
  const Config& c = model_.config();
  const ModelWeights& Wt = model_.weights();
  const bool ref = numerics_ == Numerics::reference;
  const int64_t D = c.dim, hc = c.hc_mult, V = c.vocab_size;
  bool decode_step = !debug_layer_streams && !debug_experts && !debug_csa_selected;
  for (const SeqChunk& ch : batch) {
    DSV4_CHECK(ch.state != nullptr, "forward: chunk without a state");
    for (int32_t tok : ch.tokens)
      if (tok < 0 || tok >= V) throw Error("token id " + std::to_string(tok) + " outside the vocabulary [0, " +
                                           std::to_string(V) + ")");
    decode_step = decode_step && ch.tokens.size() <= 1;
  }
  // A decode step of warm sequences allocates nothing (core/alloc_guard.h; off unless enabled).
  std::optional<NoAllocScope> no_alloc;
  if (decode_step) no_alloc.emplace();

  kernels::Backend& be = *backend_;
  PassScratch& ws = *scratch_;
  BatchLayout& b = ws.layout;
  b.config = &c;
  b.backend = &be;
  b.scratch = &ws;
  b.experts = &model_.expert_store();
  b.numerics = numerics_;
  b.decode = true;
  for (const SeqChunk& ch : batch) b.decode = b.decode && ch.tokens.size() <= 1;
  b.rows.clear();
  b.items.clear();
  b.positions.clear();
  for (size_t i = 0; i < batch.size(); ++i) {
    const SeqChunk& ch = batch[i];
    BatchItem it{ch.state, b.n_rows(), int64_t(ch.tokens.size()), ch.state->n_past()};
    for (int64_t j = 0; j < it.n; ++j) {
      b.rows.push_back(BatchRow{int(i), it.start + j, ch.tokens[size_t(j)]});
      b.positions.push_back(it.start + j);
    }
    b.items.push_back(it);
  }
  const int64_t N = b.n_rows();

  // Embedding, copied into hc streams (§2.1). X: [N, hc, D]
  std::vector<float>& X = ws.X;
  X.resize(size_t(N * hc * D));
  const uint16_t* emb = Wt.embed.as<uint16_t>();
  for (int64_t r = 0; r < N; ++r)
    for (int64_t k = 0; k < hc; ++k)
      for (int64_t d = 0; d < D; ++d) X[size_t((r * hc + k) * D + d)] = bf16_to_f32(emb[b.rows[size_t(r)].token * D + d]);

  std::vector<float>& xn = ws.xn;
  std::vector<float>& y = ws.y;
  xn.resize(size_t(N * D));
  y.resize(size_t(N * D));
  ws.mix.resize(size_t(N));
  kernels::HcMix* mix = ws.mix.data();
  if (debug_layer_streams) debug_layer_streams->clear();
  if (debug_experts) debug_experts->clear();
  if (debug_csa_selected) debug_csa_selected->clear();

  for (const LayerWeights& L : Wt.layers) {
    // Attention sub-layer (§2.2 block).
    be.mhc_pre(X.data(), N, hc_site(L.hc_attn, c), ref, xn.data(), mix);
    be.rms_norm(xn.data(), N, D, D, &L.attn_norm, c.norm_eps, ref);
    AttentionDebug adbg;
    attention_forward(L, L.kind != AttnKind::swa ? rope_comp_ : rope_swa_, xn.data(), b, y.data(),
                      debug_csa_selected ? &adbg : nullptr);
    if (debug_csa_selected && L.kind == AttnKind::csa) {
      std::vector<int32_t> flat;
      for (auto& sel : adbg.csa_selected) {
        std::vector<int32_t> row(static_cast<size_t>(c.index_topk), -1);
        std::copy_n(sel.begin(), std::min<size_t>(sel.size(), row.size()), row.begin());
        flat.insert(flat.end(), row.begin(), row.end());
      }
      debug_csa_selected->push_back(std::move(flat));
    }
    be.mhc_post(X.data(), y.data(), N, mix, int(hc), D, ref);
    // FFN sub-layer input.
    be.mhc_pre(X.data(), N, hc_site(L.hc_ffn, c), ref, xn.data(), mix);
    be.rms_norm(xn.data(), N, D, D, &L.ffn_norm, c.norm_eps, ref);
    b.layer = L.index;
    moe_forward(L.ffn, L.hash, xn.data(), b, y.data());  // routing in ws.routing
    b.layer = -1;
    if (debug_experts) debug_experts->push_back(ws.routing.experts);
    be.mhc_post(X.data(), y.data(), N, mix, int(hc), D, ref);
    if (debug_layer_streams) debug_layer_streams->push_back(X);
  }

  // Output head (§2.5) for the rows that want logits.
  std::vector<int64_t>& out_rows = ws.out_rows;
  out_rows.clear();
  for (size_t i = 0; i < batch.size(); ++i) {
    const BatchItem& it = b.items[i];
    if (it.n == 0) continue;
    if (batch[i].all_logits)
      for (int64_t j = 0; j < it.n; ++j) out_rows.push_back(it.row0 + j);
    else
      out_rows.push_back(it.row0 + it.n - 1);
  }
  const int64_t M = int64_t(out_rows.size());
  ws.xh.resize(size_t(M * hc * D));
  ws.hn.resize(size_t(M * D));
  for (int64_t i = 0; i < M; ++i)
    std::copy_n(&X[size_t(out_rows[size_t(i)] * hc * D)], hc * D, &ws.xh[size_t(i * hc * D)]);
  be.mhc_head(ws.xh.data(), M, hc_site(Wt.hc_head, c), ref, ws.hn.data());
  be.rms_norm(ws.hn.data(), M, D, D, &Wt.norm, c.norm_eps, ref);
  logits.resize(size_t(M * V));
  be.matmul(Wt.head, ws.hn.data(), M, D, logits.data(), V);  // fp32 LM head

  if (!decode_step) ws.release_context_buffers();
  AllowAllocScope state_grows;  // the tokens join the state (it grows by whole pages)
  for (size_t i = 0; i < batch.size(); ++i) {
    auto& toks = batch[i].state->tokens();
    toks.insert(toks.end(), batch[i].tokens.begin(), batch[i].tokens.end());
  }
}

void truncate_state(ForwardPass& fp, cache::SeqState& state, int64_t n) {
  DSV4_CHECK(n >= 0 && n <= state.n_past(), "truncate_state: length out of range");
  if (n == state.n_past()) return;
  // Exact by construction: restore the newest snapshot at or before n (window rings and
  // compressor states; compressed rows are truncated), then replay the remaining tokens.
  std::vector<int32_t> keep(state.tokens().begin(), state.tokens().begin() + n);
  const int64_t at = state.restore_snapshot_at_or_before(n);
  if (at == n) return;
  SeqChunk ch{&state, std::span<const int32_t>(keep.data() + at, size_t(n - at)), false};
  std::vector<float> scratch;
  fp.forward(std::span<SeqChunk>(&ch, 1), scratch);
}

}  // namespace dsv4::model
