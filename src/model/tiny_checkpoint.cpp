// Random-weight checkpoints in the official layout (see tiny_checkpoint.h).
//
// Sections: presets; config files; the generator (PRNG, fills); quantising encoders; shard
// planning and streaming safetensors writing; adding a drafter.
#include "model/tiny_checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "core/dtype.h"
#include "core/error.h"
#include "core/temp_name.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "model/safetensors.h"
#include "model/tensor_table.h"

namespace dsv4::model {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// ---- presets ------------------------------------------------------------------------------------

namespace {

// Values shared by every preset: the real models' RoPE/YaRN, mHC, router and vocabulary settings.
Config base_config() {
  Config c;
  c.vocab_size = 129280;
  c.window_size = 128;
  c.rope_head_dim = 64;
  c.hc_mult = 4;
  c.hc_sinkhorn_iters = 20;
  c.hc_eps = 1e-6f;
  c.norm_eps = 1e-6f;
  c.rope_theta = 10000.f;
  c.compress_rope_theta = 160000.f;
  c.rope_factor = 16.f;
  c.original_seq_len = 65536;
  c.beta_fast = 32.f;
  c.beta_slow = 1.f;
  c.max_position_embeddings = 1048576;
  c.swiglu_limit = 10.f;
  c.route_scale = 1.5f;
  c.n_shared_experts = 1;
  c.n_mtp_layers = 1;
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  c.expert_dtype = "fp4";
  c.index_head_dim = 128;
  return c;
}

}  // namespace

namespace {

// The real V4-Flash / V4-Pro configs (V4-ARCH §1.2), April release with the MTP block.
Config real_config(bool pro) {
  Config c = base_config();
  c.dim = pro ? 7168 : 4096;
  c.n_layers = pro ? 61 : 43;
  c.n_heads = pro ? 128 : 64;
  c.head_dim = 512;
  c.q_lora_rank = pro ? 1536 : 1024;
  c.o_groups = pro ? 16 : 8;
  c.o_lora_rank = 1024;
  c.n_routed_experts = pro ? 384 : 256;
  c.n_activated_experts = 6;
  c.moe_inter_dim = pro ? 3072 : 2048;
  c.index_n_heads = 64;
  c.index_topk = pro ? 1024 : 512;
  c.route_scale = pro ? 2.5f : 1.5f;
  c.n_hash_layers = 3;
  // Flash: 2 SWA layers, then CSA/HCA alternating, the last layer CSA; Pro: 2 HCA layers first.
  c.compress_ratios = {pro ? 128 : 0, pro ? 128 : 0};
  for (int l = 2; l < c.n_layers; ++l) c.compress_ratios.push_back(l % 2 == 0 ? 4 : 128);
  c.compress_ratios.push_back(0);  // MTP
  return c;
}

}  // namespace

Config preset_config(const std::string& preset, int layers) {
  Config c = base_config();
  c.source = "preset '" + preset + "'";
  if (layers != 0 && preset != "flash" && preset != "pro")
    throw Error("--layers applies to the flash and pro presets only");
  if (preset == "flash" || preset == "pro") {
    // Real layer shapes; `layers` (1..N-1) takes a window of the real schedule from the first CSA
    // layer (real layer 2, the last hash-routed one), so one layer is one CSA layer.
    const bool pro = preset == "pro";
    c = real_config(pro);
    c.source = "preset '" + preset + "'";
    if (layers < 0 || layers > c.n_layers)
      throw Error("--layers: expected 1.." + std::to_string(c.n_layers) + " (0 = all), got " + std::to_string(layers));
    if (layers != 0 && layers != c.n_layers) {
      std::vector<int> r(c.compress_ratios.begin() + 2, c.compress_ratios.begin() + 2 + layers);
      r.push_back(0);
      c.compress_ratios = r;
      c.n_layers = layers;
      c.n_hash_layers = 1;
      c.source = "preset '" + preset + "' (" + std::to_string(layers) + " layers)";
    }
    set_drafter(c, DrafterKind::none);
  } else if (preset == "tiny") {
    // Every layer kind and a hash layer; index_topk 8 so the indexer selects from 36 tokens on.
    c.dim = 64;
    c.n_layers = 5;
    c.compress_ratios = {0, 4, 128, 4, 0, /*MTP*/ 0};
    c.n_heads = 4;
    c.head_dim = 128;
    c.q_lora_rank = 64;
    c.o_groups = 2;
    c.o_lora_rank = 32;
    c.n_routed_experts = 8;
    c.n_activated_experts = 2;
    c.moe_inter_dim = 64;
    c.index_n_heads = 8;
    c.index_topk = 8;
    c.n_hash_layers = 1;
  } else if (preset == "small") {
    // Real head geometry (Dh 512, R 64, Di 128), scaled-down width and expert count.
    c.dim = 512;
    c.n_layers = 8;
    c.compress_ratios = {0, 4, 128, 4, 128, 4, 128, 4, /*MTP*/ 0};
    c.n_heads = 8;
    c.head_dim = 512;
    c.q_lora_rank = 256;
    c.o_groups = 4;
    c.o_lora_rank = 256;
    c.n_routed_experts = 16;
    c.n_activated_experts = 4;
    c.moe_inter_dim = 256;
    c.index_n_heads = 16;
    c.index_topk = 64;
    c.n_hash_layers = 2;
  } else if (preset == "long") {
    // Narrow long-context preset for `dsv4 bench --long`: the two compressed layer kinds only
    // ([csa, hca] + MTP) with thin heads, so prefilling 1,048,576 tokens takes minutes, not days.
    // The O(L^2) terms are the indexer scan (L/4 keys per CSA token, Hi*Di each) and HCA
    // attention (L/128 entries per token, H*Dh each); Hi = 1, Di = R = 32 and H = 2, Dh = 64
    // keep both small. The state layout (window ring, compressor states, FP8/FP4 rows) is the
    // real one, only narrower.
    c.dim = 64;
    c.n_layers = 2;
    c.compress_ratios = {4, 128, /*MTP*/ 0};
    c.n_heads = 2;
    c.head_dim = 64;
    c.rope_head_dim = 32;
    c.q_lora_rank = 32;
    c.o_groups = 1;
    c.o_lora_rank = 32;
    c.n_routed_experts = 4;
    c.n_activated_experts = 2;
    c.moe_inter_dim = 32;
    c.index_n_heads = 1;
    c.index_head_dim = 32;
    c.index_topk = 64;
    c.n_hash_layers = 1;
  } else {
    throw Error("unknown preset '" + preset + "' (expected tiny, small, long, flash or pro)");
  }
  validate_config(c);
  return c;
}

void set_drafter(Config& c, DrafterKind kind, const std::string& release) {
  if (release != "april" && release != "flash-0731" && release != "pro-0813")
    throw Error("unknown release '" + release + "' (expected april, flash-0731 or pro-0813)");
  c.compress_ratios.resize(size_t(c.n_layers));
  c.dspark = DSparkConfig{};
  c.n_mtp_layers = 0;
  switch (kind) {
    case DrafterKind::none: break;
    case DrafterKind::mtp:
      c.n_mtp_layers = 1;
      c.compress_ratios.push_back(0);
      break;
    case DrafterKind::dspark: {
      c.n_mtp_layers = 1;  // what the 0731/0813 configs still say; the stages are counted instead
      c.dspark.block_size = 5;
      c.dspark.noise_token_id = 128799;
      // Real: the last three main layers ([40, 41, 42] of Flash's 43), rank 256 (Flash-0731) or
      // 512 (Pro-0813); scaled down with the width for the small presets.
      for (int s = 0; s < 3; ++s) {
        c.dspark.target_layer_ids.push_back(std::max(0, c.n_layers - 3 + s));
        c.compress_ratios.push_back(0);
      }
      const int rank = c.dim >= 4096 ? 256 : std::max(8, c.dim / 4);
      c.dspark.markov_rank = release == "pro-0813" ? 2 * rank : rank;
      break;
    }
  }
  validate_config(c);
}

// ---- config files -------------------------------------------------------------------------------

namespace {

// The shortest decimal that reads back as the same float (1e-06, not 9.999999974752427e-07).
double clean_float(float f) {
  char buf[64];
  for (int prec = 6; prec <= 9; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, double(f));
    double d = std::strtod(buf, nullptr);
    if (float(d) == f) return d;
  }
  return double(f);
}

}  // namespace

