// `dsv4 logits` black-box: argument and input errors end in a clear message and a non-zero exit
// (never a signal); a valid call writes float32 [n_tokens, vocab] and prints one summary line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

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

TEST(LogitsCli, ValidRunWritesAllRows) {
  LogitsRun r;
  const std::string ids = r.write_tokens("[0, 100, 200, 300, 400, 500, 600]");
  std::string out;
  const std::string args = "--model " + test::tiny_checkpoint_dir() + " --tokens " + ids + " --out " + r.root + "/l.bin";
  ASSERT_EQ(r.run(args + " --numerics f32", &out), 0) << out;
  EXPECT_EQ(fs::file_size(r.root + "/l.bin"), 7u * 129280u * 4u);
  EXPECT_NE(out.find("7 tokens x 129280 vocab"), std::string::npos) << out;
  ASSERT_EQ(r.run(args + " --numerics reference --mode chunked:3", &out), 0) << out;
  ASSERT_EQ(r.run(args + " --mode decode", &out), 0) << out;
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
