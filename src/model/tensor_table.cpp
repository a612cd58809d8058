// V4-ARCH §4.2 tensor table, built from a Config (see tensor_table.h).
#include "model/tensor_table.h"

#include "core/error.h"
#include "model/weights.h"

namespace dsv4::model {

std::string TensorSpec::scale_name() const {
  const std::string suffix = ".weight";
  if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
    return name.substr(0, name.size() - suffix.size()) + ".scale";
  return name + ".scale";
}

std::vector<int64_t> TensorSpec::scale_shape() const {
  switch (quant) {
    case WeightQuant::fp8_block128: return {(rows + 127) / 128, (cols + 127) / 128};
    case WeightQuant::fp4_block32: return {rows, cols / 32};
    case WeightQuant::none: break;
  }
  return {};
}

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t TensorSpec::bytes() const {
  int64_t b = numel() * int64_t(dtype_size(dtype));
  if (has_scale()) {
    int64_t s = 1;
    for (int64_t d : scale_shape()) s *= d;
    b += s;  // e8m0: one byte each
  }
  return b;
}

int64_t TensorSpec::params() const {
  if (group == ParamGroup::table) return 0;
  return quant == WeightQuant::fp4_block32 ? rows * cols : numel();
}

namespace {

using kernels::WeightFormat;

// The one walk over a checkpoint's layout: every tensor, in table order, with where it binds.
class LayoutWalker {
 public:
  LayoutWalker(const Config& c, ModelWeights& w, TensorSink& sink) : c(c), w(w), sink(sink) {}

  void model(DrafterKind drafter) {
    validate_config(c);
    const int64_t D = c.dim, V = c.vocab_size;
    const auto fp8 = WeightQuant::fp8_block128;
    w = ModelWeights{};
    w.drafter = drafter;
    plain("embed.weight", Dtype::bf16, {V, D}, Fill::embed, &w.embed, ParamGroup::embed);
    w.layers.resize(size_t(c.n_layers));
    for (int il = 0; il < c.n_layers; ++il) block("layers." + std::to_string(il), il, w.layers[size_t(il)]);
    if (drafter == DrafterKind::mtp) {  // April: one MTP block (V4-ARCH §2.6)
      auto& M = w.mtp;
      block("mtp.0", c.n_layers, M.block);
      linear("mtp.0.e_proj", D, D, fp8, &M.e_proj);
      linear("mtp.0.h_proj", D, D, fp8, &M.h_proj);
      plain("mtp.0.enorm.weight", Dtype::bf16, {D}, Fill::norm, &M.enorm);
      plain("mtp.0.hnorm.weight", Dtype::bf16, {D}, Fill::norm, &M.hnorm);
      plain("mtp.0.norm.weight", Dtype::bf16, {D}, Fill::norm, &M.norm);
      hc("mtp.0.hc_head", c.hc_mult, 1, M.hc_head);
    } else if (drafter == DrafterKind::dspark) {  // 0731/0813: S DSpark stages
      auto& S = w.dspark;
      const int n = c.dspark.n_stages();
      const int64_t rank = c.dspark.markov_rank;
      S.stages.resize(size_t(n));
      for (int s = 0; s < n; ++s) {
        const std::string p = "mtp." + std::to_string(s);
        block(p, c.n_layers + s, S.stages[size_t(s)]);
        if (s == 0) {  // fuses the S target layers' outputs into the drafter's input
          linear(p + ".main_proj", D, int64_t(n) * D, fp8, &S.main_proj);
          plain(p + ".main_norm.weight", Dtype::bf16, {D}, Fill::norm, &S.main_norm);
        }
        if (s == n - 1) {  // the drafter's own head: norm + mHC collapse, Markov bias, confidence
          plain(p + ".norm.weight", Dtype::bf16, {D}, Fill::norm, &S.norm);
          plain(p + ".markov_head.markov_w1.weight", Dtype::bf16, {V, rank}, Fill::embed, &S.markov_w1);
          linear(p + ".markov_head.markov_w2", V, rank, WeightQuant::none, &S.markov_w2);
          linear(p + ".confidence_head.proj", 1, D + rank, WeightQuant::none, &S.confidence);
          hc(p + ".hc_head", c.hc_mult, 1, S.hc_head);
        }
      }
    }
    layer = -1;
    plain("norm.weight", Dtype::bf16, {D}, Fill::norm, &w.norm);
    hc("hc_head", c.hc_mult, 1, w.hc_head);
    linear("head", V, D, WeightQuant::none, &w.head, ParamGroup::head, Fill::head);
  }