ojson config_to_hf_json(const Config& c) {
  ojson j;
  j["architectures"] = {"DeepseekV4ForCausalLM"};
  j["model_type"] = "deepseek_v4";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.dim;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = 1;
  j["head_dim"] = c.head_dim;
  j["qk_rope_head_dim"] = c.rope_head_dim;
  j["q_lora_rank"] = c.q_lora_rank;
  j["o_groups"] = c.o_groups;
  j["o_lora_rank"] = c.o_lora_rank;
  j["n_routed_experts"] = c.n_routed_experts;
  j["num_experts_per_tok"] = c.n_activated_experts;
  j["n_shared_experts"] = c.n_shared_experts;
  j["moe_intermediate_size"] = c.moe_inter_dim;
  j["sliding_window"] = c.window_size;
  j["compress_ratios"] = c.compress_ratios;
  j["index_n_heads"] = c.index_n_heads;
  j["index_head_dim"] = c.index_head_dim;
  j["index_topk"] = c.index_topk;
  j["hc_mult"] = c.hc_mult;
  j["hc_sinkhorn_iters"] = c.hc_sinkhorn_iters;
  j["hc_eps"] = clean_float(c.hc_eps);
  j["rms_norm_eps"] = clean_float(c.norm_eps);
  j["rope_theta"] = clean_float(c.rope_theta);
  j["compress_rope_theta"] = clean_float(c.compress_rope_theta);
  if (c.original_seq_len > 0) {
    ojson rs;
    rs["type"] = "yarn";
    rs["factor"] = clean_float(c.rope_factor);
    rs["original_max_position_embeddings"] = c.original_seq_len;
    rs["beta_fast"] = clean_float(c.beta_fast);
    rs["beta_slow"] = clean_float(c.beta_slow);
    j["rope_scaling"] = rs;
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["swiglu_limit"] = clean_float(c.swiglu_limit);
  j["scoring_func"] = "sqrtsoftplus";
  j["routed_scaling_factor"] = clean_float(c.route_scale);
  j["norm_topk_prob"] = true;
  j["topk_method"] = "noaux_tc";
  j["num_hash_layers"] = c.n_hash_layers;
  j["num_nextn_predict_layers"] = c.n_mtp_layers;
  put_dspark_keys(c, j);
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_id;
  j["tie_word_embeddings"] = false;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["torch_dtype"] = "bfloat16";
  j["expert_dtype"] = c.expert_dtype;
  ojson q;
  q["quant_method"] = "fp8";
  q["fmt"] = "e4m3";
  q["scale_fmt"] = "ue8m0";
  q["activation_scheme"] = "dynamic";
  q["weight_block_size"] = {128, 128};
  j["quantization_config"] = q;
  j["transformers_version"] = "4.57.1";
  return j;
}

ojson config_to_model_args_json(const Config& c) {
  ojson j;
  j["vocab_size"] = c.vocab_size;
  j["dim"] = c.dim;
  j["moe_inter_dim"] = c.moe_inter_dim;
  j["n_layers"] = c.n_layers;
  j["n_hash_layers"] = c.n_hash_layers;
  j["n_mtp_layers"] = c.n_mtp_layers;
  j["n_heads"] = c.n_heads;
  j["dtype"] = "fp8";
  j["scale_fmt"] = "ue8m0";
  j["expert_dtype"] = c.expert_dtype;
  j["n_routed_experts"] = c.n_routed_experts;
  j["n_shared_experts"] = c.n_shared_experts;
  j["n_activated_experts"] = c.n_activated_experts;
  j["score_func"] = "sqrtsoftplus";
  j["route_scale"] = clean_float(c.route_scale);
  j["swiglu_limit"] = clean_float(c.swiglu_limit);
  j["q_lora_rank"] = c.q_lora_rank;
  j["head_dim"] = c.head_dim;
  j["rope_head_dim"] = c.rope_head_dim;
  j["norm_eps"] = clean_float(c.norm_eps);
  j["o_groups"] = c.o_groups;
  j["o_lora_rank"] = c.o_lora_rank;
  j["window_size"] = c.window_size;
  j["compress_ratios"] = c.compress_ratios;
  j["compress_rope_theta"] = clean_float(c.compress_rope_theta);
  j["rope_theta"] = clean_float(c.rope_theta);
  j["original_seq_len"] = c.original_seq_len;
  j["rope_factor"] = clean_float(c.rope_factor);
  j["beta_fast"] = clean_float(c.beta_fast);
  j["beta_slow"] = clean_float(c.beta_slow);
  j["index_n_heads"] = c.index_n_heads;
  j["index_head_dim"] = c.index_head_dim;
  j["index_topk"] = c.index_topk;
  j["hc_mult"] = c.hc_mult;
  j["hc_sinkhorn_iters"] = c.hc_sinkhorn_iters;
  j["hc_eps"] = clean_float(c.hc_eps);
  put_dspark_keys(c, j);
  return j;
}

// ---- generator ----------------------------------------------------------------------------------

namespace {

constexpr int64_t kRowBlock = 128;  // one PRNG stream per 128 rows (= one FP8 block row)

struct SplitMix64 {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1]: 53 random bits.
  double uniform() { return (double(next() >> 11) + 1.0) * 0x1.0p-53; }
};

// Box-Muller pairs from one SplitMix64 stream.
struct NormalGen {
  SplitMix64 rng;
  bool has_spare = false;
  double spare = 0;
  double next() {
    if (has_spare) {
      has_spare = false;
      return spare;
    }
    const double r = std::sqrt(-2.0 * std::log(rng.uniform()));
    const double a = 2.0 * M_PI * rng.uniform();
    spare = r * std::sin(a);
    has_spare = true;
    return r * std::cos(a);
  }
};

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

// Seed of the stream for (seed, tensor, row block).
uint64_t stream_seed(uint64_t seed, uint64_t name_hash, int64_t block) {
  SplitMix64 m{seed ^ 0x6a09e667f3bcc909ull};
  uint64_t a = m.next() ^ name_hash;
  SplitMix64 m2{a + 0x3c6ef372fe94f82bull * uint64_t(block + 1)};
  return m2.next();
}

// Values of rows [r0, r0+nr) of tensor t (logical [rows, cols]) into v, from one stream.
void fill_block(const TensorSpec& t, const Config& c, uint64_t sseed, int64_t nr, float* v) {
  NormalGen g{SplitMix64{sseed}};
  const int64_t n = nr * t.cols;
  auto normal = [&](double mean, double sd) {
    for (int64_t i = 0; i < n; ++i) v[i] = float(mean + sd * g.next());
  };
  switch (t.fill) {
    case Fill::linear: normal(0, 1.0 / std::sqrt(double(t.cols))); break;
    case Fill::embed: normal(0, 1.0); break;
    case Fill::head: normal(0, 2.8 / std::sqrt(double(c.dim))); break;
    case Fill::norm: normal(1.0, 0.1); break;
    case Fill::sink: normal(0, 1.0); break;
    case Fill::ape:
    case Fill::hc_base: normal(0, 0.5); break;
    case Fill::gate_bias: normal(0, 0.1); break;
    case Fill::hc_scale:
      for (int64_t i = 0; i < n; ++i) v[i] = float(0.5 + (g.rng.uniform()));
      break;
    case Fill::tid2eid: break;  // integer table, see fill_tid2eid
  }
}

// K distinct experts per row (partial Fisher-Yates).
void fill_tid2eid(const TensorSpec& t, uint64_t sseed, int64_t nr, int64_t* out, int n_experts) {
  SplitMix64 rng{sseed};
  std::vector<int64_t> perm(static_cast<size_t>(n_experts));
  const int64_t K = t.cols;
  for (int64_t r = 0; r < nr; ++r) {
    for (int e = 0; e < n_experts; ++e) perm[size_t(e)] = e;
    for (int64_t k = 0; k < K; ++k) {
      int64_t j = k + int64_t(rng.next() % uint64_t(n_experts - k));
      std::swap(perm[size_t(k)], perm[size_t(j)]);
      out[r * K + k] = perm[size_t(k)];
    }
  }
}

// ---- encoders: one 128-row block of values -> stored bytes (+ scale bytes) ----------------------

// FP8 e4m3 with one e8m0 scale per 128x128 block (partial blocks at the edges):
// s = 2^ceil(log2(amax/448)), code = e4m3_rne(x / s).
void encode_fp8_block(const float* v, int64_t nr, int64_t cols, uint8_t* codes, uint8_t* scales) {
  for (int64_t c0 = 0, cb = 0; c0 < cols; c0 += 128, ++cb) {
    const int64_t c1 = std::min(cols, c0 + 128);
    float amax = 0;
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t i = c0; i < c1; ++i) amax = std::fmax(amax, std::fabs(v[r * cols + i]));
    const uint8_t se = e8m0_scale_for_amax(amax, 448.f, 1e-30f);
    const int e = int(se) - 127;
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t i = c0; i < c1; ++i) codes[r * cols + i] = f32_to_e4m3(std::ldexp(v[r * cols + i], -e));
    scales[cb] = se;
  }
}

