// Parameter, tensor and KV accounting from a Config (see model_stats.h). Everything is computed
// from the §4.2 shapes via tensor_table(); nothing here is specific to Flash or Pro.
#include "model/model_stats.h"

#include <algorithm>

#include "cache/seq_state.h"
#include "model/forward.h"
#include "model/tensor_table.h"

namespace dsv4::model {

ParamCounts count_params(const Config& c) {
  ParamCounts p;
  for (const TensorSpec& t : tensor_table(c, /*with_drafter=*/true)) {
    if (t.group == ParamGroup::table) {
      if (!t.is_drafter(c)) p.tid2eid += t.numel();
      continue;
    }
    const int64_t n = t.params();
    if (t.is_drafter(c)) {
      p.drafter += n;
      continue;
    }
    switch (t.group) {
      case ParamGroup::embed: p.embed += n; break;
      case ParamGroup::head: p.head += n; break;
      case ParamGroup::dense: p.dense += n; break;
      case ParamGroup::shared_expert: p.shared_expert += n; break;
      case ParamGroup::routed_expert: p.routed_expert += n; break;
      case ParamGroup::table: break;
    }
  }
  // Every layer has E routed experts of equal size, so K/E of them is exact in integers.
  const int64_t routed_active = p.routed_expert / c.n_routed_experts * c.n_activated_experts;
  p.active = p.dense + p.shared_expert + routed_active + p.head + c.dim;
  return p;
}

TokenWork token_work(const Config& c) {
  TokenWork w;
  int64_t routed_bytes = 0, routed_macs = 0;
  for (const TensorSpec& t : tensor_table(c, /*with_drafter=*/false)) {
    switch (t.group) {
      case ParamGroup::embed: w.weight_bytes += t.bytes() / t.rows; break;  // one row
      case ParamGroup::table: break;
      case ParamGroup::routed_expert:
        routed_bytes += t.bytes();
        routed_macs += t.params();
        break;
      default:
        w.weight_bytes += t.bytes();
        if (t.rows > 1 && t.fill != Fill::ape) w.weight_macs += t.params();  // matrices, not norms/tables
    }
  }
  w.weight_bytes += routed_bytes / c.n_routed_experts * c.n_activated_experts;
  w.weight_macs += routed_macs / c.n_routed_experts * c.n_activated_experts;
  return w;
}

TensorTotals expected_tensor_totals(const Config& c, bool with_drafter) {
  TensorTotals t;
  auto add = [&](Dtype d, int64_t bytes) {
    auto& e = t.by_dtype[dtype_safetensors_name(d)];
    ++e.count;
    e.bytes += bytes;
    ++t.count;
    t.bytes += bytes;
  };
  for (const TensorSpec& s : tensor_table(c, with_drafter)) {
    add(s.dtype, s.numel() * int64_t(dtype_size(s.dtype)));
    if (s.has_scale()) add(Dtype::e8m0, s.bytes() - s.numel() * int64_t(dtype_size(s.dtype)));
  }
  return t;
}

const char* kv_format_name(KvFormat f) {
  switch (f) {
    case KvFormat::native: return "native";
    case KvFormat::native_scales: return "native+scales";
    case KvFormat::bf16: return "bf16";
  }
  return "?";
}

KvLayout kv_layout(const Config& c, KvFormat f) {
  const int64_t Dn = c.nope_head_dim(), R = c.rope_head_dim, Di = c.index_head_dim;
  KvLayout l;
  switch (f) {
    case KvFormat::native:
      l.entry_bytes = Dn + 2 * R;  // e4m3 nope dims + bf16 rope dims
      l.index_key_bytes = Di / 2;  // e2m1, two per byte
      break;
    case KvFormat::native_scales:
      l.entry_bytes = Dn + 2 * R + (Dn + 63) / 64;  // + one e8m0 per 64 nope dims
      l.index_key_bytes = Di / 2 + (Di + 31) / 32;  // + one e8m0 per 32 dims
      break;
    case KvFormat::bf16:
      l.entry_bytes = 2 * int64_t(c.head_dim);
      l.index_key_bytes = 2 * Di;
      break;
  }
  return l;
}

double kv_bytes_per_token(const Config& c, AttnKind k, KvFormat f) {
  const KvLayout l = kv_layout(c, f);
  switch (k) {
    case AttnKind::swa: return 0.0;
    case AttnKind::csa: return double(l.entry_bytes) / 4.0 + double(l.index_key_bytes) / 4.0;
    case AttnKind::hca: return double(l.entry_bytes) / 128.0;
  }
  return 0.0;
}

double kv_bytes_per_token(const Config& c, KvFormat f) {
  double s = 0;
  for (int l = 0; l < c.n_layers; ++l) s += kv_bytes_per_token(c, c.attn_kind(l), f);
  return s;
}

KvStateBytes kv_state_bytes(const Config& c, KvFormat f, int64_t n, bool include_drafter) {
  // The state accounting (cache::state_bytes_at) in format f's row sizes, windows counted by the
  // slots holding a token.
  cache::StateShape s = state_shape_for(c, Numerics::reference);
  if (include_drafter) {
    s.n_layers = c.n_blocks();
    s.ratios = c.compress_ratios;
  }
  const KvLayout l = kv_layout(c, f);
  cache::StateBytesOptions o;
  o.kv_row_bytes = size_t(l.entry_bytes);
  o.index_row_bytes = size_t(l.index_key_bytes);
  o.filled_window_only = true;
  const cache::StateBytes b = cache::state_bytes_at(s, n, o);
  KvStateBytes r;
  r.window = int64_t(b.window);
  r.compressed = int64_t(b.kv_compressed);
  r.index_keys = int64_t(b.index_keys);
  return r;
}

int64_t compressor_state_bytes(const Config& c) {
  return int64_t(cache::state_bytes_at(state_shape_for(c, Numerics::f32), 0).compressor);  // fp32 in both numerics
}

}  // namespace dsv4::model