 private:
  const Config& c;
  ModelWeights& w;
  TensorSink& sink;
  int layer = -1;

  void plain(const std::string& name, Dtype dt, std::vector<int64_t> shape, Fill fill, TensorView* dst,
             ParamGroup g = ParamGroup::dense) {
    TensorSpec t;
    t.name = name;
    t.dtype = dt;
    t.rows = shape.size() == 2 ? shape[0] : 1;
    t.cols = shape.empty() ? 1 : shape.back();
    t.shape = std::move(shape);
    t.fill = fill;
    t.group = g;
    t.layer = layer;
    if (fill == Fill::tid2eid) t.alt_dtype = Dtype::i32;
    sink.plain(t, dst);
  }

  // `prefix.weight` [o, i] in the given stored format (+ `prefix.scale`). Routed experts may be
  // stored in any supported format, FP8 matrices also dequantised (bf16/f32), bf16 ones as f32.
  void linear(const std::string& prefix, int64_t o, int64_t i, WeightQuant q, Linear* dst,
              ParamGroup g = ParamGroup::dense, Fill fill = Fill::linear) {
    TensorSpec t;
    t.name = prefix + ".weight";
    t.rows = o;
    t.cols = i;
    t.quant = q;
    t.fill = fill;
    t.group = g;
    t.layer = layer;
    switch (q) {
      case WeightQuant::none:
        t.dtype = Dtype::bf16;
        t.shape = {o, i};
        t.accepts = {WeightFormat::bf16, WeightFormat::f32};
        break;
      case WeightQuant::fp8_block128:
        t.dtype = Dtype::e4m3;
        t.shape = {o, i};
        t.accepts = {WeightFormat::fp8_block128, WeightFormat::bf16, WeightFormat::f32};
        break;
      case WeightQuant::fp4_block32:
        if (i % 32)
          throw Error(c.source + ": FP4 weight '" + t.name + "' needs an input dim divisible by 32, got " +
                      std::to_string(i));
        t.dtype = Dtype::i8;
        t.shape = {o, i / 2};
        t.accepts = {WeightFormat::fp4_block32, WeightFormat::fp8_block128, WeightFormat::bf16, WeightFormat::f32};
        break;
    }
    if (g == ParamGroup::routed_expert)
      t.accepts = {WeightFormat::fp4_block32, WeightFormat::fp8_block128, WeightFormat::bf16, WeightFormat::f32};
    sink.linear(t, dst);
  }

  void hc(const std::string& p, int64_t mix, int64_t nscale, HcParams& h) {  // V4-ARCH §2.2
    plain(p + "_fn", Dtype::f32, {mix, int64_t(c.hc_mult) * c.dim}, Fill::linear, &h.fn);
    plain(p + "_base", Dtype::f32, {mix}, Fill::hc_base, &h.base);
    plain(p + "_scale", Dtype::f32, {nscale}, Fill::hc_scale, &h.scale);
  }

  void compressor(const std::string& p, int ratio, int width, CompressorWeights& cw) {  // V4-ARCH §2.3.5
    cw.ratio = ratio;
    cw.width = width;
    cw.c = ratio == 4 ? 2 : 1;
    const int64_t rows = int64_t(cw.c) * width;
    linear(p + ".wkv", rows, c.dim, WeightQuant::none, &cw.wkv);
    linear(p + ".wgate", rows, c.dim, WeightQuant::none, &cw.wgate);
    plain(p + ".ape", Dtype::f32, {ratio, rows}, Fill::ape, &cw.ape);
    plain(p + ".norm.weight", Dtype::bf16, {width}, Fill::norm, &cw.norm);
  }

  void expert(const std::string& p, WeightQuant q, ParamGroup g, ExpertWeights& ew) {  // V4-ARCH §2.4
    linear(p + ".w1", c.moe_inter_dim, c.dim, q, &ew.w1, g);
    linear(p + ".w2", c.dim, c.moe_inter_dim, q, &ew.w2, g);
    linear(p + ".w3", c.moe_inter_dim, c.dim, q, &ew.w3, g);
  }

