// V4-ARCH §4.2 tensor table, built from a Config (see tensor_table.h).
#include "model/tensor_table.h"

#include "core/error.h"

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

struct TableBuilder {
  const Config& c;
  std::vector<TensorSpec>& out;
  int layer = -1;

  void plain(const std::string& name, Dtype dt, std::vector<int64_t> shape, Fill fill,
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
    out.push_back(std::move(t));
  }

  // `prefix.weight` [o, i] in the given stored format (+ `prefix.scale`).
  void linear(const std::string& prefix, int64_t o, int64_t i, WeightQuant q, Dtype plain_dt = Dtype::bf16,
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
        t.dtype = plain_dt;
        t.shape = {o, i};
        break;
      case WeightQuant::fp8_block128:
        t.dtype = Dtype::e4m3;
        t.shape = {o, i};
        break;
      case WeightQuant::fp4_block32:
        if (i % 32)
          throw Error(c.source + ": FP4 weight '" + t.name + "' needs an input dim divisible by 32, got " +
                      std::to_string(i));
        t.dtype = Dtype::i8;
        t.shape = {o, i / 2};
        break;
    }
    out.push_back(std::move(t));
  }

  void hc(const std::string& p, int64_t mix, int64_t nscale) {
    plain(p + "_fn", Dtype::f32, {mix, int64_t(c.hc_mult) * c.dim}, Fill::linear);
    plain(p + "_base", Dtype::f32, {mix}, Fill::hc_base);
    plain(p + "_scale", Dtype::f32, {nscale}, Fill::hc_scale);
  }

  void compressor(const std::string& p, int ratio, int64_t width) {
    const int64_t rows = (ratio == 4 ? 2 : 1) * width;
    linear(p + ".wkv", rows, c.dim, WeightQuant::none);
    linear(p + ".wgate", rows, c.dim, WeightQuant::none);
    plain(p + ".ape", Dtype::f32, {ratio, rows}, Fill::ape);
    plain(p + ".norm.weight", Dtype::bf16, {width}, Fill::norm);
  }

  void expert(const std::string& p, WeightQuant q, Dtype dt, ParamGroup g) {
    linear(p + ".w1", c.moe_inter_dim, c.dim, q, dt, g);
    linear(p + ".w2", c.dim, c.moe_inter_dim, q, dt, g);
    linear(p + ".w3", c.moe_inter_dim, c.dim, q, dt, g);
  }

  // One decoder block: main layer il, or a drafter block (il >= n_layers).
  void block(const std::string& p, int il) {
    layer = il;
    const int64_t D = c.dim, H = c.n_heads, Dh = c.head_dim, Q = c.q_lora_rank;
    const int ratio = c.compress_ratio(il);
    const auto fp8 = WeightQuant::fp8_block128;
    plain(p + ".attn_norm.weight", Dtype::bf16, {D}, Fill::norm);
    plain(p + ".ffn_norm.weight", Dtype::bf16, {D}, Fill::norm);
    hc(p + ".hc_attn", c.hc_mix_dim(), 3);
    hc(p + ".hc_ffn", c.hc_mix_dim(), 3);
    const std::string a = p + ".attn";
    plain(a + ".attn_sink", Dtype::f32, {H}, Fill::sink);
    linear(a + ".wq_a", Q, D, fp8);
    plain(a + ".q_norm.weight", Dtype::bf16, {Q}, Fill::norm);
    linear(a + ".wq_b", H * Dh, Q, fp8);
    linear(a + ".wkv", Dh, D, fp8);
    plain(a + ".kv_norm.weight", Dtype::bf16, {Dh}, Fill::norm);
    linear(a + ".wo_a", int64_t(c.o_groups) * c.o_lora_rank, H * Dh / c.o_groups, fp8);
    linear(a + ".wo_b", D, int64_t(c.o_groups) * c.o_lora_rank, fp8);
    if (ratio != 0) compressor(a + ".compressor", ratio, Dh);
    if (ratio == 4) {
      linear(a + ".indexer.wq_b", int64_t(c.index_n_heads) * c.index_head_dim, Q, fp8);
      linear(a + ".indexer.weights_proj", c.index_n_heads, D, WeightQuant::none);
      compressor(a + ".indexer.compressor", 4, c.index_head_dim);
    }
    const std::string f = p + ".ffn";
    linear(f + ".gate", c.n_routed_experts, D, WeightQuant::none);
    if (c.is_hash_layer(il))
      plain(f + ".gate.tid2eid", Dtype::i64, {c.vocab_size, c.n_activated_experts}, Fill::tid2eid, ParamGroup::table);
    else
      plain(f + ".gate.bias", Dtype::f32, {c.n_routed_experts}, Fill::gate_bias);
    WeightQuant eq = WeightQuant::fp4_block32;
    if (c.expert_dtype == "fp8") eq = fp8;
    else if (c.expert_dtype == "bf16") eq = WeightQuant::none;
    for (int e = 0; e < c.n_routed_experts; ++e)
      expert(f + ".experts." + std::to_string(e), eq, Dtype::bf16, ParamGroup::routed_expert);
    if (c.n_shared_experts > 0) expert(f + ".shared_experts", fp8, Dtype::bf16, ParamGroup::shared_expert);
  }
};

}  // namespace

