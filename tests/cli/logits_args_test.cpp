// `dsv4 logits` black-box: argument and input errors end in a clear message and a non-zero exit
// (never a signal); a valid call writes float32 [n_tokens, vocab], the same in every mode, and
// prints one summary line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "test_util.h"
#include "tiny_fixture.h"

using namespace dsv4;
namespace fs = std::filesystem;

namespace {

struct LogitsRun {
  std::string root = test::make_temp_dir("dsv4logits");
  ~LogitsRun() { fs::remove_all(root); }
  std::string write_tokens(const std::string& json) const {
    const std::string p = root + "/ids.json";
    std::ofstream(p) << json;
    return p;
  }
  int run(const std::string& args, std::string* out) const {
    return test::run_command(test::dsv4_binary() + " logits " + args, out);
  }
  void expect_error(const std::string& args, const std::vector<std::string>& needles) const {
    std::string out;
    const int rc = run(args, &out);
    EXPECT_GT(rc, 0) << args << "\n" << out;
    EXPECT_LT(rc, 128) << "signal: " << args << "\n" << out;
    for (const auto& n : needles) EXPECT_NE(out.find(n), std::string::npos) << "lacks '" << n << "': " << out;
  }
};

}  // namespace

std::vector<float> read_floats(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<float> v(fs::file_size(path) / sizeof(float));
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  return v;
}

// Every mode writes the same logits: reference numerics are bit-exact between one-shot prefill,
// chunked prefill and one-token decode (tests/cache/seq_state_test.cpp); --numerics reaches the
// model (f32 differs); the summary line names the last row's argmax as it is in the file.
TEST(LogitsCli, ValidRunWritesAllRows) {
  LogitsRun r;
  const std::string ids = r.write_tokens("[0, 100, 200, 300, 400, 500, 600]");
  const size_t V = 129280;
  std::string out;
  const std::string args = "--model " + test::tiny_checkpoint_dir() + " --tokens " + ids + " --out " + r.root;
  ASSERT_EQ(r.run(args + "/f32.bin --numerics f32", &out), 0) << out;
  EXPECT_EQ(fs::file_size(r.root + "/f32.bin"), 7u * V * 4u);
  EXPECT_NE(out.find("7 tokens x 129280 vocab"), std::string::npos) << out;
  ASSERT_EQ(r.run(args + "/prefill.bin --numerics reference --mode prefill", &out), 0) << out;
  const std::vector<float> ref = read_floats(r.root + "/prefill.bin");
  ASSERT_EQ(ref.size(), 7u * V);
  const size_t last = size_t(std::max_element(ref.end() - long(V), ref.end()) - (ref.end() - long(V)));
  EXPECT_NE(out.find("last argmax=" + std::to_string(last) + " "), std::string::npos) << out;
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_TRUE(std::isfinite(ref[i])) << "logit " << i;
  EXPECT_NE(std::vector<float>(ref.begin(), ref.begin() + long(V)), std::vector<float>(ref.end() - long(V), ref.end()))
      << "the first and last rows are equal";
  EXPECT_NE(read_floats(r.root + "/f32.bin"), ref) << "--numerics f32 gave the reference logits";
  ASSERT_EQ(r.run(args + "/chunked.bin --numerics reference --mode chunked:3", &out), 0) << out;
  EXPECT_EQ(read_floats(r.root + "/chunked.bin"), ref) << "chunked:3 differs from prefill";
  ASSERT_EQ(r.run(args + "/decode.bin --mode decode", &out), 0) << out;
  EXPECT_EQ(read_floats(r.root + "/decode.bin"), ref) << "decode differs from prefill";
}

TEST(LogitsCli, MissingTokenFile) {
  LogitsRun r;
  r.expect_error("--model " + test::tiny_checkpoint_dir() + " --tokens " + r.root + "/nope.json --out " + r.root +
                     "/l.bin",
                 {"nope.json"});
}

TEST(LogitsCli, MissingModelDir) {
  LogitsRun r;
  const std::string ids = r.write_tokens("[0, 1]");
  r.expect_error("--model " + r.root + "/no-model --tokens " + ids + " --out " + r.root + "/l.bin", {"no-model"});
}

TEST(LogitsCli, MissingRequiredOption) {
  LogitsRun r;
  const std::string ids = r.write_tokens("[0, 1]");
  r.expect_error("--tokens " + ids + " --out " + r.root + "/l.bin", {"--model"});
}

TEST(LogitsCli, BadNumerics) {
  LogitsRun r;
  const std::string ids = r.write_tokens("[0, 1]");
  r.expect_error("--model " + test::tiny_checkpoint_dir() + " --tokens " + ids + " --out " + r.root +
                     "/l.bin --numerics bf16",
                 {"--numerics", "bf16"});
}

TEST(LogitsCli, BadMode) {
  LogitsRun r;
  const std::string ids = r.write_tokens("[0, 1]");
  const std::string base = "--model " + test::tiny_checkpoint_dir() + " --tokens " + ids + " --out " + r.root + "/l.bin";
  r.expect_error(base + " --mode sideways", {"--mode", "sideways"});
  r.expect_error(base + " --mode chunked:0", {"chunked:0"});
  r.expect_error(base + " --mode chunked:x", {"chunked:x"});
}

TEST(LogitsCli, BadTokenFiles) {
  LogitsRun r;
  const std::string base = "--model " + test::tiny_checkpoint_dir() + " --out " + r.root + "/l.bin --tokens ";
  r.expect_error(base + r.write_tokens("[0, 1,"), {"ids.json", "invalid JSON"});
  r.expect_error(base + r.write_tokens("{\"ids\": [1]}"), {"ids.json"});
  r.expect_error(base + r.write_tokens("[0, \"a\"]"), {"ids.json"});
  r.expect_error(base + r.write_tokens("[]"), {"ids.json"});
  r.expect_error(base + r.write_tokens("[0, 200000]"), {"200000", "vocabulary"});
  r.expect_error(base + r.write_tokens("[-1]"), {"ids.json"});
}

TEST(LogitsCli, UnwritableOutput) {
  LogitsRun r;
  const std::string ids = r.write_tokens("[0, 1]");
  r.expect_error("--model " + test::tiny_checkpoint_dir() + " --tokens " + ids + " --out " + r.root + "/no/such/dir/l.bin",
                 {"l.bin"});
}

// Issue 14: --expert-cache-mb reaches the model: 0 MiB streams the experts through a 1-slot cache
// (start-up says so) and the logits are the same bits as the resident default; decode mode runs
// every position as its own step, so experts are evicted and read again.
TEST(LogitsCli, ExpertCacheBudgetStreamsWithTheSameLogits) {
  LogitsRun r;
  const std::string ids = r.write_tokens("[0, 100, 200, 300, 400, 500, 600]");
  const std::string args = "--model " + test::tiny_checkpoint_dir() + " --tokens " + ids + " --mode decode --out " + r.root;
  std::string out;
  ASSERT_EQ(r.run(args + "/resident.bin", &out), 0) << out;
  EXPECT_NE(out.find("logits: experts: resident"), std::string::npos) << out;
  ASSERT_EQ(r.run(args + "/streamed.bin --expert-cache-mb 0", &out), 0) << out;
  EXPECT_NE(out.find("logits: experts: streamed from disk"), std::string::npos) << out;
  EXPECT_NE(out.find("= 1 slots"), std::string::npos) << out;
  const std::vector<float> a = read_floats(r.root + "/resident.bin"), b = read_floats(r.root + "/streamed.bin");
  ASSERT_EQ(a.size(), 7u * 129280u);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}
