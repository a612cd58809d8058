// Broken checkpoints (issue 2): each test corrupts a copy of a freshly generated tiny checkpoint in
// one way and runs `dsv4 logits` on it. Every case must end in a clear error - a non-zero exit
// that is not a signal, with a message naming the file and the tensor or config key - never a
// crash.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tiny_fixture.h"

using namespace dsv4;
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

const char* kShard1 = "model-00001-of-00002.safetensors";
const char* kShard2 = "model-00002-of-00002.safetensors";

// A writable copy of the shared tiny checkpoint. Files are hard links where possible, so every
// edit below first removes the file and writes a new one (never writes through the link).
struct BrokenCopy {
  std::string root, dir, tokens;
  BrokenCopy() {
    root = test::make_temp_dir("dsv4broken");
    dir = root + "/ckpt";
    std::error_code ec;
    fs::copy(test::tiny_checkpoint_dir(), dir, fs::copy_options::recursive | fs::copy_options::create_hard_links, ec);
    if (ec) {
      fs::remove_all(dir);
      fs::copy(test::tiny_checkpoint_dir(), dir, fs::copy_options::recursive);
    }
    tokens = root + "/ids.json";
    std::ofstream(tokens) << "[0, 1, 2, 3, 4]";
  }
  ~BrokenCopy() { fs::remove_all(root); }
  std::string path(const std::string& f) const { return dir + "/" + f; }

  void replace(const std::string& f, const std::string& bytes) const {
    fs::remove(path(f));
    std::ofstream o(path(f), std::ios::binary);
    o.write(bytes.data(), std::streamsize(bytes.size()));
  }
  std::string shard_of(const std::string& tensor) const {
    auto j = nlohmann::json::parse(test::read_file(path("model.safetensors.index.json")));
    return j["weight_map"][tensor].get<std::string>();
  }
  // Rewrites a shard's JSON header (the data region is kept as it is).
  void edit_header(const std::string& shard, const std::function<void(ojson&)>& fn) const {
    std::string b = test::read_file(path(shard));
    uint64_t n = 0;
    std::memcpy(&n, b.data(), 8);
    ojson h = ojson::parse(b.substr(8, n));
    fn(h);
    std::string hs = h.dump();
    while (hs.size() % 8) hs.push_back(' ');
    uint64_t m = hs.size();
    std::string out(reinterpret_cast<const char*>(&m), 8);
    replace(shard, out + hs + b.substr(8 + n));
  }
  void edit_index(const std::function<void(ojson&)>& fn) const {
    ojson j = ojson::parse(test::read_file(path("model.safetensors.index.json")));
    fn(j);
    replace("model.safetensors.index.json", j.dump(2));
  }
  void edit_config(const std::function<void(ojson&)>& fn) const {
    ojson j = ojson::parse(test::read_file(path("config.json")));
    fn(j);
    replace("config.json", j.dump(2));
  }
  // Removes a tensor from its shard's header and from the index.
  void remove_tensor(const std::string& t) const {
    edit_header(shard_of(t), [&](ojson& h) { h.erase(t); });
    edit_index([&](ojson& j) { j["weight_map"].erase(t); });
  }

  // Runs `dsv4 logits` and checks the failure: exit in [1, 127], "error", every `needles` string.
  void expect_error(const std::vector<std::string>& needles) const {
    std::string out;
    const int rc = test::run_command(test::dsv4_binary() + " logits --model " + dir + " --tokens " + tokens +
                                         " --out " + root + "/logits.bin",
                                     &out);
    std::printf("  exit %d: %s", rc, out.c_str());
    EXPECT_GT(rc, 0) << out;
    EXPECT_LT(rc, 128) << "killed by a signal: " << out;
    EXPECT_NE(out.find("error"), std::string::npos) << out;
    for (const auto& n : needles) EXPECT_NE(out.find(n), std::string::npos) << "message lacks '" << n << "': " << out;
  }
};

}  // namespace

