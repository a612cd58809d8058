// The embedded default model (engine/default_model.h): generated once, atomically, with its
// tokenizer, whatever the number of concurrent first users.
#include "engine/default_model.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <thread>

#include "model/weights.h"
#include "test_util.h"
#include "tiny_fixture.h"

using namespace dsv4;
namespace fs = std::filesystem;

// Concurrent first uses of the default model directory agree and leave one complete copy.
TEST(DefaultModel, ConcurrentFirstUse) {
  const std::string home = test::make_temp_dir("dsv4home");
  ASSERT_EQ(::setenv("DSV4_HOME", home.c_str(), 1), 0);
  std::string d1, d2;
  std::thread t1([&] { d1 = engine::default_model_dir(); });
  std::thread t2([&] { d2 = engine::default_model_dir(); });
  t1.join();
  t2.join();
  ::unsetenv("DSV4_HOME");
  EXPECT_EQ(d1, home + "/default-tiny-v1");
  EXPECT_EQ(d1, d2);
  int entries = 0;
  for (const auto& e : fs::directory_iterator(home)) ++entries, (void)e;
  EXPECT_EQ(entries, 1) << "temporary directories left behind";
  EXPECT_TRUE(test::shard_bytes(d1) == test::shard_bytes(test::tiny_checkpoint_dir()));
  EXPECT_NO_THROW(model::Model::load(d1));
  EXPECT_TRUE(fs::exists(d1 + "/tokenizer.json"));
  EXPECT_TRUE(fs::exists(d1 + "/tokenizer_config.json"));
  fs::remove_all(home);
}