// FP4 e2m1 with one e8m0 scale per 1x32; element 2j in the low nibble of byte j.
void encode_fp4_row(const float* v, int64_t cols, uint8_t* packed, uint8_t* scales) {
  for (int64_t c0 = 0; c0 < cols; c0 += 32) {
    float amax = 0;
    for (int64_t i = c0; i < c0 + 32; ++i) amax = std::fmax(amax, std::fabs(v[i]));
    const uint8_t se = fp4_scale_for_amax(amax);
    const int e = int(se) - 127;
    scales[c0 / 32] = se;
    for (int64_t i = c0; i < c0 + 32; i += 2) {
      const uint8_t lo = f32_to_e2m1(std::ldexp(v[i], -e)), hi = f32_to_e2m1(std::ldexp(v[i + 1], -e));
      packed[i / 2] = uint8_t(lo | (hi << 4));
    }
  }
}

// Stored bytes of rows [rb*128, rb*128+nr) of t: main tensor bytes into `main`, scale bytes into
// `scale` (fp8: one row of the scale grid; fp4: nr rows).
void encode_block(const TensorSpec& t, const Config& c, uint64_t seed, uint64_t name_hash, int64_t rb, int64_t nr,
                  uint8_t* main, uint8_t* scale) {
  const uint64_t ss = stream_seed(seed, name_hash, rb);
  if (t.fill == Fill::tid2eid) {
    fill_tid2eid(t, ss, nr, reinterpret_cast<int64_t*>(main), c.n_routed_experts);
    return;
  }
  std::vector<float> v(static_cast<size_t>(nr * t.cols));
  fill_block(t, c, ss, nr, v.data());
  const int64_t n = nr * t.cols;
  switch (t.quant) {
    case WeightQuant::fp8_block128: encode_fp8_block(v.data(), nr, t.cols, main, scale); return;
    case WeightQuant::fp4_block32:
      for (int64_t r = 0; r < nr; ++r)
        encode_fp4_row(&v[size_t(r * t.cols)], t.cols, main + r * (t.cols / 2), scale + r * (t.cols / 32));
      return;
    case WeightQuant::none: break;
  }
  switch (t.dtype) {
    case Dtype::f32: std::memcpy(main, v.data(), size_t(n) * 4); return;
    case Dtype::bf16: {
      auto* o = reinterpret_cast<uint16_t*>(main);
      for (int64_t i = 0; i < n; ++i) o[i] = f32_to_bf16(v[size_t(i)]);
      return;
    }
    default: throw Error("random checkpoint: no encoder for tensor '" + t.name + "' of dtype " + dtype_name(t.dtype));
  }
}

