// The tiny preset checkpoint (seed 0), generated once and shared by every test process of one
// build (ctest runs each test in its own process). It lives in $TMPDIR/dsv4-tests-<uid>/, keyed by
// the size and mtime of the dsv4 binary, which is relinked whenever the library changes; copies
// for older builds are removed after a day.
#pragma once
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "engine/default_model.h"
#include "model/forward.h"
#include "model/tiny_checkpoint.h"
#include "test_util.h"
#include "text/tokenizer.h"

namespace dsv4::test {

inline std::string tiny_checkpoint_dir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    struct stat st {};
    std::string key = "nobinary";
    if (::stat(dsv4_binary().c_str(), &st) == 0)
      key = std::to_string(st.st_size) + "-" + std::to_string(st.st_mtim.tv_sec) + "-" +
            std::to_string(st.st_mtim.tv_nsec);
    const char* tmp = std::getenv("TMPDIR");
    const fs::path base = fs::path(tmp && *tmp ? tmp : "/tmp") / ("dsv4-tests-" + std::to_string(::getuid()));
    std::error_code ec;
    if (fs::is_directory(base, ec)) {
      const auto now = fs::file_time_type::clock::now();
      for (const auto& e : fs::directory_iterator(base, ec)) {
        const std::string name = e.path().filename().string();
        if (name.rfind("tiny-", 0) == 0 && name != "tiny-" + key &&
            now - fs::last_write_time(e.path(), ec) > std::chrono::hours(24))
          fs::remove_all(e.path(), ec);
      }
    }
    return engine::ensure_preset_checkpoint((base / ("tiny-" + key)).string(), "tiny", 0);
  }();
  return dir;
}

// The bytes of a two-shard checkpoint's safetensors files, concatenated (to compare checkpoints).
inline std::string shard_bytes(const std::string& dir) {
  std::string all;
  for (int i = 1; std::filesystem::exists(dir + "/model-0000" + std::to_string(i) + "-of-00002.safetensors"); ++i)
    all += read_file(dir + "/model-0000" + std::to_string(i) + "-of-00002.safetensors");
  return all;
}

// The embedded default model with its tokenizer and a reference-numerics forward pass, loaded once
// per test process (the engine and server tests run their schedulers on it).
struct EmbeddedModel {
  std::unique_ptr<model::Model> model;
  std::unique_ptr<text::Tokenizer> tok;
  std::unique_ptr<model::ForwardPass> fp;
};

inline EmbeddedModel& embedded_model() {
  static EmbeddedModel t = [] {
    EmbeddedModel x;
    const std::string dir = engine::default_model_dir();
    x.model = model::Model::load(dir);
    x.tok = std::make_unique<text::Tokenizer>(text::Tokenizer::load(dir));
    x.fp = std::make_unique<model::ForwardPass>(*x.model, model::Numerics::reference);
    return x;
  }();
  return t;
}

}  // namespace dsv4::test
