// V4-ARCH §1.2 key mapping (HF <-> ModelArgs) and §1.3 layer schedule validation.
#include "model/config.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"

namespace dsv4::model {

using nlohmann::json;

const char* attn_kind_name(AttnKind k) {
  switch (k) {
    case AttnKind::swa: return "swa";
    case AttnKind::csa: return "csa";
    case AttnKind::hca: return "hca";
  }
  return "?";
}

AttnKind Config::attn_kind(int layer) const {
  int r = compress_ratios.at(size_t(layer));
  return r == 0 ? AttnKind::swa : r == 4 ? AttnKind::csa : AttnKind::hca;
}

const char* drafter_kind_name(DrafterKind k) {
  switch (k) {
    case DrafterKind::none: return "none";
    case DrafterKind::mtp: return "mtp";
    case DrafterKind::dspark: return "dspark";
  }
  return "?";
}

DrafterKind Config::drafter_kind() const {
  if (dspark.present()) return DrafterKind::dspark;
  if (n_mtp_layers > 0 && n_drafter_blocks() > 0) return DrafterKind::mtp;
  return DrafterKind::none;
}

int Config::count_layers(AttnKind k) const {
  int n = 0;
  for (int l = 0; l < n_layers; ++l) n += attn_kind(l) == k;
  return n;
}

namespace {

struct Reader {
  const json& j;
  const std::string& src;
  bool hf;  // true: HF config.json keys; false: ModelArgs keys