// ---- files --------------------------------------------------------------------------------------

void rename_into_place(const fs::path& tmp, const fs::path& dst) {
  std::error_code ec;
  fs::rename(tmp, dst, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error(dst.string() + ": cannot rename into place: " + ec.message());
  }
}

// Writes `text` to path atomically.
std::string read_text_file(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path.string() + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_text_file(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + tmp_suffix();
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error(path.string() + ": cannot create file");
    f.write(text.data(), std::streamsize(text.size()));
    f.close();
    if (!f) throw Error(path.string() + ": write failed");
  }
  rename_into_place(tmp, path);
}

struct Shard {
  std::string file;                 // "model-00001-of-00002.safetensors"
  std::vector<const TensorSpec*> tensors;
  int64_t bytes = 0;
};

// Splits the table in order into n >= min_shards shards of roughly equal size.
std::vector<Shard> plan_shards(const std::vector<TensorSpec>& table, const RandomCheckpointOptions& o) {
  int64_t total = 0;
  for (const auto& t : table) total += t.bytes();
  int64_t n = std::max<int64_t>(o.min_shards, (total + o.max_shard_bytes - 1) / std::max<int64_t>(1, o.max_shard_bytes));
  n = std::max<int64_t>(1, std::min<int64_t>(n, int64_t(table.size())));
  std::vector<Shard> shards(static_cast<size_t>(n));
  int64_t acc = 0;
  size_t s = 0;
  for (size_t i = 0; i < table.size(); ++i) {
    // Move on once this shard has its share, keeping at least one tensor for each later shard.
    const size_t left = table.size() - i;
    if (s + 1 < shards.size() && !shards[s].tensors.empty() &&
        (acc >= total * int64_t(s + 1) / n || left <= shards.size() - 1 - s))
      ++s;
    shards[s].tensors.push_back(&table[i]);
    shards[s].bytes += table[i].bytes();
    acc += table[i].bytes();
  }
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    shards[i].file = name;
  }
  return shards;
}

