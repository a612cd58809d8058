// `dsv4 tokenize` / `dsv4 detokenize`, run as the built binary.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace dsv4::test {
namespace {

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string model_dir() { return assets_path("tokenizer/deepseek-v3"); }
std::string cases_file() { return testdata_path("tokenizer/tokenizer_cases.jsonl"); }

#define REQUIRE_DATA()                                                                  \
  do {                                                                                  \
    if (!std::filesystem::exists(model_dir() + "/tokenizer.json") ||                    \
        !std::filesystem::exists(cases_file()))                                         \
      GTEST_SKIP() << "MISSING tokenizer asset or cases under " << model_dir() << ", " \
                   << cases_file();                                                     \
  } while (0)

// Runs dsv4 with stdout only (stderr to a file) so that output can be compared exactly.
int run_dsv4(const std::string& args, std::string* out, std::string* err = nullptr) {
  std::string errfile = make_temp_dir("dsv4cli") + "/stderr";
  // run_command appends 2>&1 to the whole line; the group keeps stderr in its own file.
  int rc = run_command("{ " + quote(dsv4_binary()) + " " + args + " 2>" + quote(errfile) + "; }", out);
  if (err) *err = read_file(errfile);
  std::filesystem::remove_all(std::filesystem::path(errfile).parent_path());
  return rc;
}

TEST(TokenizeCli, JsonlMatchesGoldenIds) {
  REQUIRE_DATA();
  std::string out, err;
  ASSERT_EQ(run_dsv4("tokenize --model " + quote(model_dir()) + " --jsonl " + quote(cases_file()), &out, &err), 0)
      << err;
  std::ifstream f(cases_file());
  std::istringstream got(out);
  std::string want_line, got_line;
  int n = 0;
  while (std::getline(f, want_line)) {
    if (want_line.empty()) continue;
    ASSERT_TRUE(std::getline(got, got_line)) << "missing output line " << n;
    auto want = nlohmann::json::parse(want_line);
    EXPECT_EQ(nlohmann::json::parse(got_line), want["ids"]) << want["id"];
    ++n;
  }
  EXPECT_FALSE(std::getline(got, got_line)) << "extra output: " << got_line;
  EXPECT_EQ(n, 106);
}

TEST(TokenizeCli, TextTextFileAndSpecials) {
  REQUIRE_DATA();
  std::string out, err;
  ASSERT_EQ(run_dsv4("tokenize --model " + quote(model_dir()) + " --text 'Hello world'", &out, &err), 0) << err;
  EXPECT_EQ(out, "[19923,2058]\n");

  std::string dir = make_temp_dir("dsv4cli");
  {
    std::ofstream(dir + "/in.txt", std::ios::binary) << "Hello world";
  }
  ASSERT_EQ(run_dsv4("tokenize --model " + quote(model_dir()) + " --text-file " + quote(dir + "/in.txt"), &out, &err), 0)
      << err;
  EXPECT_EQ(out, "[19923,2058]\n");
  std::filesystem::remove_all(dir);

  ASSERT_EQ(run_dsv4("tokenize --model " + quote(model_dir()) + " --specials --text " + quote("<｜User｜>Hello"), &out, &err), 0)
      << err;
  EXPECT_EQ(out, "[128803,19923]\n");
  ASSERT_EQ(run_dsv4("tokenize --model " + quote(model_dir()) + " --text " + quote("<｜User｜>Hello"), &out, &err), 0)
      << err;
  EXPECT_EQ(out.find("128803"), std::string::npos) << out;

  ASSERT_EQ(run_dsv4("tokenize --model " + quote(model_dir()) + " --text ''", &out, &err), 0) << err;
  EXPECT_EQ(out, "[]\n");
}

TEST(TokenizeCli, DetokenizePrintsTextExactly) {
  REQUIRE_DATA();
  std::string out, err;
  ASSERT_EQ(run_dsv4("detokenize --model " + quote(model_dir()) + " --ids '[19923,2058]'", &out, &err), 0) << err;
  EXPECT_EQ(out, "Hello world");
  ASSERT_EQ(run_dsv4("detokenize --model " + quote(model_dir()) + " --ids '[128803, 30594, 201]'", &out, &err), 0)
      << err;
  EXPECT_EQ(out, "<｜User｜>你好\n");
  ASSERT_EQ(run_dsv4("detokenize --model " + quote(model_dir()) + " --ids '[]'", &out, &err), 0) << err;
  EXPECT_EQ(out, "");
}

TEST(TokenizeCli, ErrorsExitNonZeroWithMessage) {
  REQUIRE_DATA();
  std::string out, err;
  EXPECT_NE(run_dsv4("tokenize --model /nonexistent/dir --text hi", &out, &err), 0);
  EXPECT_NE(err.find("/nonexistent/dir/tokenizer.json"), std::string::npos) << err;
  EXPECT_NE(run_dsv4("tokenize --model " + quote(model_dir()), &out, &err), 0);
  EXPECT_NE(err.find("--text"), std::string::npos) << err;
  EXPECT_NE(run_dsv4("tokenize --model " + quote(model_dir()) + " --jsonl /nonexistent.jsonl", &out, &err), 0);
  EXPECT_NE(err.find("/nonexistent.jsonl"), std::string::npos) << err;
  EXPECT_NE(run_dsv4("detokenize --model " + quote(model_dir()) + " --ids '[1, 999999]'", &out, &err), 0);
  EXPECT_NE(err.find("999999"), std::string::npos) << err;
  EXPECT_NE(run_dsv4("detokenize --model " + quote(model_dir()) + " --ids 'nope'", &out, &err), 0);
  EXPECT_FALSE(err.empty());
}

}  // namespace
}  // namespace dsv4::test
