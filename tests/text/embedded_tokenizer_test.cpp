// The tokenizer dsv4 writes into random-weight checkpoints (text/embedded_tokenizer.h): the real
// DeepSeek vocabulary with V4's added tokens, and the embedded copy equal to the shared asset.
#include "text/embedded_tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"
#include "text/tokenizer.h"
#include "tiny_fixture.h"

using namespace dsv4;
namespace fs = std::filesystem;

TEST(EmbeddedTokenizer, V4TokenizerOfTheTestCheckpoint) {
  auto tok = text::Tokenizer::load(test::tiny_checkpoint_dir());
  EXPECT_EQ(tok.vocab_size(), 129280u);
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.token_id("<think>"), 128821);
  EXPECT_EQ(tok.token_id("</think>"), 128822);
  EXPECT_EQ(tok.token_id("<｜User｜>"), 128803);
  EXPECT_EQ(tok.token_id("<｜Assistant｜>"), 128804);
  EXPECT_EQ(tok.token_id("｜DSML｜"), 128825);
  EXPECT_EQ(tok.token_id("<｜image｜>"), 129279);
  const std::string s = "Hello, world! 123";
  EXPECT_EQ(tok.decode(tok.encode_plain(s)), s);
  // The embedded copy is the shared asset, byte for byte.
  const std::string asset = test::assets_path("tokenizer/deepseek-v3/tokenizer.json");
  if (fs::exists(asset)) EXPECT_EQ(std::string(text::embedded_v3_tokenizer_json()), test::read_file(asset));
}