std::vector<TensorSpec> tensor_table(const Config& c, bool with_drafter) {
  validate_config(c);
  std::vector<TensorSpec> out;
  TableBuilder b{c, out};
  const int64_t D = c.dim, V = c.vocab_size;
  const auto fp8 = WeightQuant::fp8_block128;
  b.plain("embed.weight", Dtype::bf16, {V, D}, Fill::embed, ParamGroup::embed);
  for (int il = 0; il < c.n_layers; ++il) b.block("layers." + std::to_string(il), il);
  if (with_drafter && c.drafter_kind() == DrafterKind::mtp) {
    b.block("mtp.0", c.n_layers);
    b.linear("mtp.0.e_proj", D, D, fp8);
    b.linear("mtp.0.h_proj", D, D, fp8);
    b.plain("mtp.0.enorm.weight", Dtype::bf16, {D}, Fill::norm);
    b.plain("mtp.0.hnorm.weight", Dtype::bf16, {D}, Fill::norm);
    b.plain("mtp.0.norm.weight", Dtype::bf16, {D}, Fill::norm);
    b.hc("mtp.0.hc_head", c.hc_mult, 1);
  } else if (with_drafter && c.drafter_kind() == DrafterKind::dspark) {
    const int S = c.dspark.n_stages();
    const int64_t rank = c.dspark.markov_rank;
    for (int s = 0; s < S; ++s) {
      const std::string p = "mtp." + std::to_string(s);
      b.block(p, c.n_layers + s);
      if (s == 0) {  // fuses the S target layers' outputs into the drafter's input
        b.linear(p + ".main_proj", D, int64_t(S) * D, fp8);
        b.plain(p + ".main_norm.weight", Dtype::bf16, {D}, Fill::norm);
      }
      if (s == S - 1) {  // the drafter's own head: norm + mHC collapse, Markov bias, confidence
        b.plain(p + ".norm.weight", Dtype::bf16, {D}, Fill::norm);
        b.plain(p + ".markov_head.markov_w1.weight", Dtype::bf16, {V, rank}, Fill::embed);
        b.linear(p + ".markov_head.markov_w2", V, rank, WeightQuant::none);
        b.linear(p + ".confidence_head.proj", 1, D + rank, WeightQuant::none);
        b.hc(p + ".hc_head", c.hc_mult, 1);
      }
    }
  }
  b.layer = -1;
  b.plain("norm.weight", Dtype::bf16, {D}, Fill::norm);
  b.hc("hc_head", c.hc_mult, 1);
  b.linear("head", V, D, WeightQuant::none, Dtype::bf16, ParamGroup::head, Fill::head);
  return out;
}

}  // namespace dsv4::model
