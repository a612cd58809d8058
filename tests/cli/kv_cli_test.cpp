// `dsv4 kv` on the real V4-Flash config: state bytes at 1M tokens from the native row formats.
#include <gtest/gtest.h>

#include <regex>

#include "test_util.h"

using namespace dsv4;

TEST(KvCli, FlashStateBytesAtOneMillionTokens) {
  const std::string cfg = test::testdata_path("configs/deepseek-v4-flash.config.json");
  std::string out;
  ASSERT_EQ(test::run_command(test::dsv4_binary() + " kv --config " + cfg + " --context 1048576", &out), 0) << out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(total\s+43\s+.*\((\d+) bytes)"))) << out;
  // 21 CSA layers x (L/4) x (584 B KV entry + 68 B index key) + 20 HCA x (L/128) x 584
  // + 43 windows x 128 x 584 + compressor states 21 x 80 KiB + 20 x 512 KiB.
  const long long L = 1048576;
  const long long expect = 21 * (L / 4) * (584 + 68) + 20 * (L / 128) * 584 + 43LL * 128 * 584 + 21LL * 80 * 1024 +
                           20LL * 512 * 1024;
  EXPECT_EQ(std::stoll(m[1]), expect);
  // The whole state of one sequence adds its token ids (4 B each).
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(state of one sequence .*\((\d+) bytes)"))) << out;
  EXPECT_EQ(std::stoll(m[1]), expect + 4 * L);
  EXPECT_NE(out.find("DeepSeek-V3.2 (61 layers"), std::string::npos);
}

TEST(KvCli, RejectsBadArguments) {
  std::string out;
  EXPECT_EQ(test::run_command(test::dsv4_binary() + " kv --context 10", &out), 1) << out;
  EXPECT_EQ(test::run_command(test::dsv4_binary() + " kv --config /nonexistent.json", &out), 1) << out;
  EXPECT_NE(out.find("/nonexistent.json"), std::string::npos);
}
