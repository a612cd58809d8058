// `dsv4 inspect --model DIR | --config FILE.json [--json] [--context N]`: what a model is, from
// its config alone or from a whole checkpoint: config summary, layer schedule, tensors by dtype,
// parameter counts (total / MTP / active per token, V4-ARCH §1.2) and KV-cache bytes per token
// and per sequence (V4-ARCH §3.3). All figures come from model/model_stats.h.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "model/model_stats.h"
#include "model/weights.h"

namespace dsv4::cli {

namespace {

using ojson = nlohmann::ordered_json;
using model::AttnKind;
using model::KvFormat;

struct InspectArgs {
  std::string model, config;
  ModelLoadArgs load;
  bool json = false;
  int64_t context = int64_t(1) << 20;
};

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// v with n significant digits (284.33, 1573.0, 13.3).
std::string sig(double v, int n) {
  const int mag = v > 0 ? int(std::floor(std::log10(v))) : 0;
  const int dec = std::max(0, n - 1 - mag);
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", dec, v);
  return b;
}

// A parameter count in B (>= 1e9) or M, with n significant digits.
std::string params_str(int64_t n, int digits) {
  if (n >= 1000000000) return sig(double(n) / 1e9, digits) + " B";
  if (n >= 1000000) return sig(double(n) / 1e6, digits) + " M";
  return sig(double(n) / 1e3, digits) + " K";
}

// 3450, 4939.5, 4.5: one decimal at most, none when whole.
std::string bytes_per_token_str(double b) {
  std::string s = fmt("%.1f", b);
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  return s;
}

std::string grouped(int64_t v) {  // 1,048,576
  std::string s = std::to_string(v), r;
  int n = 0;
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    if (n && n % 3 == 0 && *it != '-') r.insert(r.begin(), ',');
    r.insert(r.begin(), *it);
    ++n;
  }
  return r;
}

std::string size_str(int64_t b) {
  if (b >= int64_t(1) << 30) return fmt("%.1f GB", double(b) / 1e9) + fmt(" (%.2f GiB)", double(b) / double(1 << 30));
  if (b >= int64_t(1) << 20) return fmt("%.1f MB", double(b) / 1e6) + fmt(" (%.2f MiB)", double(b) / double(1 << 20));
  return grouped(b) + " B";
}

constexpr KvFormat kFormats[] = {KvFormat::native, KvFormat::native_scales, KvFormat::bf16};
constexpr AttnKind kKinds[] = {AttnKind::swa, AttnKind::csa, AttnKind::hca};

ojson totals_json(const model::TensorTotals& t) {
  ojson j;
  j["count"] = t.count;
  j["bytes"] = t.bytes;
  ojson d = ojson::object();
  for (const auto& [name, e] : t.by_dtype) d[name] = {{"count", e.count}, {"bytes", e.bytes}};
  j["by_dtype"] = d;
  return j;
}

model::TensorTotals checkpoint_totals(const model::Model& m) {
  model::TensorTotals t;
  for (const auto& [name, e] : m.checkpoint().entries()) {
    auto& d = t.by_dtype[dtype_safetensors_name(e.view.dtype)];
    ++d.count;
    d.bytes += int64_t(e.view.nbytes());
    ++t.count;
    t.bytes += int64_t(e.view.nbytes());
  }
  return t;
}

ojson build_report(const model::Config& c, const std::string& source, const model::Model* m, int64_t context) {
  ojson j;
  j["source"] = source;
  j["mode"] = m ? "model" : "config";
  ojson cfg;
  cfg["hidden_size"] = c.dim;
  cfg["num_hidden_layers"] = c.n_layers;
  cfg["num_attention_heads"] = c.n_heads;
  cfg["head_dim"] = c.head_dim;
  cfg["qk_rope_head_dim"] = c.rope_head_dim;
  cfg["q_lora_rank"] = c.q_lora_rank;
  cfg["o_groups"] = c.o_groups;
  cfg["o_lora_rank"] = c.o_lora_rank;
  cfg["n_routed_experts"] = c.n_routed_experts;
  cfg["num_experts_per_tok"] = c.n_activated_experts;
  cfg["n_shared_experts"] = c.n_shared_experts;
  cfg["moe_intermediate_size"] = c.moe_inter_dim;
  cfg["vocab_size"] = c.vocab_size;
  cfg["sliding_window"] = c.window_size;
  cfg["index_n_heads"] = c.index_n_heads;
  cfg["index_head_dim"] = c.index_head_dim;
  cfg["index_topk"] = c.index_topk;
  cfg["hc_mult"] = c.hc_mult;
  cfg["hc_sinkhorn_iters"] = c.hc_sinkhorn_iters;
  cfg["rope_theta"] = c.rope_theta;
  cfg["compress_rope_theta"] = c.compress_rope_theta;
  cfg["rope_factor"] = c.rope_factor;
  cfg["original_seq_len"] = c.original_seq_len;
  cfg["swiglu_limit"] = c.swiglu_limit;
  cfg["routed_scaling_factor"] = c.route_scale;
  cfg["num_hash_layers"] = c.n_hash_layers;
  cfg["num_nextn_predict_layers"] = c.n_mtp_layers;
  cfg["expert_dtype"] = c.expert_dtype;
  model::put_dspark_keys(c, cfg);
  j["config"] = cfg;

  ojson layers = ojson::array();
  for (int l = 0; l < c.n_blocks(); ++l) {
    ojson e;
    e["layer"] = l >= c.n_layers ? ojson("mtp." + std::to_string(l - c.n_layers)) : ojson(l);
    e["kind"] = model::attn_kind_name(c.attn_kind(l));
    e["ratio"] = c.compress_ratio(l);
    e["hash"] = c.is_hash_layer(l);
    layers.push_back(e);
  }
  j["layers"] = layers;
  j["layer_counts"] = {{"swa", c.count_layers(AttnKind::swa)},
                       {"csa", c.count_layers(AttnKind::csa)},
                       {"hca", c.count_layers(AttnKind::hca)}};

  ojson tensors;
  tensors["expected"] = totals_json(model::expected_tensor_totals(c, true));
  if (m) {
    tensors["checkpoint"] = totals_json(checkpoint_totals(*m));
    tensors["unused"] = m->unused_tensors();
  }
  j["tensors"] = tensors;

  const model::ParamCounts p = model::count_params(c);
  // The drafter: what the config describes, and (with a checkpoint) what was loaded.
  ojson dr;
  dr["kind"] = model::drafter_kind_name(c.drafter_kind());
  dr["blocks"] = c.drafter_kind() == model::DrafterKind::none ? 0 : c.n_drafter_blocks();
  dr["params"] = p.drafter;
  if (m) dr["loaded"] = model::drafter_kind_name(m->weights().drafter);
  if (c.dspark.present()) dr["target_layer_ids"] = c.dspark.target_layer_ids;
  j["drafter"] = dr;
  j["params"] = {{"total_main", p.total_main()},   {"drafter", p.drafter},
                 {"total_with_drafter", p.total_with_drafter()}, {"active", p.active},
                 {"embed", p.embed},               {"head", p.head},
                 {"dense", p.dense},               {"shared_expert", p.shared_expert},
                 {"routed_expert", p.routed_expert}, {"tid2eid_entries", p.tid2eid}};

  ojson kv;
  kv["context"] = context;
  ojson formats;
  for (KvFormat f : kFormats) {
    const model::KvLayout lay = model::kv_layout(c, f);
    const model::KvStateBytes st = model::kv_state_bytes(c, f, context);
    ojson e;
    e["entry_bytes"] = lay.entry_bytes;
    e["index_key_bytes"] = lay.index_key_bytes;
    ojson per_kind;
    for (AttnKind k : kKinds) per_kind[model::attn_kind_name(k)] = model::kv_bytes_per_token(c, k, f);
    e["bytes_per_token_per_layer"] = per_kind;
    e["bytes_per_token"] = model::kv_bytes_per_token(c, f);
    e["window_bytes"] = st.window;
    e["state_bytes"] = st.total();
    e["state_gib"] = double(st.total()) / double(1 << 30);
    formats[model::kv_format_name(f)] = e;
  }
  kv["formats"] = formats;
  kv["compressor_state_bytes"] = model::compressor_state_bytes(c);
  j["kv"] = kv;
  return j;
}

void print_text(const model::Config& c, const ojson& r, const model::Model* m) {
  std::string o;
  auto line = [&](const std::string& s) { o += s + "\n"; };
  line(std::string(m ? "model" : "config") + ": " + r["source"].get<std::string>());
  line("  shape         D=" + std::to_string(c.dim) + ", " + std::to_string(c.n_layers) + " layers, " +
       std::to_string(c.n_heads) + " heads x " + std::to_string(c.head_dim) + " (rope " +
       std::to_string(c.rope_head_dim) + "), q rank " + std::to_string(c.q_lora_rank) + ", output " +
       std::to_string(c.o_groups) + " groups x " + std::to_string(c.o_lora_rank) + ", vocab " +
       std::to_string(c.vocab_size));
  line("  moe           " + std::to_string(c.n_routed_experts) + " routed experts (" +
       std::to_string(c.n_activated_experts) + " per token, " + c.expert_dtype + ") + " +
       std::to_string(c.n_shared_experts) + " shared, width " + std::to_string(c.moe_inter_dim) + ", " +
       std::to_string(c.n_hash_layers) + " hash layers, route scale " + fmt("%g", c.route_scale) +
       ", swiglu limit " + fmt("%g", c.swiglu_limit));
  line("  attention     window " + std::to_string(c.window_size) + ", indexer " + std::to_string(c.index_n_heads) +
       " heads x " + std::to_string(c.index_head_dim) + " top-" + std::to_string(c.index_topk) + ", mHC " +
       std::to_string(c.hc_mult) + " streams / " + std::to_string(c.hc_sinkhorn_iters) + " Sinkhorn iterations");
  line("  rope          theta " + fmt("%g", c.rope_theta) + " (ratio 0); " + fmt("%g", c.compress_rope_theta) +
       (c.original_seq_len > 0 ? " + YaRN x" + fmt("%g", c.rope_factor) + " from " + std::to_string(c.original_seq_len)
                               : std::string()) +
       " (ratio 4/128)");
  {
    const auto& d = r["drafter"];
    std::string s = "  drafter       ";
    switch (c.drafter_kind()) {
      case model::DrafterKind::none: s += "none"; break;
      case model::DrafterKind::mtp: s += "MTP block (April release), " + std::to_string(c.n_drafter_blocks()) + " block"; break;
      case model::DrafterKind::dspark: {
        std::string ids;
        for (int id : c.dspark.target_layer_ids) ids += (ids.empty() ? "" : ", ") + std::to_string(id);
        s += "DSpark (0731/0813), " + std::to_string(c.dspark.n_stages()) + " stages on target layers [" + ids +
             "], block " + std::to_string(c.dspark.block_size) + ", Markov rank " +
             std::to_string(c.dspark.markov_rank);
        break;
      }
    }
    if (c.drafter_kind() != model::DrafterKind::none) {
      s += ", " + params_str(d["params"].get<int64_t>(), 4) + " params";
      if (m) s += m->weights().drafter == c.drafter_kind() ? " (loaded)" : " (absent from checkpoint)";
    }
    line(s);
  }

  line("");
  line("layer schedule (SWA / CSA / HCA = " + std::to_string(c.count_layers(AttnKind::swa)) + " / " +
       std::to_string(c.count_layers(AttnKind::csa)) + " / " + std::to_string(c.count_layers(AttnKind::hca)) + "):");
  line("  layer  kind  ratio  routing");
  for (const auto& e : r["layers"]) {
    std::string id = e["layer"].is_string() ? e["layer"].get<std::string>() : std::to_string(e["layer"].get<int>());
    char b[96];
    std::snprintf(b, sizeof b, "  %5s  %-4s  %5d  %s", id.c_str(), e["kind"].get<std::string>().c_str(),
                  e["ratio"].get<int>(), e["hash"].get<bool>() ? "hash (tid2eid)" : "top-k");
    line(b);
  }

  line("");
  auto print_totals = [&](const char* title, const ojson& t) {
    line(title);
    for (const auto& [name, e] : t["by_dtype"].items()) {
      char b[128];
      std::snprintf(b, sizeof b, "  %-8s %9s tensors  %s", name.c_str(), grouped(e["count"].get<int64_t>()).c_str(),
                    size_str(e["bytes"].get<int64_t>()).c_str());
      line(b);
    }
    char b[128];
    std::snprintf(b, sizeof b, "  %-8s %9s tensors  %s", "total", grouped(t["count"].get<int64_t>()).c_str(),
                  size_str(t["bytes"].get<int64_t>()).c_str());
    line(b);
  };
  if (m) {
    print_totals("tensors in the checkpoint:", r["tensors"]["checkpoint"]);
    const auto& unused = r["tensors"]["unused"];
    if (!unused.empty()) line("  unused by the loader: " + std::to_string(unused.size()) + " tensors");
  } else {
    print_totals("tensors a checkpoint holds (expected from the config, incl. the drafter):", r["tensors"]["expected"]);
  }

  const auto& p = r["params"];
  auto pl = [&](const char* label, int64_t n, int digits, const char* prefix = "") {
    char b[160];
    std::snprintf(b, sizeof b, "  %-34s %s%s  (%s)", label, prefix, params_str(n, digits).c_str(), grouped(n).c_str());
    line(b);
  };
  line("");
  line("parameters (logical weights; FP4 counts 2 per byte, scales and tid2eid excluded):");
  pl("total, main model (excl. drafter)", p["total_main"].get<int64_t>(), 5);
  pl("  embed + head", p["embed"].get<int64_t>() + p["head"].get<int64_t>(), 5);
  pl("  attention, router, norms, mHC", p["dense"].get<int64_t>(), 5);
  pl("  shared experts", p["shared_expert"].get<int64_t>(), 5);
  pl("  routed experts", p["routed_expert"].get<int64_t>(), 5);
  pl("drafter", p["drafter"].get<int64_t>(), 5);
  pl("total incl. drafter", p["total_with_drafter"].get<int64_t>(), 5);
  pl("active per token", p["active"].get<int64_t>(), 3, "≈");

  const auto& kv = r["kv"];
  const auto& nat = kv["formats"]["native"];
  line("");
  line("kv cache, native format (entry " + std::to_string(nat["entry_bytes"].get<int64_t>()) + " B = " +
       std::to_string(c.nope_head_dim()) + " e4m3 + " + std::to_string(c.rope_head_dim) + " bf16; index key " +
       std::to_string(nat["index_key_bytes"].get<int64_t>()) + " B = " + std::to_string(c.index_head_dim) +
       " e2m1):");
  line("  kind  layers  window B/layer  growing B/token/layer  growing B/token");
  const int64_t window_b = int64_t(c.window_size) * nat["entry_bytes"].get<int64_t>();
  for (AttnKind k : kKinds) {
    const int n = c.count_layers(k);
    const double per = nat["bytes_per_token_per_layer"][model::attn_kind_name(k)].get<double>();
    char b[160];
    std::snprintf(b, sizeof b, "  %-4s  %6d  %14s  %21s  %15s", model::attn_kind_name(k), n, grouped(window_b).c_str(),
                  bytes_per_token_str(per).c_str(), bytes_per_token_str(per * n).c_str());
    line(b);
  }
  const int64_t ctx = kv["context"].get<int64_t>();
  const auto& sc = kv["formats"]["native+scales"];
  const auto& bf = kv["formats"]["bf16"];
  line("  growing KV bytes per token: " + bytes_per_token_str(nat["bytes_per_token"].get<double>()) +
       " B   (with e8m0 scales " + bytes_per_token_str(sc["bytes_per_token"].get<double>()) + " B; all bf16 " +
       bytes_per_token_str(bf["bytes_per_token"].get<double>()) + " B)");
  line("  KV state at " + grouped(ctx) + " tokens incl. windows: " + fmt("%.2f", nat["state_gib"].get<double>()) +
       " GiB   (with scales " + fmt("%.2f", sc["state_gib"].get<double>()) + " GiB; all bf16 " +
       fmt("%.2f", bf["state_gib"].get<double>()) + " GiB)");
  line("  compressor states (fp32, fixed per sequence): " +
       fmt("%.1f MiB", double(kv["compressor_state_bytes"].get<int64_t>()) / double(1 << 20)));
  std::fwrite(o.data(), 1, o.size(), stdout);
}

void run_inspect(const InspectArgs& a) {
  if (a.model.empty() == a.config.empty()) throw Error("inspect: give exactly one of --model DIR or --config FILE");
  if (a.context < 0) throw Error("inspect: --context must be >= 0");
  std::unique_ptr<model::Model> m;
  model::Config c;
  std::string source;
  if (!a.model.empty()) {
    m = load_model(a.model, a.load, nullptr);  // stdout/stderr are the report
    c = m->config();
    source = a.model;
  } else {
    c = model::config_from_file(a.config);
    source = a.config;
  }
  const ojson r = build_report(c, source, m.get(), a.context);
  if (a.json) {
    const std::string s = r.dump(2) + "\n";
    std::fwrite(s.data(), 1, s.size(), stdout);
  } else {
    print_text(c, r, m.get());
  }
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  auto* cmd = app.add_subcommand("inspect", "Summarise a checkpoint or a config: layers, tensors, parameters, KV bytes");
  auto* om = cmd->add_option("--model", args->model, "checkpoint directory (loads and checks every tensor)");
  add_model_load_options(cmd, args->load);
  auto* oc = cmd->add_option("--config", args->config, "a config.json (HF keys) or inference/config.json alone");
  om->excludes(oc);
  cmd->add_flag("--json", args->json, "print the report as JSON");
  cmd->add_option("--context", args->context, "context length for the KV state total")->capture_default_str();
  cmd->callback([args] { run_inspect(*args); });
}

}  // namespace dsv4::cli
