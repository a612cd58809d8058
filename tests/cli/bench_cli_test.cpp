// `dsv4 bench` black-box on the tiny checkpoint: the warm-up before timing (default one prefill
// chunk on a throwaway state, as llama-bench's warm-up run; --warmup 0 skips it; synthetic states
// too) and the table row.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "test_util.h"
#include "tiny_fixture.h"

using namespace dsv4;

namespace {
std::string bench(const std::string& args, const std::string& contexts = "48") {
  std::string out;
  EXPECT_EQ(test::run_command_stdout(test::dsv4_binary() + " bench --model " + test::tiny_checkpoint_dir() +
                                         " --contexts " + contexts + " --gen 2 " + args,
                                     &out),
            0)
      << out;
  return out;
}
}  // namespace

TEST(BenchCli, WarmsUpBeforeTimingUnlessAskedNot) {
  const std::string def = bench("--chunk 16");
  EXPECT_NE(def.find("bench: warm-up: 16 tokens prefilled and 1 decoded on a throwaway state"), std::string::npos)
      << def;
  // the rooflines (~1-2 s of both CPUs) say how much CPU time the hypervisor took meanwhile
  EXPECT_TRUE(std::regex_search(def, std::regex(R"(rooflines measured now: .*; host steal [0-9]+\.[0-9]% of CPU time)")))
      << def;
  const std::string custom = bench("--warmup 5");
  EXPECT_NE(custom.find("bench: warm-up: 5 tokens prefilled"), std::string::npos) << custom;
  const std::string none = bench("--chunk 16 --warmup 0");
  EXPECT_EQ(none.find("warm-up"), std::string::npos) << none;
  // the timed row is there either way, and the expert summary counts only the timed runs' uses:
  // the same with and without the warm-up
  for (const std::string* o : {&def, &none}) EXPECT_TRUE(std::regex_search(*o, std::regex(R"(\n +48 +[0-9.]+ )"))) << *o;
  std::smatch a, b;
  ASSERT_TRUE(std::regex_search(def, a, std::regex(R"(experts: resident \(mapped\), (\d+) expert uses)"))) << def;
  ASSERT_TRUE(std::regex_search(none, b, std::regex(R"(experts: resident \(mapped\), (\d+) expert uses)"))) << none;
  EXPECT_EQ(a[1].str(), b[1].str());
}

// Synthetic states skip the frontier's prefill, not the warm-up: without it their first decode
// steps fault in the routed experts' pages (a slower 1K step, a flatter 1M / 1K ratio).
TEST(BenchCli, SyntheticStateRunsWarmUpToo) {
  // (synthetic frontiers are whole compressor windows of 128)
  const std::string syn = bench("--chunk 16 --synthetic-state", "128");
  EXPECT_NE(syn.find("SYNTHETIC STATE"), std::string::npos) << syn;
  EXPECT_NE(syn.find("bench: warm-up: 16 tokens prefilled and 1 decoded on a throwaway state"), std::string::npos)
      << syn;
  EXPECT_TRUE(std::regex_search(syn, std::regex(R"(\n +128 +[0-9.]+ )"))) << syn;
  const std::string none = bench("--chunk 16 --synthetic-state --warmup 0", "128");
  EXPECT_EQ(none.find("warm-up"), std::string::npos) << none;
}

// A synthetic frontier below one window, or two that round to the same window, is refused by name
// (they used to round to 0 and fail as "frontiers must be positive and ascending").
TEST(BenchCli, SyntheticFrontiersBelowAWindowAreRefusedByName) {
  const std::string base = test::dsv4_binary() + " bench --model " + test::tiny_checkpoint_dir() + " --gen 2 --synthetic-state";
  std::string out;
  EXPECT_NE(test::run_command(base + " --contexts 48", &out), 0);
  EXPECT_NE(out.find("frontier 48 is below one window"), std::string::npos) << out;
  EXPECT_NE(test::run_command(base + " --contexts 130,200", &out), 0);
  EXPECT_NE(out.find("200 rounds to 128, not above the previous frontier"), std::string::npos) << out;
}