// Streams one shard: header first (all sizes are known from the table), then each tensor's
// bytes generated block by block, its scale right after it. Wider dtypes first (the safetensors
// library's order), so every tensor is aligned to its element size; the FP8/FP4 tensors and their
// e8m0 scales, all bytes, come last.
void write_shard(const Shard& sh, const fs::path& path, const Config& c, uint64_t seed) {
  std::vector<const TensorSpec*> order(sh.tensors);
  order_wider_dtypes_first(order);
  ojson header;
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t off = 0;
  auto add = [&](const std::string& name, Dtype dt, const std::vector<int64_t>& shape, int64_t bytes) {
    ojson e;
    e["dtype"] = dtype_safetensors_name(dt);
    e["shape"] = shape;
    e["data_offsets"] = {off, off + uint64_t(bytes)};
    off += uint64_t(bytes);
    header[name] = std::move(e);
  };
  for (const TensorSpec* t : order) {
    const int64_t main_bytes = t->numel() * int64_t(dtype_size(t->dtype));
    add(t->name, t->dtype, t->shape, main_bytes);
    if (t->has_scale()) add(t->scale_name(), Dtype::e8m0, t->scale_shape(), t->bytes() - main_bytes);
  }
  std::string hs = header.dump();
  while (hs.size() % 8) hs.push_back(' ');

  const fs::path tmp = path.string() + tmp_suffix();
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  if (!f) throw Error(path.string() + ": cannot create file");
  const uint64_t hlen = hs.size();
  f.write(reinterpret_cast<const char*>(&hlen), 8);
  f.write(hs.data(), std::streamsize(hs.size()));

  std::vector<uint8_t> main, scale;
  ThreadPool pool;  // the writer's own threads (checkpoint generation is not model compute)
  for (const TensorSpec* t : order) {
    const uint64_t nh = fnv1a64(t->name);
    const int64_t rows = t->rows, n_blocks = (rows + kRowBlock - 1) / kRowBlock;
    const int64_t row_bytes = t->numel() * int64_t(dtype_size(t->dtype)) / rows;
    // Scale bytes per 128-row block: fp8 one grid row; fp4 one row of [rows, cols/32] per row.
    const int64_t scale_block = t->quant == WeightQuant::fp8_block128 ? (t->cols + 127) / 128
                                : t->quant == WeightQuant::fp4_block32 ? kRowBlock * (t->cols / 32)
                                                                       : 0;
    scale.assign(size_t(t->bytes() - t->numel() * int64_t(dtype_size(t->dtype))), 0);
    // Batches of row blocks generated in parallel, written in order.
    const int64_t batch = 64;
    for (int64_t b0 = 0; b0 < n_blocks; b0 += batch) {
      const int64_t b1 = std::min(n_blocks, b0 + batch);
      const int64_t r_begin = b0 * kRowBlock, r_end = std::min(rows, b1 * kRowBlock);
      main.assign(size_t((r_end - r_begin) * row_bytes), 0);
      std::string err;
      std::mutex err_mu;
      pool.for_each_dynamic(b1 - b0, 1, [&](int64_t i, int) {
        const int64_t rb = b0 + i, r0 = rb * kRowBlock, nr = std::min(kRowBlock, rows - r0);
        try {
          encode_block(*t, c, seed, nh, rb, nr, &main[size_t((r0 - r_begin) * row_bytes)],
                       scale.empty() ? nullptr : &scale[size_t(rb * scale_block)]);
        } catch (const Error& e) {
          std::lock_guard<std::mutex> lock(err_mu);
          err = e.what();
        }
      });
      if (!err.empty()) throw Error(err);
      f.write(reinterpret_cast<const char*>(main.data()), std::streamsize(main.size()));
    }
    f.write(reinterpret_cast<const char*>(scale.data()), std::streamsize(scale.size()));
  }
  f.close();
  if (!f) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw Error(path.string() + ": write failed");
  }
  rename_into_place(tmp, path);
}

}  // namespace

