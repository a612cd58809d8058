// `dsv4 run` black-box on the tiny checkpoint: reproducibility (greedy, fixed seed), -n, stop
// strings, the chat paths, UTF-8 validity of stdout, the stats lines on stderr, and the --ctx
// error. Each run is a few dozen tokens, well under a second.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "test_util.h"
#include "text/utf8_util.h"
#include "tiny_fixture.h"

using namespace dsv4;

namespace {

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

struct RunResult {
  int rc = -1;
  std::string out, err;
};

RunResult dsv4_run(const std::string& args) {
  static const std::string dir = test::make_temp_dir("dsv4runcli");
  const std::string err_file = dir + "/stderr.txt";
  RunResult r;
  // run_command adds 2>&1 to the whole command; the subshell keeps stderr apart.
  r.rc = test::run_command("(" + test::dsv4_binary() + " run --model " + test::tiny_checkpoint_dir() + " " + args +
                               " 2>" + err_file + ")",
                           &r.out);
  r.err = test::read_file(err_file);
  return r;
}

int64_t stat_number(const std::string& err, const std::string& pattern) {
  std::smatch m;
  if (!std::regex_search(err, m, std::regex(pattern))) return -1;
  return std::stoll(m[1].str());
}

}  // namespace

TEST(RunCli, GreedyIsReproducibleAndReportsStats) {
  const std::string args = "--prompt 'The quick brown fox' -n 12 --temperature 0";
  const RunResult a = dsv4_run(args), b = dsv4_run(args);
  ASSERT_EQ(a.rc, 0) << a.err;
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_FALSE(a.out.empty());
  EXPECT_EQ(a.out, b.out);
  EXPECT_TRUE(text::is_valid_utf8(a.out));
  // Stats: prompt tokens, prefill tok/s, decode tok/s, context length, state bytes.
  EXPECT_GT(stat_number(a.err, R"(run: prompt (\d+) tokens, prefill [0-9.]+ s \([0-9.]+ tok/s\))"), 1) << a.err;
  EXPECT_EQ(stat_number(a.err, R"(run: generated (\d+) tokens, decode [0-9.]+ s \([0-9.]+ tok/s\))"), 12) << a.err;
  EXPECT_GT(stat_number(a.err, R"(run: context (\d+) / \d+ tokens)"), 12) << a.err;
  EXPECT_GT(stat_number(a.err, R"(state (\d+) bytes)"), 0) << a.err;
}

