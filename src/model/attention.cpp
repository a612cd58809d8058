// V4-ARCH §2.3: the attention block of one layer over a batch: q low-rank path, shared K=V
// window head, compressed entries (HCA all, CSA indexer top-k), sink softmax, inverse RoPE and
// the grouped output projection.
//
// Letters: N batch rows, D hidden, H heads, Dh head dim, Dn = Dh - R no-RoPE dims, R RoPE dims,
// Q q rank, G groups, Ro group rank, W window, m ratio, Hi/Di indexer heads/dim.
#include "model/attention.h"

#include <algorithm>
#include <cmath>

#include "core/alloc_guard.h"
#include "kernels/linear.h"
#include "kernels/ops.h"
#include "model/compressor.h"
#include "model/indexer.h"

namespace dsv4::model {

using kernels::MatmulOpts;
using kernels::WeightFormat;

MatmulOpts gemm_opts(const Linear& w, bool ref) {
  MatmulOpts o;
  o.act_fp8 = ref && (w.fmt == WeightFormat::fp8_block128 || w.fmt == WeightFormat::fp4_block32);
  o.out_bf16 = ref;
  return o;
}

void round_if(bool ref, float* x, int64_t n) {
  if (ref) kernels::round_bf16_inplace(x, n);
}

// V4-ARCH §2.7 FP8SIM_64 on the no-RoPE dims of a KV vector.
static void kv_fp8_sim(float* kv, int dn) {
  for (int b = 0; b < dn; b += 64) fp8_sim_block(kv + b, size_t(std::min(64, dn - b)));
}

// Post-processing of a pooled main-compressor entry (V4-ARCH §2.3.5): bf16, RMSNorm, RoPE at
// the window's first position, FP8 on the no-RoPE dims.
static void finish_kv_entry(kernels::Backend& be, float* e, const CompressorWeights& w, const RopeTable& rope,
                            int64_t entry, const Config& c, bool ref) {
  const int Dh = c.head_dim;
  round_if(ref, e, Dh);
  be.rms_norm(e, 1, Dh, Dh, &w.norm, c.norm_eps, ref);
  const int64_t pos = entry * w.ratio;
  be.rope(e, 1, 1, Dh, Dh, &pos, rope.freqs(), /*inverse=*/false, ref);
  if (ref) kv_fp8_sim(e, c.nope_head_dim());
}

// Which compressed entries row t sees (V4-ARCH §2.3.4), by layer kind: HCA attends to every
// entry whose 128-token window has closed (entries 0 .. (t+1)/128 - 1); CSA to the lightning
// indexer's top-k selection for the row; SWA to none.
template <class Fn>
static void for_each_visible_entry(AttnKind kind, int64_t t, const std::vector<int32_t>& csa_selected, Fn&& fn) {
  switch (kind) {
    case AttnKind::swa: break;
    case AttnKind::hca:
      for (int64_t j = 0; j < (t + 1) / 128; ++j) fn(j);
      break;
    case AttnKind::csa:
      for (int32_t j : csa_selected) fn(int64_t(j));
      break;
  }
}

void attention_forward(const LayerWeights& L, const RopeTable& rope, const float* xn, BatchLayout& b, float* y,
                       AttentionDebug* dbg) {
  const Config& c = *b.config;
  const bool ref = b.ref();
  const AttentionWeights& A = L.attn;
  const int64_t N = b.n_rows(), D = c.dim, H = c.n_heads, Dh = c.head_dim, Q = c.q_lora_rank;
  const int Dn = c.nope_head_dim(), W = c.window_size;

  kernels::Backend& be = *b.backend;
  PassScratch& ws = *b.scratch;
  const int64_t* pos = b.positions.data();

  // ---- q path (§2.3.2) ------------------------------------------------------------------
  std::vector<float>& qr = ws.qr;  // [N, Q]
  qr.resize(size_t(N * Q));
  be.matmul(A.wq_a, xn, N, D, qr.data(), Q, gemm_opts(A.wq_a, ref));
  be.rms_norm(qr.data(), N, Q, Q, &A.q_norm, c.norm_eps, ref);
  CacheAlignedVector<float>& q = ws.q;  // [N, H, Dh]
  q.resize(size_t(N * H * Dh));
  be.matmul(A.wq_b, qr.data(), N, Q, q.data(), H * Dh, gemm_opts(A.wq_b, ref));
  be.rms_norm(q.data(), N * H, Dh, Dh, nullptr, c.norm_eps, ref);  // weightless per-head RMSNorm
  be.rope(q.data(), N, H, Dh, H * Dh, pos, rope.freqs(), /*inverse=*/false, ref);

  // ---- window KV (§2.3.3) ------------------------------------------------------------------
  CacheAlignedVector<float>& kv = ws.kv;  // [N, Dh]
  kv.resize(size_t(N * Dh));
  be.matmul(A.wkv, xn, N, D, kv.data(), Dh, gemm_opts(A.wkv, ref));
  be.rms_norm(kv.data(), N, Dh, Dh, &A.kv_norm, c.norm_eps, ref);
  be.rope(kv.data(), N, 1, Dh, Dh, pos, rope.freqs(), /*inverse=*/false, ref);
  if (ref)
    for (int64_t r = 0; r < N; ++r) kv_fp8_sim(&kv[size_t(r * Dh)], Dn);

  // ---- compressed entries (§2.3.5), emitted into each sequence's state ----------------------
  if (A.has_compressor) {
    std::vector<float>& ca = ws.ca;
    std::vector<float>& cg = ws.cg;
    compressor_project(A.compressor, xn, b, ca, cg);
    const int64_t cols = int64_t(A.compressor.c) * A.compressor.width;
    std::vector<float>& entry = ws.entry;
    entry.resize(size_t(Dh));
    for (const BatchItem& it : b.items) {
      cache::LayerState& S = it.state->layer(L.index);
      for (int64_t i = 0; i < it.n; ++i) {
        const int64_t r = it.row0 + i, p = it.start + i;
        if (compressor_push(be, S.compressor, &ca[size_t(r * cols)], &cg[size_t(r * cols)], p, entry.data())) {
          finish_kv_entry(be, entry.data(), A.compressor, rope, p / L.ratio, c, ref);
          AllowAllocScope state_grows;  // a new page now and then
          S.kv_compressed.append(entry.data());
        }
      }
    }
  }

  // ---- lightning indexer (§2.3.6): selected CSA entries per row ------------------------------
  std::vector<std::vector<int32_t>>& selected = ws.selected;  // per row, ascending
  if (A.has_indexer) indexer_select(A.indexer, L.index, rope, xn, qr.data(), b, selected);

  // ---- which keys each row sees (§2.3.4) ---------------------------------------------------
  // Rows of the cache are decoded once per item into fp32 scratch: the window positions before
  // this chunk (from the ring) and the compressed entries some row of the item attends to.
  // The buffers live in the pass's scratch (kept between steps: a decode step allocates nothing
  // here once they have grown).
  std::vector<const float*>& keys = ws.keys;  // row r's keys: keys[key_begin[r] .. key_begin[r + 1])
  std::vector<int64_t>& key_begin = ws.key_begin;
  key_begin.assign(static_cast<size_t>(N + 1), 0);
  {  // at most: the window and every entry a row can see, per row
    int64_t bound = 0;
    for (const BatchItem& it : b.items) {
      const int64_t ents = L.kind == AttnKind::csa ? c.index_topk
                           : L.kind == AttnKind::hca ? it.state->layer(L.index).kv_compressed.size()
                                                     : 0;
      bound += it.n * (W + ents);
    }
    resize_with_context(keys, size_t(bound));
    keys.clear();
  }
  if (ws.decoded.size() < b.items.size()) resize_with_context(ws.decoded, b.items.size());
  for (size_t ii = 0; ii < b.items.size(); ++ii) {
    const BatchItem& it = b.items[ii];
    const cache::SeqState& st = *it.state;
    const cache::LayerState& S = st.layer(L.index);
    const int64_t ring_lo = std::max<int64_t>(0, it.start - W + 1);  // oldest position any row needs
    const int64_t n_ring = it.start - ring_lo;
    const int64_t n_ent = L.kind != AttnKind::swa ? S.kv_compressed.size() : 0;
    std::vector<int64_t>& slot = ws.slot;
    resize_with_context(slot, size_t(n_ent));
    std::fill(slot.begin(), slot.end(), int64_t(-1));
    int64_t n_dec = n_ring;
    static const std::vector<int32_t> none;
    auto selection = [&](int64_t r) -> const std::vector<int32_t>& {
      return L.kind == AttnKind::csa ? selected[size_t(r)] : none;
    };
    for (int64_t i = 0; i < it.n; ++i) {
      const int64_t r = it.row0 + i, t = it.start + i;
      for_each_visible_entry(L.kind, t, selection(r), [&](int64_t j) {
        if (slot[size_t(j)] < 0) slot[size_t(j)] = n_dec++;
      });
    }
    auto& buf = ws.decoded[ii];
    resize_with_context(buf, size_t(n_dec * Dh));
    for (int64_t p = ring_lo; p < it.start; ++p) st.window_decode(L.index, p, &buf[size_t((p - ring_lo) * Dh)]);
    for (int64_t j = 0; j < n_ent; ++j)
      if (slot[size_t(j)] >= 0) S.kv_compressed.decode(j, &buf[size_t(slot[size_t(j)] * Dh)]);
    for (int64_t i = 0; i < it.n; ++i) {
      const int64_t r = it.row0 + i, t = it.start + i;
      key_begin[size_t(r)] = int64_t(keys.size());
      for (int64_t p = std::max<int64_t>(0, t - W + 1); p <= t; ++p)
        keys.push_back(p >= it.start ? &kv[size_t((it.row0 + p - it.start) * Dh)] : &buf[size_t((p - ring_lo) * Dh)]);
      for_each_visible_entry(L.kind, t, selection(r),
                             [&](int64_t j) { keys.push_back(&buf[size_t(slot[size_t(j)] * Dh)]); });
      key_begin[size_t(r + 1)] = int64_t(keys.size());
    }
  }
  if (dbg && A.has_indexer) dbg->csa_selected.assign(selected.begin(), selected.begin() + N);

  // ---- core attention with sink (§2.3.7) and inverse RoPE (§2.3.8) --------------------------
  CacheAlignedVector<float>& o = ws.o;  // [N, H, Dh]
  o.resize(size_t(N * H * Dh));
  const float scale = 1.f / std::sqrt(float(Dh));
  be.sink_attention(q.data(), N, H, Dh, keys.data(), key_begin.data(), A.attn_sink.as<float>(), scale,
                    /*round_probs=*/ref, /*round_out=*/ref, o.data());
  be.rope(o.data(), N, H, Dh, H * Dh, pos, rope.freqs(), /*inverse=*/true, ref);

  // ---- window ring update: the last W rows of each item ------------------------------------
  for (const BatchItem& it : b.items) {
    for (int64_t i = std::max<int64_t>(0, it.n - W); i < it.n; ++i)
      it.state->window_store(L.index, it.start + i, &kv[size_t((it.row0 + i) * Dh)]);
  }

  // ---- grouped output projection (§2.3.8) --------------------------------------------------
  const int64_t G = c.o_groups, Ro = c.o_lora_rank, gin = H * Dh / G;
  std::vector<float>& z = ws.z;  // [N, G*Ro]
  z.resize(size_t(N * G * Ro));
  MatmulOpts oa;  // reference: wo_a dequantised to bf16, bf16 einsum (no activation quant)
  oa.weight_bf16 = ref;
  oa.out_bf16 = ref;
  for (int64_t g = 0; g < G; ++g)
    be.matmul(A.wo_a.rows(g * Ro, Ro), &o[size_t(g * gin)], N, H * Dh, &z[size_t(g * Ro)], G * Ro, oa);
  be.matmul(A.wo_b, z.data(), N, G * Ro, y, D, gemm_opts(A.wo_b, ref));
}

}  // namespace dsv4::model
