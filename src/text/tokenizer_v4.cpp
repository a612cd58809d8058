// dsv4 text: writing a DeepSeek-V4 tokenizer.json from the V3 file (assets/tokenizer/README.md).
//
// V4 tokenizes ordinary text exactly like V3 (API-NOTES §1.4); only the added tokens differ: V3
// has ids 0-2 and 128000..128814, V4 has 1283 added tokens covering 0..129279. The V4 ids we know
// are overlaid by name; every other new id becomes a special placeholder, continuing V3's
// `<｜place▁holder▁no▁N｜>` numbering (N = id - 128000). Swap in the real V4 file when a
// checkpoint ships one.
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/tokenizer.h"

namespace dsv4::text {

namespace {

constexpr int32_t kV3LastAdded = 128814;
constexpr int32_t kV4LastId = 129279;

// Named V4 tokens beyond V3's range (API-NOTES §0). Flags follow V3's chat tokens
// (<｜User｜> etc.): normalized, not special.
const std::map<int32_t, std::string>& v4_named_tokens() {
  static const std::map<int32_t, std::string> m = {
      {128821, "<think>"},
      {128822, "</think>"},
      {128825, "｜DSML｜"},
      {128828, "<｜latest_reminder｜>"},
      {128829, "<｜action｜>"},
      {128830, "<｜query｜>"},
      {128831, "<｜authority｜>"},
      {128832, "<｜domain｜>"},
      {128836, "<｜title｜>"},
      {128845, "<｜read_url｜>"},
      {129279, "<｜image｜>"},
  };
  return m;
}

// V3 ids that V4 keeps with the same meaning; the input must have them.
const std::map<int32_t, std::string>& v3_kept_tokens() {
  static const std::map<int32_t, std::string> m = {
      {0, "<｜begin▁of▁sentence｜>"}, {1, "<｜end▁of▁sentence｜>"}, {2, "<｜▁pad▁｜>"},
      {128803, "<｜User｜>"},         {128804, "<｜Assistant｜>"},
  };
  return m;
}

nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw Error(p.string() + ": cannot open file");
  try {
    return nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw Error(p.string() + ": bad JSON: " + e.what());
  }
}

void write_json(const std::filesystem::path& p, const nlohmann::json& j, int indent) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  if (!f) throw Error(p.string() + ": cannot create file");
  f << j.dump(indent) << '\n';
  f.close();
  if (!f) throw Error(p.string() + ": write error");
}

nlohmann::json added_token(int32_t id, const std::string& content, bool special, bool normalized) {
  return {{"id", id},          {"content", content},       {"single_word", false},
          {"lstrip", false},   {"rstrip", false},          {"normalized", normalized},
          {"special", special}};
}

}  // namespace

void write_v4_tokenizer(const std::string& v3_tokenizer_dir, const std::string& out_dir) {
  namespace fs = std::filesystem;
  const fs::path in_json = fs::path(v3_tokenizer_dir) / "tokenizer.json";
  const fs::path in_cfg = fs::path(v3_tokenizer_dir) / "tokenizer_config.json";
  nlohmann::json tok = read_json(in_json);
  if (!tok.is_object() || !tok.contains("added_tokens") || !tok["added_tokens"].is_array())
    throw Error(in_json.string() + ": no 'added_tokens' array");

  // Keep the V3 added tokens (ids up to 128814), then append the V4 range.
  nlohmann::json added = nlohmann::json::array();
  std::map<int32_t, std::string> seen;
  for (const auto& t : tok["added_tokens"]) {
    int32_t id = t.value("id", -1);
    if (id < 0) throw Error(in_json.string() + ": added token without an id: " + t.dump());
    if (id > kV3LastAdded) continue;
    seen[id] = t.value("content", "");
    added.push_back(t);
  }
  for (const auto& [id, content] : v3_kept_tokens()) {
    auto it = seen.find(id);
    if (it == seen.end() || it->second != content)
      throw Error(in_json.string() + ": added token " + std::to_string(id) + " is '" +
                  (it == seen.end() ? std::string("<missing>") : it->second) + "', expected '" +
                  content + "' (not a DeepSeek-V3 tokenizer)");
  }
  const auto& named = v4_named_tokens();
  for (int32_t id = kV3LastAdded + 1; id <= kV4LastId; ++id) {
    if (auto it = named.find(id); it != named.end())
      added.push_back(added_token(id, it->second, /*special=*/false, /*normalized=*/true));
    else
      added.push_back(added_token(id, "<｜place▁holder▁no▁" + std::to_string(id - 128000) + "｜>",
                                  /*special=*/true, /*normalized=*/false));
  }
  tok["added_tokens"] = std::move(added);

  nlohmann::json cfg = nlohmann::json::object();
  if (fs::is_regular_file(in_cfg)) {
    nlohmann::json v3cfg = read_json(in_cfg);
    for (const char* key : {"bos_token", "eos_token", "pad_token", "legacy", "sp_model_kwargs"})
      if (v3cfg.contains(key)) cfg[key] = v3cfg[key];
  }
  if (!cfg.contains("bos_token")) cfg["bos_token"] = "<｜begin▁of▁sentence｜>";
  if (!cfg.contains("eos_token")) cfg["eos_token"] = "<｜end▁of▁sentence｜>";
  if (!cfg.contains("pad_token")) cfg["pad_token"] = "<｜end▁of▁sentence｜>";
  cfg["add_bos_token"] = false;  // V4: the prompt renderer writes BOS itself
  cfg["add_eos_token"] = false;
  cfg["clean_up_tokenization_spaces"] = false;
  cfg["model_max_length"] = 1048576;
  cfg["unk_token"] = nullptr;
  cfg["tokenizer_class"] = "PreTrainedTokenizerFast";
  // No chat_template: V4 ships a Python encoder instead (API-NOTES §1.3).

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw Error(out_dir + ": cannot create directory: " + ec.message());
  write_json(fs::path(out_dir) / "tokenizer.json", tok, -1);
  write_json(fs::path(out_dir) / "tokenizer_config.json", cfg, 2);
}

}  // namespace dsv4::text