TEST(RunCli, FixedSeedReproduces) {
  const std::string args = "--prompt 'Once upon a time' -n 12 --temperature 1 --top-p 0.95 --seed 1234";
  const RunResult a = dsv4_run(args), b = dsv4_run(args);
  ASSERT_EQ(a.rc, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_TRUE(text::is_valid_utf8(a.out));
  const RunResult c = dsv4_run("--prompt 'Once upon a time' -n 12 --temperature 1 --top-p 0.95 --seed 99");
  ASSERT_EQ(c.rc, 0) << c.err;
  EXPECT_NE(a.out, c.out) << "different seeds gave the same 12 tokens";
}

TEST(RunCli, MaxTokensRespected) {
  for (int n : {1, 5}) {
    const RunResult r = dsv4_run("--prompt 'abc' --temperature 0 -n " + std::to_string(n));
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(stat_number(r.err, R"(generated (\d+) tokens)"), n) << r.err;
    EXPECT_NE(r.err.find("finish max_tokens"), std::string::npos) << r.err;
  }
}

TEST(RunCli, StopStringEndsTheOutput) {
  const RunResult full = dsv4_run("--prompt 'Hello there' -n 24 --temperature 0");
  ASSERT_EQ(full.rc, 0) << full.err;
  std::string text = full.out;
  if (!text.empty() && text.back() == '\n') text.pop_back();  // the newline run adds at the end
  ASSERT_GE(text.size(), 8u) << text;
  // A stop string from the middle of the greedy output, starting on a character boundary.
  size_t k = text.size() / 2;
  while (k > 0 && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
  size_t len = 1;
  while (k + len < text.size() && (static_cast<unsigned char>(text[k + len]) & 0xC0) == 0x80) ++len;
  const std::string stop = text.substr(k, len);
  const std::string expected = text.substr(0, text.find(stop));
  const RunResult r = dsv4_run("--prompt 'Hello there' -n 24 --temperature 0 --stop " + shell_quote(stop));
  ASSERT_EQ(r.rc, 0) << r.err;
  std::string got = r.out;
  if (!got.empty() && got.back() == '\n' && (expected.empty() || expected.back() != '\n')) got.pop_back();
  EXPECT_EQ(got, expected) << "stop " << shell_quote(stop);
  EXPECT_NE(r.err.find("finish stop_string"), std::string::npos) << r.err;
}

TEST(RunCli, ChatPaths) {
  const RunResult a = dsv4_run("--chat --prompt 'What is 2+2?' -n 10 --temperature 0");
  ASSERT_EQ(a.rc, 0) << a.err;
  EXPECT_TRUE(text::is_valid_utf8(a.out));
  EXPECT_EQ(a.out.find("[thinking]"), std::string::npos) << a.out;
  // Chat renders more than BOS + the text: the template adds role markers.
  EXPECT_GT(stat_number(a.err, R"(run: prompt (\d+) tokens)"),
            stat_number(dsv4_run("--prompt 'What is 2+2?' -n 1").err, R"(run: prompt (\d+) tokens)"));
  const RunResult t = dsv4_run("--chat --thinking --prompt 'What is 2+2?' -n 10 --temperature 0");
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_TRUE(text::is_valid_utf8(t.out));
  EXPECT_EQ(t.out.rfind("[thinking]\n", 0), 0u) << t.out;  // output starts inside the reasoning
}

TEST(RunCli, PromptLongerThanContextIsAnError) {
  const RunResult r = dsv4_run("--prompt 'one two three four five six' --ctx 4");
  EXPECT_TRUE(r.rc > 0 && r.rc < 128) << r.rc;
  EXPECT_NE(r.err.find("--ctx"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  const RunResult bad = dsv4_run("--prompt x --thinking");
  EXPECT_TRUE(bad.rc > 0 && bad.rc < 128) << bad.rc;
}

// --json-schema: the answer is JSON valid against the schema (random weights: only the grammar
// constraint can do that), in chat and thinking mode; an unsupported keyword is refused by name.
TEST(RunCli, JsonSchemaConstrainsTheAnswer) {
  const std::string dir = test::make_temp_dir("dsv4runschema");
  const std::string schema = dir + "/s.json";
  {
    std::ofstream f(schema);
    f << R"({"type":"object","properties":{"city":{"enum":["Rome","Oslo"]},"days":{"type":"integer","minimum":1,"maximum":9}},)"
         R"("required":["city","days"],"additionalProperties":false})";
  }
  for (const std::string mode : {"--chat", "--chat --thinking", ""}) {
    const RunResult r = dsv4_run("--prompt 'Weather?' " + mode + " -n 24 --seed 3 --json-schema " + schema);
    ASSERT_EQ(r.rc, 0) << r.err;
    std::string answer = r.out;
    if (const size_t at = answer.find("[/thinking]\n"); at != std::string::npos) answer = answer.substr(at + 12);
    std::smatch m;
    ASSERT_TRUE(std::regex_match(answer, m, std::regex(R"re(\{"city": ?"(Rome|Oslo)", ?"days": ?([1-9])\}\n)re"))) << mode << ": " << r.out;
    EXPECT_NE(r.err.find("finish eos"), std::string::npos) << r.err;
  }
  {
    std::ofstream f(schema);
    f << R"({"type":"array","uniqueItems":true})";
  }
  const RunResult bad = dsv4_run("--prompt x --json-schema " + schema);
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.err.find("'uniqueItems'"), std::string::npos) << bad.err;
}
