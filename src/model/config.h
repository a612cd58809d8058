// V4-ARCH §1: model configuration, parsed once into typed fields (HF `config.json` keys or the
// official `inference/config.json` ModelArgs keys) and validated, with the layer schedule.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv4::model {

// The speculative drafter a checkpoint carries next to its main model (issue 17):
//   mtp    - April release: one MTP block `mtp.0.*` with e_proj/h_proj/enorm/hnorm/norm/hc_head.
//   dspark - V4-Flash-0731 / V4-Pro-0813: DSpark stages `mtp.0..S-1.*`, each an ordinary ratio-0
//            block; stage 0 adds main_proj/main_norm (fusing target layers' outputs), the last
//            stage norm, markov_head, confidence_head and its own hc_head.
// The main model's logits never depend on it.
enum class DrafterKind : uint8_t { none, mtp, dspark };
const char* drafter_kind_name(DrafterKind k);

// DSpark keys of a 0731/0813 config (all four present, or none).
struct DSparkConfig {
  int block_size = 0;                  // dspark_block_size (5): draft tokens per round
  int noise_token_id = -1;             // dspark_noise_token_id (128799): MASK token of a block
  std::vector<int> target_layer_ids;   // dspark_target_layer_ids: one target layer per stage
  int markov_rank = 0;                 // dspark_markov_rank: 256 Flash-0731, 512 Pro-0813
  bool present() const { return !target_layer_ids.empty(); }
  int n_stages() const { return int(target_layer_ids.size()); }
};

// Attention kind of a layer, from compress_ratios (V4-ARCH §1.3).
enum class AttnKind : uint8_t { swa /*ratio 0*/, csa /*ratio 4*/, hca /*ratio 128*/ };
const char* attn_kind_name(AttnKind k);

struct Config {
  // Sizes (V4-ARCH §1.2 letters in comments).
  int dim = 0;                  // D
  int n_layers = 0;             // N
  int n_heads = 0;              // H
  int head_dim = 0;             // Dh (512)
  int rope_head_dim = 0;        // R (64), last R dims of each head
  int q_lora_rank = 0;          // Q
  int o_groups = 0;             // G
  int o_lora_rank = 0;          // Ro
  int n_routed_experts = 0;     // E
  int n_activated_experts = 0;  // K
  int n_shared_experts = 0;
  int moe_inter_dim = 0;        // I
  int vocab_size = 0;           // V
  int window_size = 0;          // W (128)
  // One entry per main layer, then one per drafter block: N+1 (April, the MTP block), N+S
  // (0731/0813, S DSpark stages) or N (no drafter). Drafter entries are 0.
  std::vector<int> compress_ratios;
  int index_n_heads = 0;        // Hi
  int index_head_dim = 0;       // Di
  int index_topk = 0;           // Ti
  int hc_mult = 0;              // mHC streams (4)
  int hc_sinkhorn_iters = 0;
  float hc_eps = 1e-6f;
  float norm_eps = 1e-6f;
  // RoPE (V4-ARCH §2.3.1).
  float rope_theta = 10000.f;           // ratio-0 layers, no YaRN
  float compress_rope_theta = 160000.f; // ratio != 0 layers, with YaRN
  float rope_factor = 1.f;
  int64_t original_seq_len = 0;         // 0 = no YaRN
  float beta_fast = 32.f, beta_slow = 1.f;
  int64_t max_position_embeddings = 0;
  // MoE (V4-ARCH §2.4).
  float swiglu_limit = 0.f;   // 0 = no clamp
  float route_scale = 1.f;
  int n_hash_layers = 0;
  int n_mtp_layers = 0;        // num_nextn_predict_layers (0731 still says 1: count stages instead)
  DSparkConfig dspark;
  int bos_token_id = 0, eos_token_id = 1;
  std::string expert_dtype = "fp4";
  std::string source;  // file the config came from (for error messages)

  // Derived.
  int nope_head_dim() const { return head_dim - rope_head_dim; }
  int hc_mix_dim() const { return (2 + hc_mult) * hc_mult; }
  AttnKind attn_kind(int layer) const;   // layer in [0, n_blocks()): main layers, then drafter blocks
  int compress_ratio(int layer) const { return compress_ratios.at(layer); }
  bool is_hash_layer(int layer) const { return layer < n_hash_layers && layer < n_layers; }
  int count_layers(AttnKind k) const;    // main layers only
  // Main layers plus the drafter blocks the config describes (= compress_ratios.size()).
  int n_blocks() const { return int(compress_ratios.size()); }
  int n_drafter_blocks() const { return n_blocks() - n_layers; }
  // The drafter the config describes: dspark when the dspark_* keys are present, mtp when
  // num_nextn_predict_layers > 0 and compress_ratios has the MTP entry, else none.
  DrafterKind drafter_kind() const;
};

// Sets (or, without a DSpark drafter, removes) the four dspark_* keys of a config JSON object; the
// same keys in config.json and inference/config.json.
void put_dspark_keys(const Config& c, nlohmann::ordered_json& j);

// Parses and validates. Throws dsv4::Error naming `source` and the offending key.
Config config_from_json(const nlohmann::json& j, const std::string& source);
Config config_from_file(const std::string& path);
// Loads a model dir's config: config.json, else inference/config.json.
Config config_from_model_dir(const std::string& dir);
// Checks every field and the layer schedule; throws naming the key.
void validate_config(const Config& c);

}  // namespace dsv4::model
