// V4-ARCH §4.2 tensor table, enforced: each tensor's presence, dtype and shape, and each scale
// against its weight. Errors name the shard and the tensor.
#include "model/weights.h"

#include <algorithm>
#include <set>

#include "core/error.h"

namespace dsv4::model {

using kernels::WeightFormat;

class WeightBinder {
 public:
  WeightBinder(Model& m) : m_(m), c_(m.config_) {}

  const TensorEntry& entry(const std::string& name) {
    const TensorEntry* e = m_.ckpt_->find(name);
    if (!e) throw Error(m_.dir_ + ": missing tensor '" + name + "'");
    m_.used_.push_back(name);
    return *e;
  }
  bool has(const std::string& name) const { return m_.ckpt_->find(name) != nullptr; }

  [[noreturn]] void bad(const TensorEntry& e, const std::string& name, const std::string& what) {
    throw Error(e.file + ": tensor '" + name + "': " + what);
  }

  void expect_shape(const TensorEntry& e, const std::string& name, std::vector<int64_t> shape) {
    bool ok = int(shape.size()) == e.view.ndim;
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] == e.view.shape[i];
    if (!ok)
      bad(e, name, "shape " + e.view.shape_str() + ", expected " + shape_to_string(shape.data(), int(shape.size())));
  }

  TensorView plain(const std::string& name, Dtype dt, std::vector<int64_t> shape) {
    const TensorEntry& e = entry(name);
    if (e.view.dtype != dt)
      bad(e, name, std::string("dtype ") + dtype_name(e.view.dtype) + ", expected " + dtype_name(dt));
    expect_shape(e, name, shape);
    return e.view;
  }

  // A linear weight `prefix.weight` [out, in] in whichever supported stored format it has, plus
  // its `prefix.scale` when quantised. `allowed` lists the formats the spec permits here.
  Linear linear(const std::string& prefix, int64_t out, int64_t in, std::initializer_list<WeightFormat> allowed) {
    const std::string wn = prefix + ".weight";
    const TensorEntry& e = entry(wn);
    Linear l;
    l.out = out;
    l.in = in;
    l.ld = in;
    l.w = e.view;
    switch (e.view.dtype) {
      case Dtype::f32: l.fmt = WeightFormat::f32; break;
      case Dtype::bf16: l.fmt = WeightFormat::bf16; break;
      case Dtype::e4m3: l.fmt = WeightFormat::fp8_block128; break;
      case Dtype::i8:
      case Dtype::u8: l.fmt = WeightFormat::fp4_block32; break;
      default:
        bad(e, wn, std::string("dtype ") + dtype_name(e.view.dtype) + " is not a supported weight format");
    }
    if (std::find(allowed.begin(), allowed.end(), l.fmt) == allowed.end()) {
      std::string exp;
      for (auto f : allowed) exp += std::string(exp.empty() ? "" : " or ") + kernels::weight_format_name(f);
      bad(e, wn, std::string("dtype ") + dtype_safetensors_name(e.view.dtype) + ", expected " + exp);
    }
    const std::string sn = prefix + ".scale";
    if (l.fmt == WeightFormat::fp4_block32) {
      if (in % 32) bad(e, wn, "FP4 weight input dim " + std::to_string(in) + " is not a multiple of 32");
      expect_shape(e, wn, {out, in / 2});
      if (!has(sn)) throw Error(e.file + ": tensor '" + wn + "' is FP4 but its scale '" + sn + "' is missing");
      const TensorEntry& s = entry(sn);
      if (s.view.dtype != Dtype::e8m0)
        bad(s, sn, std::string("dtype ") + dtype_name(s.view.dtype) + ", expected e8m0 (F8_E8M0)");
      if (s.view.ndim != 2 || s.view.dim(0) != out || s.view.dim(1) != in / 32)
        bad(s, sn, "scale shape " + s.view.shape_str() + " does not match FP4 weight " + e.view.shape_str() +
                       " (expected [" + std::to_string(out) + ", " + std::to_string(in / 32) + "])");
      l.scale = s.view;
    } else if (l.fmt == WeightFormat::fp8_block128) {
      expect_shape(e, wn, {out, in});
      if (!has(sn)) throw Error(e.file + ": tensor '" + wn + "' is FP8 but its scale '" + sn + "' is missing");
      const TensorEntry& s = entry(sn);
      if (s.view.dtype != Dtype::e8m0)
        bad(s, sn, std::string("dtype ") + dtype_name(s.view.dtype) + ", expected e8m0 (F8_E8M0)");
      int64_t so = (out + 127) / 128, si = (in + 127) / 128;
      if (s.view.ndim != 2 || s.view.dim(0) != so || s.view.dim(1) != si)
        bad(s, sn, "scale shape " + s.view.shape_str() + " does not match FP8 weight " + e.view.shape_str() +
                       " with 128x128 blocks (expected [" + std::to_string(so) + ", " + std::to_string(si) + "])");
      l.scale = s.view;
    } else {
      expect_shape(e, wn, {out, in});
    }
    return l;
  }