  // One decoder block: main layer il, or a drafter block (il >= n_layers).
  void block(const std::string& p, int il, LayerWeights& L) {
    layer = il;
    const int64_t D = c.dim, H = c.n_heads, Dh = c.head_dim, Q = c.q_lora_rank;
    const auto fp8 = WeightQuant::fp8_block128;
    L.index = il;
    L.ratio = c.compress_ratio(il);
    L.kind = c.attn_kind(il);
    L.hash = c.is_hash_layer(il);
    plain(p + ".attn_norm.weight", Dtype::bf16, {D}, Fill::norm, &L.attn_norm);
    plain(p + ".ffn_norm.weight", Dtype::bf16, {D}, Fill::norm, &L.ffn_norm);
    hc(p + ".hc_attn", c.hc_mix_dim(), 3, L.hc_attn);
    hc(p + ".hc_ffn", c.hc_mix_dim(), 3, L.hc_ffn);
    auto& A = L.attn;
    const std::string a = p + ".attn";
    plain(a + ".attn_sink", Dtype::f32, {H}, Fill::sink, &A.attn_sink);
    linear(a + ".wq_a", Q, D, fp8, &A.wq_a);
    plain(a + ".q_norm.weight", Dtype::bf16, {Q}, Fill::norm, &A.q_norm);
    linear(a + ".wq_b", H * Dh, Q, fp8, &A.wq_b);
    linear(a + ".wkv", Dh, D, fp8, &A.wkv);
    plain(a + ".kv_norm.weight", Dtype::bf16, {Dh}, Fill::norm, &A.kv_norm);
    linear(a + ".wo_a", int64_t(c.o_groups) * c.o_lora_rank, H * Dh / c.o_groups, fp8, &A.wo_a);
    linear(a + ".wo_b", D, int64_t(c.o_groups) * c.o_lora_rank, fp8, &A.wo_b);
    A.has_compressor = L.ratio != 0;
    if (A.has_compressor) compressor(a + ".compressor", L.ratio, int(Dh), A.compressor);
    A.has_indexer = L.ratio == 4;
    if (A.has_indexer) {  // V4-ARCH §2.3.6
      linear(a + ".indexer.wq_b", int64_t(c.index_n_heads) * c.index_head_dim, Q, fp8, &A.indexer.wq_b);
      linear(a + ".indexer.weights_proj", c.index_n_heads, D, WeightQuant::none, &A.indexer.weights_proj);
      compressor(a + ".indexer.compressor", 4, c.index_head_dim, A.indexer.compressor);
    }
    auto& F = L.ffn;
    const std::string f = p + ".ffn";
    linear(f + ".gate", c.n_routed_experts, D, WeightQuant::none, &F.gate);
    if (L.hash)
      plain(f + ".gate.tid2eid", Dtype::i64, {c.vocab_size, c.n_activated_experts}, Fill::tid2eid, &F.tid2eid,
            ParamGroup::table);
    else
      plain(f + ".gate.bias", Dtype::f32, {c.n_routed_experts}, Fill::gate_bias, &F.gate_bias);
    WeightQuant eq = WeightQuant::fp4_block32;
    if (c.expert_dtype == "fp8") eq = fp8;
    else if (c.expert_dtype == "bf16") eq = WeightQuant::none;
    F.experts.resize(size_t(c.n_routed_experts));
    for (int e = 0; e < c.n_routed_experts; ++e)
      expert(f + ".experts." + std::to_string(e), eq, ParamGroup::routed_expert, F.experts[size_t(e)]);
    F.has_shared = c.n_shared_experts > 0;
    if (F.has_shared) expert(f + ".shared_experts", fp8, ParamGroup::shared_expert, F.shared);
  }
};

struct Collect : TensorSink {
  std::vector<TensorSpec>& out;
  explicit Collect(std::vector<TensorSpec>& o) : out(o) {}
  void plain(const TensorSpec& t, TensorView*) override { out.push_back(t); }
  void linear(const TensorSpec& t, Linear*) override { out.push_back(t); }
};

}  // namespace

void walk_layout(const Config& c, DrafterKind drafter, ModelWeights& w, TensorSink& sink) {
  LayoutWalker(c, w, sink).model(drafter);
}

std::vector<TensorSpec> tensor_table(const Config& c, bool with_drafter) {
  std::vector<TensorSpec> out;
  Collect sink(out);
  ModelWeights scratch;
  walk_layout(c, with_drafter ? c.drafter_kind() : DrafterKind::none, scratch, sink);
  return out;
}

}  // namespace dsv4::model