RandomCheckpointInfo write_random_checkpoint(const Config& cfg, const std::string& out_dir,
                                             const RandomCheckpointOptions& opts) {
  Config c = cfg;
  validate_config(c);
  const std::vector<TensorSpec> table = tensor_table(c, /*with_drafter=*/true);
  const fs::path dir(out_dir);
  std::error_code ec;
  fs::create_directories(dir / "inference", ec);
  if (ec) throw Error(out_dir + ": cannot create directory: " + ec.message());

  RandomCheckpointInfo info;
  const std::vector<Shard> shards = plan_shards(table, opts);
  std::map<std::string, std::string> weight_map;  // sorted names, as the official index lists them
  for (const Shard& sh : shards) {
    write_shard(sh, dir / sh.file, c, opts.seed);
    for (const TensorSpec* t : sh.tensors) {
      weight_map[t->name] = sh.file;
      if (t->has_scale()) weight_map[t->scale_name()] = sh.file;
      info.n_tensors += t->n_stored();
      info.bytes += t->bytes();
      info.params += t->params();
    }
  }
  info.n_shards = int(shards.size());
  ojson index;
  index["metadata"] = {{"total_size", info.bytes}};
  index["weight_map"] = weight_map;
  write_text_file(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  ojson hf = config_to_hf_json(c);
  if (!opts.name_or_path.empty()) hf["_name_or_path"] = opts.name_or_path;
  write_text_file(dir / "config.json", hf.dump(2) + "\n");
  write_text_file(dir / "inference" / "config.json", config_to_model_args_json(c).dump(2) + "\n");
  return info;
}

namespace {
void write_drafter_config_keys(const Config& c, nlohmann::ordered_json& j, bool hf) {
  j["compress_ratios"] = c.compress_ratios;
  j[hf ? "num_nextn_predict_layers" : "n_mtp_layers"] = c.n_mtp_layers;
  put_dspark_keys(c, j);
}
}  // namespace

RandomCheckpointInfo add_random_drafter(const Config& cfg, const std::string& out_dir, uint64_t seed) {
  Config c = cfg;
  validate_config(c);
  const fs::path dir(out_dir);
  const fs::path index_path = dir / "model.safetensors.index.json";
  ojson index;
  try {
    index = ojson::parse(read_text_file(index_path));
  } catch (const ojson::exception& e) {
    throw Error(index_path.string() + ": " + e.what());
  }
  for (const auto& [name, file] : index["weight_map"].items())
    if (name.rfind("mtp.", 0) == 0) throw Error(index_path.string() + ": already has drafter tensor '" + name + "'");
  const std::vector<TensorSpec> all = tensor_table(c, /*with_drafter=*/true);
  std::vector<TensorSpec> table;
  for (const TensorSpec& t : all)
    if (t.is_drafter(c)) table.push_back(t);
  RandomCheckpointInfo info;
  if (table.empty()) return info;
  Shard sh;
  sh.file = "model-drafter.safetensors";
  for (const TensorSpec& t : table) {
    sh.tensors.push_back(&t);
    sh.bytes += t.bytes();
    index["weight_map"][t.name] = sh.file;
    if (t.has_scale()) index["weight_map"][t.scale_name()] = sh.file;
    info.n_tensors += t.n_stored();
    info.bytes += t.bytes();
    info.params += t.params();
  }
  write_shard(sh, dir / sh.file, c, seed);
  info.n_shards = 1;
  index["metadata"]["total_size"] = index["metadata"].value("total_size", int64_t(0)) + info.bytes;
  write_text_file(index_path, index.dump(2) + "\n");
  for (bool hf : {true, false}) {
    const fs::path p = hf ? dir / "config.json" : dir / "inference" / "config.json";
    if (!fs::exists(p)) continue;
    ojson j = ojson::parse(read_text_file(p));
    write_drafter_config_keys(c, j, hf);
    write_text_file(p, j.dump(2) + "\n");
  }
  return info;
}

}  // namespace dsv4::model