  HcParams hc(const std::string& p, int64_t mix, int64_t nscale) {
    HcParams h;
    h.fn = plain(p + "_fn", Dtype::f32, {mix, int64_t(c_.hc_mult) * c_.dim});
    h.base = plain(p + "_base", Dtype::f32, {mix});
    h.scale = plain(p + "_scale", Dtype::f32, {nscale});
    return h;
  }

  CompressorWeights compressor(const std::string& p, int ratio, int width) {
    CompressorWeights cw;
    cw.ratio = ratio;
    cw.width = width;
    cw.c = ratio == 4 ? 2 : 1;
    const int64_t rows = int64_t(cw.c) * width;
    cw.wkv = linear(p + ".wkv", rows, c_.dim, {WeightFormat::bf16, WeightFormat::f32});
    cw.wgate = linear(p + ".wgate", rows, c_.dim, {WeightFormat::bf16, WeightFormat::f32});
    cw.ape = plain(p + ".ape", Dtype::f32, {ratio, rows});
    cw.norm = plain(p + ".norm.weight", Dtype::bf16, {width});
    return cw;
  }

  ExpertWeights expert(const std::string& p, std::initializer_list<WeightFormat> fmts) {
    ExpertWeights ew;
    ew.w1 = linear(p + ".w1", c_.moe_inter_dim, c_.dim, fmts);
    ew.w2 = linear(p + ".w2", c_.dim, c_.moe_inter_dim, fmts);
    ew.w3 = linear(p + ".w3", c_.moe_inter_dim, c_.dim, fmts);
    return ew;
  }