// The unmodified copy works, so every failure below comes from its corruption.
TEST(BrokenCheckpoint, IntactCopyRuns) {
  BrokenCopy b;
  std::string out;
  const int rc = test::run_command(
      test::dsv4_binary() + " logits --model " + b.dir + " --tokens " + b.tokens + " --out " + b.root + "/l.bin", &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(fs::file_size(b.root + "/l.bin"), 5u * 129280u * 4u);
}

TEST(BrokenCheckpoint, TruncatedShard) {
  BrokenCopy b;
  std::string s = test::read_file(b.path(kShard2));
  b.replace(kShard2, s.substr(0, s.size() * 6 / 10));
  b.expect_error({std::string(kShard2), "tensor '", "truncated"});
}

TEST(BrokenCheckpoint, EmptyShard) {
  BrokenCopy b;
  b.replace(kShard1, "");
  b.expect_error({std::string(kShard1), "truncated"});
}

TEST(BrokenCheckpoint, BadJsonHeader) {
  BrokenCopy b;
  std::string s = test::read_file(b.path(kShard1));
  s[8] = 'X';  // the header's opening brace
  b.replace(kShard1, s);
  b.expect_error({std::string(kShard1), "JSON header"});
}

TEST(BrokenCheckpoint, HeaderLengthPastEndOfFile) {
  BrokenCopy b;
  std::string s = test::read_file(b.path(kShard2));
  const uint64_t n = s.size() + 100;
  std::memcpy(s.data(), &n, 8);
  b.replace(kShard2, s);
  b.expect_error({std::string(kShard2), "header length"});
}

TEST(BrokenCheckpoint, WrongDtype) {
  BrokenCopy b;
  const std::string t = "layers.0.attn_norm.weight";
  b.edit_header(b.shard_of(t), [&](ojson& h) { h[t]["dtype"] = "F16"; });  // same size as BF16
  b.expect_error({b.shard_of(t), t, "expected bf16"});
}

TEST(BrokenCheckpoint, UnknownDtypeString) {
  BrokenCopy b;
  const std::string t = "layers.3.attn.kv_norm.weight";
  b.edit_header(b.shard_of(t), [&](ojson& h) { h[t]["dtype"] = "BF17"; });
  b.expect_error({b.shard_of(t), t, "unknown dtype 'BF17'"});
}

TEST(BrokenCheckpoint, WrongShape) {
  BrokenCopy b;
  const std::string t = "layers.1.attn.wkv.weight";  // e4m3 [128, 64]
  b.edit_header(b.shard_of(t), [&](ojson& h) { h[t]["shape"] = {64, 128}; });
  b.expect_error({b.shard_of(t), t, "expected [128, 64]"});
}

TEST(BrokenCheckpoint, ShapeDisagreesWithDataSize) {
  BrokenCopy b;
  const std::string t = "layers.1.attn.q_norm.weight";
  b.edit_header(b.shard_of(t), [&](ojson& h) { h[t]["shape"] = {65}; });
  b.expect_error({b.shard_of(t), t, "does not match"});
}

TEST(BrokenCheckpoint, MissingScale) {
  BrokenCopy b;
  const std::string w = "layers.1.attn.wq_a.weight", s = "layers.1.attn.wq_a.scale";
  const std::string shard = b.shard_of(s);
  b.remove_tensor(s);
  b.expect_error({shard, w, s, "missing"});
}

TEST(BrokenCheckpoint, ScaleOfWrongShape) {
  BrokenCopy b;
  const std::string s = "layers.1.attn.wq_b.scale";  // [4, 1] for wq_b [512, 64]
  b.edit_header(b.shard_of(s), [&](ojson& h) { h[s]["shape"] = {1, 4}; });
  b.expect_error({b.shard_of(s), s, "does not match FP8 weight"});
}

TEST(BrokenCheckpoint, ScaleOfWrongDtype) {
  BrokenCopy b;
  const std::string s = "layers.3.ffn.experts.5.w2.scale";
  b.edit_header(b.shard_of(s), [&](ojson& h) { h[s]["dtype"] = "U8"; });
  b.expect_error({b.shard_of(s), s, "expected e8m0"});
}

TEST(BrokenCheckpoint, MissingTensor) {
  BrokenCopy b;
  const std::string t = "layers.2.attn.compressor.ape";
  b.remove_tensor(t);
  b.expect_error({b.dir, t, "missing tensor"});
}

TEST(BrokenCheckpoint, TensorNotInIndex) {
  BrokenCopy b;
  const std::string t = "layers.4.ffn.gate.bias";
  const std::string shard = b.shard_of(t);
  b.edit_index([&](ojson& j) { j["weight_map"].erase(t); });
  b.expect_error({shard, t, "not listed in model.safetensors.index.json"});
}

TEST(BrokenCheckpoint, IndexNamesMissingShard) {
  BrokenCopy b;
  b.edit_index([](ojson& j) { j["weight_map"]["head.weight"] = "model-00003-of-00003.safetensors"; });
  b.expect_error({"model.safetensors.index.json", "model-00003-of-00003.safetensors", "missing"});
}

TEST(BrokenCheckpoint, Tid2eidExpertOutOfRange) {
  BrokenCopy b;
  const std::string t = "layers.0.ffn.gate.tid2eid";
  const std::string shard = b.shard_of(t);
  std::string s = test::read_file(b.path(shard));
  uint64_t n = 0;
  std::memcpy(&n, s.data(), 8);
  auto h = nlohmann::json::parse(s.substr(8, n));
  const uint64_t off = 8 + n + h[t]["data_offsets"][0].get<uint64_t>();
  const int64_t bad = 99;  // the tiny preset has 8 experts
  std::memcpy(s.data() + off + 5 * 2 * 8, &bad, 8);  // row 5, first choice
  b.replace(shard, s);
  b.expect_error({shard, t, "row 5", "expert 99"});
}

TEST(BrokenCheckpoint, ConfigCompressRatiosWrongLength) {
  BrokenCopy b;  // one entry short of the main layers
  b.edit_config([](ojson& j) { j["compress_ratios"].erase(j["compress_ratios"].size() - 1);
                               j["compress_ratios"].erase(j["compress_ratios"].size() - 1); });
  b.expect_error({b.path("config.json"), "compress_ratios", "entries"});
}

TEST(BrokenCheckpoint, ConfigWithoutTheMtpEntryButMtpTensors) {
  BrokenCopy b;  // a drafter-less config next to an April MTP block: the tensor is named
  b.edit_config([](ojson& j) { j["compress_ratios"].erase(j["compress_ratios"].size() - 1); });
  b.expect_error({"mtp.0.e_proj.weight", "no MTP block"});
}

TEST(BrokenCheckpoint, ConfigDSparkKeysNextToAnMtpBlock) {
  BrokenCopy b;
  b.edit_config([](ojson& j) {
    j["dspark_block_size"] = 5;
    j["dspark_noise_token_id"] = 128799;
    j["dspark_target_layer_ids"] = {2, 3, 4};
    j["dspark_markov_rank"] = 16;
    j["compress_ratios"].push_back(0);
    j["compress_ratios"].push_back(0);
  });
  b.expect_error({"mtp.0.e_proj.weight", "DSpark"});
}

TEST(BrokenCheckpoint, ConfigDSparkKeysIncomplete) {
  BrokenCopy b;
  b.edit_config([](ojson& j) { j["dspark_markov_rank"] = 16; });
  b.expect_error({b.path("config.json"), "dspark_block_size", "missing"});
}

TEST(BrokenCheckpoint, ConfigRatioThree) {
  BrokenCopy b;
  b.edit_config([](ojson& j) { j["compress_ratios"][1] = 3; });
  b.expect_error({b.path("config.json"), "compress_ratios", "allowed: 0, 4, 128"});
}

TEST(BrokenCheckpoint, ConfigNegativeDim) {
  BrokenCopy b;
  b.edit_config([](ojson& j) { j["hidden_size"] = -64; });
  b.expect_error({b.path("config.json"), "hidden_size"});
}

TEST(BrokenCheckpoint, ConfigDisagreesWithTensors) {
  BrokenCopy b;
  b.edit_config([](ojson& j) { j["hidden_size"] = 128; });
  b.expect_error({"embed.weight", "shape"});
}

TEST(BrokenCheckpoint, ConfigMissingKey) {
  BrokenCopy b;
  b.edit_config([](ojson& j) { j.erase("index_topk"); });
  b.expect_error({b.path("config.json"), "index_topk", "missing"});
}

TEST(BrokenCheckpoint, ConfigInvalidJson) {
  BrokenCopy b;
  b.replace("config.json", "{ \"hidden_size\": 64, oops");
  b.expect_error({b.path("config.json"), "invalid JSON"});
}

TEST(BrokenCheckpoint, NoConfigAtAll) {
  BrokenCopy b;
  fs::remove(b.path("config.json"));
  fs::remove_all(b.path("inference"));
  b.expect_error({b.dir, "config.json"});
}
