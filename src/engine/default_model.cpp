// Complete preset checkpoints generated on first use (see default_model.h).
#include "engine/default_model.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/log.h"
#include "core/temp_name.h"
#include "model/tiny_checkpoint.h"
#include "text/embedded_tokenizer.h"

namespace dsv4::engine {

namespace fs = std::filesystem;

std::string ensure_preset_checkpoint(const std::string& dir, const std::string& preset, uint64_t seed) {
  fs::path final_dir(dir);
  if (final_dir.filename().empty()) final_dir = final_dir.parent_path();  // "dir/" -> "dir"
  // The directory only ever appears complete (rename below), so its existence is the check.
  if (fs::is_regular_file(final_dir / "model.safetensors.index.json")) return final_dir.string();
  const model::Config c = model::preset_config(preset);
  std::error_code ec;
  if (final_dir.has_parent_path()) {
    fs::create_directories(final_dir.parent_path(), ec);
    if (ec) throw Error(final_dir.parent_path().string() + ": cannot create directory: " + ec.message());
  }
  const fs::path tmp = final_dir.string() + tmp_suffix();
  try {
    model::RandomCheckpointOptions o;
    o.seed = seed;
    model::write_random_checkpoint(c, tmp.string(), o);
    text::write_embedded_v4_tokenizer(tmp.string());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    const int err = errno;
    fs::remove_all(tmp, ec);
    // Another process won the race: use its copy.
    if (!fs::is_regular_file(final_dir / "model.safetensors.index.json"))
      throw Error(final_dir.string() + ": cannot create the checkpoint: " + std::strerror(err));
  }
  return final_dir.string();
}

namespace {
fs::path model_cache_base() {
  if (const char* h = std::getenv("DSV4_HOME"); h && *h) return h;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "dsv4";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "dsv4";
  throw Error("default model: none of DSV4_HOME, XDG_CACHE_HOME, HOME is set; pass --model DIR");
}

std::string cached_preset_dir(const std::string& name, const std::string& preset, const char* what) {
  const fs::path dir = model_cache_base() / name;
  if (!fs::is_regular_file(dir / "model.safetensors.index.json"))
    log::info("writing %s (%s preset, seed 0) to %s", what, preset.c_str(), dir.c_str());
  return ensure_preset_checkpoint(dir.string(), preset, 0);
}
}  // namespace

std::string default_model_dir() { return cached_preset_dir("default-tiny-v1", "tiny", "the default model"); }

std::string preset_model_dir(const std::string& preset) {
  model::preset_config(preset);  // throws for an unknown name before anything is written
  return cached_preset_dir(preset + "-v1", preset, "the model");
}

}  // namespace dsv4::engine
