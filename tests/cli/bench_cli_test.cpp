// `dsv4 bench` black-box on the tiny checkpoint: the warm-up before timing (default one prefill
// chunk on a throwaway state, as llama-bench's warm-up run; --warmup 0 skips it) and the table row.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "test_util.h"
#include "tiny_fixture.h"

using namespace dsv4;

namespace {
std::string bench(const std::string& args) {
  std::string out;
  EXPECT_EQ(test::run_command_stdout(test::dsv4_binary() + " bench --model " + test::tiny_checkpoint_dir() +
                                         " --contexts 48 --gen 2 " + args,
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