  [[noreturn]] void bad(const std::string& key, const std::string& what) const {
    throw Error(src + ": config key '" + key + "': " + what);
  }
  const json* find(const std::string& key) const {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  int64_t get_int(const std::string& key, bool required, int64_t dflt = 0) const {
    const json* v = find(key);
    if (!v) {
      if (required) bad(key, "missing");
      return dflt;
    }
    if (v->is_number_integer() || v->is_number_unsigned()) return v->get<int64_t>();
    if (v->is_number_float()) {
      double d = v->get<double>();
      if (d == double(int64_t(d))) return int64_t(d);
    }
    bad(key, "expected an integer, got " + v->dump());
  }
  double get_num(const std::string& key, bool required, double dflt = 0) const {
    const json* v = find(key);
    if (!v) {
      if (required) bad(key, "missing");
      return dflt;
    }
    if (!v->is_number()) bad(key, "expected a number, got " + v->dump());
    return v->get<double>();
  }
  std::string get_str(const std::string& key, bool required, const std::string& dflt = "") const {
    const json* v = find(key);
    if (!v) {
      if (required) bad(key, "missing");
      return dflt;
    }
    if (!v->is_string()) bad(key, "expected a string, got " + v->dump());
    return v->get<std::string>();
  }
};

int as_int32(const Reader& r, const std::string& key, int64_t v) {
  if (v < INT32_MIN || v > INT32_MAX) r.bad(key, "value out of range: " + std::to_string(v));
  return int(v);
}

}  // namespace

void put_dspark_keys(const Config& c, nlohmann::ordered_json& j) {
  for (const char* k : {"dspark_block_size", "dspark_noise_token_id", "dspark_target_layer_ids", "dspark_markov_rank"})
    j.erase(k);
  if (!c.dspark.present()) return;
  j["dspark_block_size"] = c.dspark.block_size;
  j["dspark_noise_token_id"] = c.dspark.noise_token_id;
  j["dspark_target_layer_ids"] = c.dspark.target_layer_ids;
  j["dspark_markov_rank"] = c.dspark.markov_rank;
}

Config config_from_json(const json& j, const std::string& source) {
  if (!j.is_object()) throw Error(source + ": config is not a JSON object");
  // HF config.json has hidden_size; ModelArgs uses dim.
  bool hf = j.contains("hidden_size");
  if (!hf && !j.contains("dim"))
    throw Error(source + ": config key 'hidden_size' (or 'dim'): missing");
  Reader r{j, source, hf};
  Config c;
  c.source = source;
  auto I = [&](const char* hf_key, const char* ma_key, bool required, int64_t dflt = 0) {
    const char* k = hf ? hf_key : ma_key;
    return as_int32(r, k, r.get_int(k, required, dflt));
  };
  auto F = [&](const char* hf_key, const char* ma_key, bool required, double dflt = 0) {
    return float(r.get_num(hf ? hf_key : ma_key, required, dflt));
  };
  if (hf) {
    std::string mt = r.get_str("model_type", false, "deepseek_v4");
    if (mt != "deepseek_v4") r.bad("model_type", "expected \"deepseek_v4\", got \"" + mt + "\"");
  }
  c.dim = I("hidden_size", "dim", true);
  c.n_layers = I("num_hidden_layers", "n_layers", true);
  c.n_heads = I("num_attention_heads", "n_heads", true);
  c.head_dim = I("head_dim", "head_dim", true);
  c.rope_head_dim = I("qk_rope_head_dim", "rope_head_dim", true);
  c.q_lora_rank = I("q_lora_rank", "q_lora_rank", true);
  c.o_groups = I("o_groups", "o_groups", true);
  c.o_lora_rank = I("o_lora_rank", "o_lora_rank", true);
  c.n_routed_experts = I("n_routed_experts", "n_routed_experts", true);
  c.n_activated_experts = I("num_experts_per_tok", "n_activated_experts", true);
  c.n_shared_experts = I("n_shared_experts", "n_shared_experts", false, 1);
  c.moe_inter_dim = I("moe_intermediate_size", "moe_inter_dim", true);
  c.vocab_size = I("vocab_size", "vocab_size", true);
  c.window_size = I("sliding_window", "window_size", true);
  c.index_n_heads = I("index_n_heads", "index_n_heads", true);
  c.index_head_dim = I("index_head_dim", "index_head_dim", true);
  c.index_topk = I("index_topk", "index_topk", true);
  c.hc_mult = I("hc_mult", "hc_mult", false, 4);
  c.hc_sinkhorn_iters = I("hc_sinkhorn_iters", "hc_sinkhorn_iters", false, 20);
  c.hc_eps = F("hc_eps", "hc_eps", false, 1e-6);
  c.norm_eps = F("rms_norm_eps", "norm_eps", false, 1e-6);
  c.rope_theta = F("rope_theta", "rope_theta", false, 10000);
  c.compress_rope_theta = F("compress_rope_theta", "compress_rope_theta", true);
  c.swiglu_limit = F("swiglu_limit", "swiglu_limit", false, 0);
  c.route_scale = F("routed_scaling_factor", "route_scale", false, 1);
  c.n_hash_layers = I("num_hash_layers", "n_hash_layers", false, 0);
  c.n_mtp_layers = I("num_nextn_predict_layers", "n_mtp_layers", false, 0);
  c.max_position_embeddings = r.get_int(hf ? "max_position_embeddings" : "max_seq_len", false, 1048576);
  c.bos_token_id = as_int32(r, "bos_token_id", r.get_int("bos_token_id", false, 0));
  c.eos_token_id = as_int32(r, "eos_token_id", r.get_int("eos_token_id", false, 1));
  c.expert_dtype = r.get_str("expert_dtype", false, "fp4");

  std::string score = r.get_str(hf ? "scoring_func" : "score_func", false, "sqrtsoftplus");
  if (score != "sqrtsoftplus")
    r.bad(hf ? "scoring_func" : "score_func", "only \"sqrtsoftplus\" (DeepSeek-V4) is supported, got \"" + score + "\"");

  // YaRN.
  if (hf) {
    const json* rs = r.find("rope_scaling");
    if (rs) {
      if (!rs->is_object()) r.bad("rope_scaling", "expected an object");
      Reader rr{*rs, source, true};
      std::string type = rr.get_str("type", false, rr.get_str("rope_type", false, "yarn"));
      if (type != "yarn") r.bad("rope_scaling.type", "expected \"yarn\", got \"" + type + "\"");
      c.rope_factor = float(rr.get_num("factor", true));
      c.original_seq_len = rr.get_int("original_max_position_embeddings", true);
      c.beta_fast = float(rr.get_num("beta_fast", false, 32));
      c.beta_slow = float(rr.get_num("beta_slow", false, 1));
    }
  } else {
    c.rope_factor = float(r.get_num("rope_factor", false, 1));
    c.original_seq_len = r.get_int("original_seq_len", false, 0);
    c.beta_fast = float(r.get_num("beta_fast", false, 32));
    c.beta_slow = float(r.get_num("beta_slow", false, 1));
  }

  const json* cr = r.find("compress_ratios");
  if (!cr) r.bad("compress_ratios", "missing");
  if (!cr->is_array()) r.bad("compress_ratios", "expected an array");
  for (const auto& v : *cr) {
    if (!v.is_number_integer()) r.bad("compress_ratios", "expected integers, got " + v.dump());
    c.compress_ratios.push_back(v.get<int>());
  }
  // DSpark (V4-Flash-0731, V4-Pro-0813): same keys in config.json and inference/config.json.
  const char* dspark_keys[] = {"dspark_block_size", "dspark_noise_token_id", "dspark_target_layer_ids",
                               "dspark_markov_rank"};
  int n_dspark = 0;
  for (const char* k : dspark_keys) n_dspark += r.find(k) != nullptr;
  if (n_dspark > 0) {
    for (const char* k : dspark_keys)
      if (!r.find(k)) r.bad(k, "missing (the other dspark_* keys are present)");
    c.dspark.block_size = as_int32(r, "dspark_block_size", r.get_int("dspark_block_size", true));
    c.dspark.noise_token_id = as_int32(r, "dspark_noise_token_id", r.get_int("dspark_noise_token_id", true));
    c.dspark.markov_rank = as_int32(r, "dspark_markov_rank", r.get_int("dspark_markov_rank", true));
    const json* t = r.find("dspark_target_layer_ids");
    if (!t->is_array() || t->empty()) r.bad("dspark_target_layer_ids", "expected a non-empty array of layer ids");
    for (const auto& v : *t) {
      if (!v.is_number_integer()) r.bad("dspark_target_layer_ids", "expected integers, got " + v.dump());
      c.dspark.target_layer_ids.push_back(as_int32(r, "dspark_target_layer_ids", v.get<int64_t>()));
    }
  }
  validate_config(c);
  return c;
}

void validate_config(const Config& c) {
  auto bad = [&](const std::string& key, const std::string& what) {
    throw Error(c.source + ": config key '" + key + "': " + what);
  };
  auto pos = [&](const char* key, int64_t v) {
    if (v <= 0) bad(key, "must be positive, got " + std::to_string(v));
  };
  pos("hidden_size", c.dim);
  pos("num_hidden_layers", c.n_layers);
  pos("num_attention_heads", c.n_heads);
  pos("head_dim", c.head_dim);
  pos("qk_rope_head_dim", c.rope_head_dim);
  pos("q_lora_rank", c.q_lora_rank);
  pos("o_groups", c.o_groups);
  pos("o_lora_rank", c.o_lora_rank);
  pos("n_routed_experts", c.n_routed_experts);
  pos("num_experts_per_tok", c.n_activated_experts);
  pos("moe_intermediate_size", c.moe_inter_dim);
  pos("vocab_size", c.vocab_size);
  pos("sliding_window", c.window_size);
  pos("index_n_heads", c.index_n_heads);
  pos("index_head_dim", c.index_head_dim);
  pos("index_topk", c.index_topk);
  pos("hc_mult", c.hc_mult);
  pos("hc_sinkhorn_iters", c.hc_sinkhorn_iters);
  if (c.hc_mult > 16) bad("hc_mult", "at most 16 streams are supported, got " + std::to_string(c.hc_mult));
  if (c.rope_head_dim > 512) bad("qk_rope_head_dim", "at most 512 is supported, got " + std::to_string(c.rope_head_dim));
  if (c.n_shared_experts < 0 || c.n_shared_experts > 1)
    bad("n_shared_experts", "expected 0 or 1, got " + std::to_string(c.n_shared_experts));
  if (c.rope_head_dim % 2 || c.rope_head_dim >= c.head_dim)
    bad("qk_rope_head_dim", "must be even and smaller than head_dim (" + std::to_string(c.head_dim) +
                                "), got " + std::to_string(c.rope_head_dim));
  if (c.index_head_dim % 2 || c.rope_head_dim > c.index_head_dim)
    bad("index_head_dim", "must be even and at least qk_rope_head_dim, got " + std::to_string(c.index_head_dim));
  if (c.index_head_dim & (c.index_head_dim - 1))
    bad("index_head_dim", "must be a power of two (Hadamard transform), got " + std::to_string(c.index_head_dim));
  if (c.n_heads % c.o_groups)
    bad("o_groups", std::to_string(c.o_groups) + " does not divide num_attention_heads " + std::to_string(c.n_heads));
  if (c.n_activated_experts > c.n_routed_experts)
    bad("num_experts_per_tok", std::to_string(c.n_activated_experts) + " exceeds n_routed_experts " +
                                   std::to_string(c.n_routed_experts));
  if (c.n_hash_layers < 0 || c.n_hash_layers > c.n_layers)
    bad("num_hash_layers", "must be in [0, num_hidden_layers], got " + std::to_string(c.n_hash_layers));
  if (c.n_mtp_layers < 0 || c.n_mtp_layers > 16)
    bad("num_nextn_predict_layers", "expected 0..16, got " + std::to_string(c.n_mtp_layers));
  if (c.bos_token_id < 0 || c.bos_token_id >= c.vocab_size) bad("bos_token_id", "outside the vocabulary");
  if (c.eos_token_id < 0 || c.eos_token_id >= c.vocab_size) bad("eos_token_id", "outside the vocabulary");
  if (!(c.hc_eps >= 0) || !(c.norm_eps > 0)) bad("rms_norm_eps", "must be positive");
  if (!(c.rope_theta > 1)) bad("rope_theta", "must be > 1");
  if (!(c.compress_rope_theta > 1)) bad("compress_rope_theta", "must be > 1");
  if (c.original_seq_len < 0) bad("rope_scaling.original_max_position_embeddings", "must be >= 0");
  if (c.original_seq_len > 0 && !(c.rope_factor >= 1))
    bad("rope_scaling.factor", "must be >= 1 with YaRN");
  if (!(c.swiglu_limit >= 0)) bad("swiglu_limit", "must be >= 0");
  if (!(c.route_scale > 0)) bad("routed_scaling_factor", "must be positive");
  if (c.expert_dtype != "fp4" && c.expert_dtype != "fp8" && c.expert_dtype != "bf16")
    bad("expert_dtype", "expected \"fp4\", \"fp8\" or \"bf16\", got \"" + c.expert_dtype + "\"");
  // compress_ratios: N main entries, then the drafter blocks' (0731 has 46 for 43 + 3 stages).
  const int64_t n_ratios = int64_t(c.compress_ratios.size());
  if (c.dspark.present()) {
    const int S = c.dspark.n_stages();
    if (n_ratios != int64_t(c.n_layers) + S)
      bad("compress_ratios", "expected num_hidden_layers + len(dspark_target_layer_ids) = " +
                                 std::to_string(c.n_layers + S) + " entries (" + std::to_string(S) +
                                 " DSpark stages after the main layers), got " + std::to_string(n_ratios));
    if (c.dspark.block_size < 1 || c.dspark.block_size > 64)
      bad("dspark_block_size", "expected 1..64, got " + std::to_string(c.dspark.block_size));
    if (c.dspark.noise_token_id < 0 || c.dspark.noise_token_id >= c.vocab_size)
      bad("dspark_noise_token_id", "outside the vocabulary: " + std::to_string(c.dspark.noise_token_id));
    if (c.dspark.markov_rank < 1) bad("dspark_markov_rank", "must be positive, got " + std::to_string(c.dspark.markov_rank));
    for (int id : c.dspark.target_layer_ids)
      if (id < 0 || id >= c.n_layers)
        bad("dspark_target_layer_ids", "layer " + std::to_string(id) + " outside [0, num_hidden_layers = " +
                                           std::to_string(c.n_layers) + ")");
  } else if (n_ratios < c.n_layers || n_ratios > int64_t(c.n_layers) + std::max(1, c.n_mtp_layers)) {
    bad("compress_ratios", "expected num_hidden_layers = " + std::to_string(c.n_layers) +
                               " entries, plus one per MTP block (num_nextn_predict_layers = " +
                               std::to_string(c.n_mtp_layers) + "), got " + std::to_string(n_ratios));
  }
  for (size_t i = 0; i < c.compress_ratios.size(); ++i) {
    int r = c.compress_ratios[i];
    if (r != 0 && r != 4 && r != 128)
      bad("compress_ratios", "entry " + std::to_string(i) + " is " + std::to_string(r) + "; allowed: 0, 4, 128");
    if (int64_t(i) >= c.n_layers && r != 0)
      bad("compress_ratios", "entry " + std::to_string(i) + " (drafter block " + std::to_string(i - size_t(c.n_layers)) +
                                 ") must be 0 (sliding window only), got " + std::to_string(r));
  }
  if (c.window_size < 1) bad("sliding_window", "must be >= 1");
}

Config config_from_file(const std::string& path) {
  return config_from_json(read_json_file(path, "config"), path);
}

Config config_from_model_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) throw Error(dir + ": not a directory");
  if (fs::exists(fs::path(dir) / "config.json")) return config_from_file((fs::path(dir) / "config.json").string());
  if (fs::exists(fs::path(dir) / "inference" / "config.json"))
    return config_from_file((fs::path(dir) / "inference" / "config.json").string());
  throw Error(dir + ": no config.json or inference/config.json");
}

}  // namespace dsv4::model