  // One decoder block (main layer `il`, or a drafter block with il >= n_layers).
  LayerWeights layer(const std::string& p, int il) {
    LayerWeights L;
    L.index = il;
    L.ratio = c_.compress_ratio(il);
    L.kind = c_.attn_kind(il);
    L.hash = c_.is_hash_layer(il);
    const int64_t D = c_.dim, H = c_.n_heads, Dh = c_.head_dim, Q = c_.q_lora_rank;
    const auto fp8 = {WeightFormat::fp8_block128, WeightFormat::bf16, WeightFormat::f32};
    L.attn_norm = plain(p + ".attn_norm.weight", Dtype::bf16, {D});
    L.ffn_norm = plain(p + ".ffn_norm.weight", Dtype::bf16, {D});
    L.hc_attn = hc(p + ".hc_attn", c_.hc_mix_dim(), 3);
    L.hc_ffn = hc(p + ".hc_ffn", c_.hc_mix_dim(), 3);
    auto& A = L.attn;
    const std::string a = p + ".attn";
    A.attn_sink = plain(a + ".attn_sink", Dtype::f32, {H});
    A.wq_a = linear(a + ".wq_a", Q, D, fp8);
    A.q_norm = plain(a + ".q_norm.weight", Dtype::bf16, {Q});
    A.wq_b = linear(a + ".wq_b", H * Dh, Q, fp8);
    A.wkv = linear(a + ".wkv", Dh, D, fp8);
    A.kv_norm = plain(a + ".kv_norm.weight", Dtype::bf16, {Dh});
    A.wo_a = linear(a + ".wo_a", int64_t(c_.o_groups) * c_.o_lora_rank, H * Dh / c_.o_groups, fp8);
    A.wo_b = linear(a + ".wo_b", D, int64_t(c_.o_groups) * c_.o_lora_rank, fp8);
    if (L.ratio != 0) {
      A.has_compressor = true;
      A.compressor = compressor(a + ".compressor", L.ratio, int(Dh));
    } else if (has(a + ".compressor.wkv.weight")) {
      throw Error(m_.ckpt_->find(a + ".compressor.wkv.weight")->file + ": tensor '" + a +
                  ".compressor.wkv.weight' present but compress_ratios[" + std::to_string(il) + "] is 0");
    }
    if (L.ratio == 4) {
      A.has_indexer = true;
      A.indexer.wq_b = linear(a + ".indexer.wq_b", int64_t(c_.index_n_heads) * c_.index_head_dim, Q, fp8);
      A.indexer.weights_proj =
          linear(a + ".indexer.weights_proj", c_.index_n_heads, D, {WeightFormat::bf16, WeightFormat::f32});
      A.indexer.compressor = compressor(a + ".indexer.compressor", 4, c_.index_head_dim);
    }
    auto& F = L.ffn;
    const std::string f = p + ".ffn";
    F.gate = linear(f + ".gate", c_.n_routed_experts, D, {WeightFormat::bf16, WeightFormat::f32});
    if (L.hash) {
      const TensorEntry& e = entry(f + ".gate.tid2eid");
      if (e.view.dtype != Dtype::i64 && e.view.dtype != Dtype::i32)
        bad(e, f + ".gate.tid2eid", std::string("dtype ") + dtype_name(e.view.dtype) + ", expected i64 or i32");
      expect_shape(e, f + ".gate.tid2eid", {c_.vocab_size, c_.n_activated_experts});
      F.tid2eid = e.view;
      check_tid2eid(e, f + ".gate.tid2eid");
    } else {
      F.gate_bias = plain(f + ".gate.bias", Dtype::f32, {c_.n_routed_experts});
    }
    const auto fp4 = {WeightFormat::fp4_block32, WeightFormat::fp8_block128, WeightFormat::bf16, WeightFormat::f32};
    F.experts.reserve(size_t(c_.n_routed_experts));
    for (int e = 0; e < c_.n_routed_experts; ++e) F.experts.push_back(expert(f + ".experts." + std::to_string(e), fp4));
    if (c_.n_shared_experts > 0) {
      F.has_shared = true;
      F.shared = expert(f + ".shared_experts", fp8);
    }
    return L;
  }

  void check_tid2eid(const TensorEntry& e, const std::string& name) {
    const int64_t n = e.view.numel();
    for (int64_t i = 0; i < n; ++i) {
      int64_t v = e.view.dtype == Dtype::i64 ? e.view.as<int64_t>()[i] : e.view.as<int32_t>()[i];
      if (v < 0 || v >= c_.n_routed_experts)
        throw Error(e.file + ": tensor '" + name + "': row " + std::to_string(i / c_.n_activated_experts) +
                    " names expert " + std::to_string(v) + ", outside [0, " + std::to_string(c_.n_routed_experts) + ")");
    }
  }

  void bind_all() {
    auto& W = m_.weights_;
    const int64_t D = c_.dim, V = c_.vocab_size;
    W.embed = plain("embed.weight", Dtype::bf16, {V, D});
    W.head = linear("head", V, D, {WeightFormat::bf16, WeightFormat::f32});
    W.norm = plain("norm.weight", Dtype::bf16, {D});
    W.hc_head = hc("hc_head", c_.hc_mult, 1);
    for (int il = 0; il < c_.n_layers; ++il) W.layers.push_back(layer("layers." + std::to_string(il), il));
    bind_drafter();
  }

