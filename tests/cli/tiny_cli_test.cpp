// `dsv4 tiny` black-box: writes a loadable checkpoint into a new directory (atomically: no
// temporary left behind), and rejects bad arguments with a non-zero exit.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "test_util.h"

using namespace dsv4;
namespace fs = std::filesystem;

TEST(TinyCli, WritesLoadableCheckpoint) {
  const std::string root = test::make_temp_dir("dsv4tinycli");
  const std::string out_dir = root + "/ck";
  std::string out;
  ASSERT_EQ(test::run_command(test::dsv4_binary() + " tiny --out " + out_dir + " --seed 5", &out), 0) << out;
  EXPECT_NE(out.find("preset tiny, release april, seed 5"), std::string::npos) << out;
  EXPECT_NE(out.find("+ MTP block"), std::string::npos) << out;
  EXPECT_NE(out.find("2 shards"), std::string::npos) << out;
  int entries = 0;
  for (const auto& e : fs::directory_iterator(root)) ++entries, (void)e;
  EXPECT_EQ(entries, 1) << "temporary directory left behind";
  for (const auto& e : fs::recursive_directory_iterator(out_dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  std::ofstream(root + "/ids.json") << "[0, 5, 9]";
  ASSERT_EQ(test::run_command(test::dsv4_binary() + " logits --model " + out_dir + " --tokens " + root +
                                  "/ids.json --out " + root + "/l.bin",
                              &out),
            0)
      << out;
  fs::remove_all(root);
}

TEST(TinyCli, BadArguments) {
  const std::string root = test::make_temp_dir("dsv4tinycli");
  std::string out;
  int rc = test::run_command(test::dsv4_binary() + " tiny --out " + root + "/x --preset huge", &out);
  EXPECT_TRUE(rc > 0 && rc < 128) << rc << out;
  EXPECT_FALSE(fs::exists(root + "/x"));
  rc = test::run_command(test::dsv4_binary() + " tiny", &out);
  EXPECT_TRUE(rc > 0 && rc < 128) << rc << out;
  std::ofstream(root + "/file") << "x";
  rc = test::run_command(test::dsv4_binary() + " tiny --out " + root + "/file", &out);
  EXPECT_TRUE(rc > 0 && rc < 128) << rc << out;
  EXPECT_NE(out.find(root + "/file"), std::string::npos) << out;
  rc = test::run_command(test::dsv4_binary() + " tiny --out " + root + "/y --layers 2", &out);
  EXPECT_TRUE(rc > 0 && rc < 128) << rc << out;
  EXPECT_NE(out.find("--layers applies to the flash and pro presets"), std::string::npos) << out;
  rc = test::run_command(test::dsv4_binary() + " tiny --out " + root + "/y --release v5", &out);
  EXPECT_TRUE(rc > 0 && rc < 128) << rc << out;
  fs::remove_all(root);
}

// The release layouts (issue 17): the drafter each writes, as `dsv4 inspect` reports it.
TEST(TinyCli, ReleaseLayouts) {
  const std::string root = test::make_temp_dir("dsv4tinycli");
  struct Case {
    const char* flags;
    const char* printed;
    const char* kind;
    int blocks;
  };
  for (const Case& k : {Case{"--release pro-0813", "3 DSpark stages (Markov rank 32)", "dspark", 3},
                        Case{"--release flash-0731 --drafter none", "+ no drafter", "none", 0},
                        Case{"--drafter dspark", "3 DSpark stages (Markov rank 16)", "dspark", 3}}) {
    SCOPED_TRACE(k.flags);
    const std::string dir = root + "/ck";
    std::string out;
    ASSERT_EQ(test::run_command(test::dsv4_binary() + " tiny --out " + dir + " " + k.flags, &out), 0) << out;
    EXPECT_NE(out.find(k.printed), std::string::npos) << out;
    ASSERT_EQ(test::run_command_stdout(test::dsv4_binary() + " inspect --json --model " + dir, &out), 0) << out;
    const auto j = nlohmann::json::parse(out);
    EXPECT_EQ(j["drafter"]["kind"], k.kind);
    EXPECT_EQ(j["drafter"]["blocks"], k.blocks);
    EXPECT_EQ(j["drafter"]["loaded"], k.kind);
    EXPECT_EQ(j["tensors"]["checkpoint"]["count"], j["tensors"]["expected"]["count"]);
    EXPECT_TRUE(j["tensors"]["unused"].empty());
    if (k.blocks) EXPECT_GT(j["drafter"]["params"].get<int64_t>(), 0);
    fs::remove_all(dir);
  }
  fs::remove_all(root);
}
