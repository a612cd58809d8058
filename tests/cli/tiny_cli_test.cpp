// `dsv4 tiny` black-box: writes a loadable checkpoint into a new directory (atomically: no
// temporary left behind), and rejects bad arguments with a non-zero exit.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"

using namespace dsv4;
namespace fs = std::filesystem;

TEST(TinyCli, WritesLoadableCheckpoint) {
  const std::string root = test::make_temp_dir("dsv4tinycli");
  const std::string out_dir = root + "/ck";
  std::string out;
  ASSERT_EQ(test::run_command(test::dsv4_binary() + " tiny --out " + out_dir + " --seed 5", &out), 0) << out;
  EXPECT_NE(out.find("preset tiny, seed 5"), std::string::npos) << out;
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
  fs::remove_all(root);
}