  // The drafter, when the checkpoint has one: its layout is recognised by its tensors and must
  // match the config; a checkpoint without `mtp.*` tensors simply has none.
  void bind_drafter() {
    auto& W = m_.weights_;
    std::string first;  // some drafter tensor, for messages
    for (const auto& [name, e] : m_.ckpt_->entries())
      if (name.rfind("mtp.", 0) == 0) {
        first = name;
        break;
      }
    if (first.empty()) return;
    const TensorEntry& fe = *m_.ckpt_->find(first);
    const int64_t D = c_.dim, V = c_.vocab_size;
    const auto fp8 = {WeightFormat::fp8_block128, WeightFormat::bf16, WeightFormat::f32};
    const auto plain_fmt = {WeightFormat::bf16, WeightFormat::f32};
    int n_blocks = 0;
    if (has("mtp.0.e_proj.weight")) {
      if (c_.drafter_kind() != DrafterKind::mtp)
        bad(*m_.ckpt_->find("mtp.0.e_proj.weight"), "mtp.0.e_proj.weight",
            "an April MTP block is present but the config describes " +
                std::string(c_.drafter_kind() == DrafterKind::dspark ? "a DSpark drafter (dspark_* keys)"
                                                                     : "no MTP block (num_nextn_predict_layers and "
                                                                       "an MTP entry in compress_ratios)"));
      W.drafter = DrafterKind::mtp;
      auto& M = W.mtp;
      M.block = layer("mtp.0", c_.n_layers);
      M.e_proj = linear("mtp.0.e_proj", D, D, fp8);
      M.h_proj = linear("mtp.0.h_proj", D, D, fp8);
      M.enorm = plain("mtp.0.enorm.weight", Dtype::bf16, {D});
      M.hnorm = plain("mtp.0.hnorm.weight", Dtype::bf16, {D});
      M.norm = plain("mtp.0.norm.weight", Dtype::bf16, {D});
      M.hc_head = hc("mtp.0.hc_head", c_.hc_mult, 1);
      n_blocks = 1;
    } else if (has("mtp.0.main_proj.weight")) {
      if (c_.drafter_kind() != DrafterKind::dspark)
        bad(*m_.ckpt_->find("mtp.0.main_proj.weight"), "mtp.0.main_proj.weight",
            "a DSpark drafter is present but the config has no dspark_* keys "
            "(dspark_block_size, dspark_noise_token_id, dspark_target_layer_ids, dspark_markov_rank)");
      W.drafter = DrafterKind::dspark;
      auto& S = W.dspark;
      const int n = c_.dspark.n_stages();
      const int64_t rank = c_.dspark.markov_rank;
      for (int s = 0; s < n; ++s) S.stages.push_back(layer("mtp." + std::to_string(s), c_.n_layers + s));
      S.main_proj = linear("mtp.0.main_proj", D, int64_t(n) * D, fp8);
      S.main_norm = plain("mtp.0.main_norm.weight", Dtype::bf16, {D});
      const std::string last = "mtp." + std::to_string(n - 1);
      S.norm = plain(last + ".norm.weight", Dtype::bf16, {D});
      S.markov_w1 = plain(last + ".markov_head.markov_w1.weight", Dtype::bf16, {V, rank});
      S.markov_w2 = linear(last + ".markov_head.markov_w2", V, rank, plain_fmt);
      S.confidence = linear(last + ".confidence_head.proj", 1, D + rank, plain_fmt);
      S.hc_head = hc(last + ".hc_head", c_.hc_mult, 1);
      n_blocks = n;
    } else {
      bad(fe, first,
          "drafter tensor of no known layout: neither mtp.0.e_proj.weight (April MTP block) nor "
          "mtp.0.main_proj.weight (DSpark stages) is present");
    }
    // Every mtp.K tensor must belong to a block the config describes.
    for (const auto& [name, e] : m_.ckpt_->entries()) {
      if (name.rfind("mtp.", 0) != 0) continue;
      const size_t dot = name.find('.', 4);
      const std::string k = name.substr(4, dot == std::string::npos ? std::string::npos : dot - 4);
      const bool numeric = !k.empty() && k.size() < 6 && std::all_of(k.begin(), k.end(), ::isdigit);
      if (!numeric || std::stoi(k) >= n_blocks)
        bad(e, name, "drafter block 'mtp." + k + "' is not in the config (" + std::to_string(n_blocks) + " " +
                         drafter_kind_name(W.drafter) + " block(s))");
    }
  }

 private:
  Model& m_;
  const Config& c_;
};

std::unique_ptr<Model> Model::load(const std::string& dir) {
  std::unique_ptr<Model> m(new Model());
  m->dir_ = dir;
  m->config_ = config_from_model_dir(dir);
  m->ckpt_ = std::make_unique<Checkpoint>(dir);
  WeightBinder b(*m);
  b.bind_all();
  return m;
}

std::vector<std::string> Model::unused_tensors() const {
  std::set<std::string> used(used_.begin(), used_.end());
  std::vector<std::string> r;
  for (const auto& [name, e] : ckpt_->entries())
    if (!used.count(name)) r.push_back(name);
  return r;
}

}  // namespace dsv4::model
