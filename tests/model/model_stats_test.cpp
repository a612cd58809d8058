// Parameter, tensor and KV accounting of the real V4-Flash and V4-Pro configs against the figures
// in testdata/configs/README.md and V4-ARCH §1.2, §3.3, §4.1 (all derived from the config here).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "cache/seq_state.h"
#include "model/forward.h"
#include "model/model_stats.h"
#include "model/tensor_table.h"
#include "model/tiny_checkpoint.h"
#include "test_util.h"

using namespace dsv4;

namespace {

model::Config load(const char* name) {
  const std::string p = test::testdata_path(std::string("configs/") + name);
  if (!std::filesystem::exists(p)) return {};
  return model::config_from_file(p);
}

double gib(int64_t b) { return double(b) / double(int64_t(1) << 30); }

}  // namespace

TEST(ModelStats, Flash) {
  const model::Config c = load("deepseek-v4-flash.config.json");
  if (c.dim == 0) GTEST_SKIP() << "testdata/configs missing";
  const model::ParamCounts p = model::count_params(c);
  EXPECT_NEAR(double(p.total_main()) / 1e9, 284.33, 0.005);
  EXPECT_NEAR(double(p.drafter) / 1e9, 6.6, 0.05);
  EXPECT_NEAR(double(p.active) / 1e9, 13.3, 0.05);
  EXPECT_EQ(c.count_layers(model::AttnKind::swa), 2);
  EXPECT_EQ(c.count_layers(model::AttnKind::csa), 21);
  EXPECT_EQ(c.count_layers(model::AttnKind::hca), 20);
  EXPECT_DOUBLE_EQ(model::kv_bytes_per_token(c, model::KvFormat::native), 3450.0);
  EXPECT_NEAR(model::kv_bytes_per_token(c, model::KvFormat::native_scales), 3509, 0.5);
  EXPECT_DOUBLE_EQ(model::kv_bytes_per_token(c, model::KvFormat::bf16), 6880.0);
  const int64_t L = int64_t(1) << 20;
  EXPECT_NEAR(gib(model::kv_state_bytes(c, model::KvFormat::native, L).total()), 3.37, 0.005);
  EXPECT_NEAR(gib(model::kv_state_bytes(c, model::KvFormat::native_scales, L).total()), 3.43, 0.005);
  EXPECT_NEAR(gib(model::kv_state_bytes(c, model::KvFormat::bf16, L).total()), 6.72, 0.005);
  EXPECT_NEAR(double(model::compressor_state_bytes(c)) / double(1 << 20), 11.6, 0.05);
  // V4-ARCH §4.1: 69,187 tensors incl. MTP, ~159.6 GB.
  const model::TensorTotals t = model::expected_tensor_totals(c, true);
  EXPECT_EQ(t.count, 69187);
  EXPECT_NEAR(double(t.bytes) / 1e9, 159.6, 0.05);
}

TEST(ModelStats, Pro) {
  const model::Config c = load("deepseek-v4-pro.config.json");
  if (c.dim == 0) GTEST_SKIP() << "testdata/configs missing";
  const model::ParamCounts p = model::count_params(c);
  EXPECT_NEAR(double(p.total_main()) / 1e9, 1573.0, 0.05);
  EXPECT_NEAR(double(p.total_with_drafter()) / 1e9, 1598.8, 0.05);
  EXPECT_NEAR(double(p.active) / 1e9, 48.9, 0.05);
  EXPECT_EQ(c.count_layers(model::AttnKind::swa), 0);
  EXPECT_EQ(c.count_layers(model::AttnKind::csa), 30);
  EXPECT_EQ(c.count_layers(model::AttnKind::hca), 31);
  EXPECT_DOUBLE_EQ(model::kv_bytes_per_token(c, model::KvFormat::native), 4939.5);
  EXPECT_NEAR(model::kv_bytes_per_token(c, model::KvFormat::native_scales), 5024, 0.5);
  EXPECT_DOUBLE_EQ(model::kv_bytes_per_token(c, model::KvFormat::bf16), 9848.0);
  const int64_t L = int64_t(1) << 20;
  EXPECT_NEAR(gib(model::kv_state_bytes(c, model::KvFormat::native, L).total()), 4.83, 0.005);
  EXPECT_NEAR(gib(model::kv_state_bytes(c, model::KvFormat::native_scales, L).total()), 4.91, 0.005);
  EXPECT_NEAR(double(model::compressor_state_bytes(c)) / double(1 << 20), 17.8, 0.05);
  // V4-ARCH §4.1: 145,116 tensors, 864.7 GB (805.32 GiB), matching a published shard dump.
  const model::TensorTotals t = model::expected_tensor_totals(c, true);
  EXPECT_EQ(t.count, 145116);
  EXPECT_NEAR(double(t.bytes) / 1e9, 864.7, 0.05);
  EXPECT_NEAR(gib(t.bytes), 805.32, 0.005);
}

// The KV accounting follows the spec's formulas for any config: CSA entry/4 + key/4, HCA
// entry/128, windows min(n, W) slots per layer, entries floor(n / m).
TEST(ModelStats, KvStateAtSmallLengths) {
  model::Config c = load("deepseek-v4-flash.config.json");
  if (c.dim == 0) GTEST_SKIP() << "testdata/configs missing";
  const auto lay = model::kv_layout(c, model::KvFormat::native);
  EXPECT_EQ(lay.entry_bytes, 576);
  EXPECT_EQ(lay.index_key_bytes, 64);
  for (int64_t n : {0, 1, 3, 4, 127, 128, 129, 1000}) {
    const auto s = model::kv_state_bytes(c, model::KvFormat::native, n);
    EXPECT_EQ(s.window, 43 * std::min<int64_t>(n, 128) * 576) << n;
    EXPECT_EQ(s.compressed, 21 * (n / 4) * 576 + 20 * (n / 128) * 576) << n;
    EXPECT_EQ(s.index_keys, 21 * (n / 4) * 64) << n;
  }
}

// The paper-format figures and the engine's state accounting count the same rows (one function,
// cache::state_bytes_at): only the row sizes differ (576 B paper entry vs 584 B engine row, 64 B
// vs 68 B index key), and the compressor states are the engine's, byte for byte.
TEST(ModelStats, SameRowsAsTheEngineState) {
  const model::Config c = load("deepseek-v4-flash.config.json");
  if (c.dim == 0) GTEST_SKIP() << "testdata/configs missing";
  const cache::StateShape shape = model::state_shape_for(c, model::Numerics::reference);
  for (int64_t n : {0, 5, 128, 1000, 1 << 20}) {
    const auto paper = model::kv_state_bytes(c, model::KvFormat::native, n);
    const auto engine = cache::state_bytes_at(shape, n);
    EXPECT_EQ(paper.compressed / 576, int64_t(engine.kv_compressed / 584)) << n;
    EXPECT_EQ(paper.index_keys / 64, int64_t(engine.index_keys / 68)) << n;
    EXPECT_EQ(paper.window / 576, std::min<int64_t>(n, 128) * 43) << n;
  }
  cache::SeqState st(shape);
  size_t held = 0;
  for (int l = 0; l < c.n_layers; ++l) held += st.layer(l).compressor.bytes() + st.layer(l).index_compressor.bytes();
  EXPECT_EQ(model::compressor_state_bytes(c), int64_t(held));
}

// Per-token weight traffic (the decode roofline's numerator): the real V4-Flash reads ~11 GB per
// token (FP8 dense part ~6.3 GiB, 6 FP4 experts x 43 layers ~3.5 GB, the bf16 head 1.06 GB);
// one real-shape CSA layer with an 8K vocabulary (issue 11's benchmark model) ~315 MB.
TEST(ModelStats, TokenWork) {
  const model::Config c = load("deepseek-v4-flash.config.json");
  if (c.dim == 0) GTEST_SKIP() << "testdata/configs missing";
  const model::TokenWork w = model::token_work(c);
  std::printf("[flash] per token: %.2f GB of weights, %.2f G multiply-adds\n", double(w.weight_bytes) / 1e9,
              double(w.weight_macs) / 1e9);
  EXPECT_GT(double(w.weight_bytes) / 1e9, 10.5);
  EXPECT_LT(double(w.weight_bytes) / 1e9, 11.5);
  // Multiply-adds = the active parameters' matrices (the active count adds one embedding row and
  // the norm vectors, which are no matmuls).
  const model::ParamCounts p = model::count_params(c);
  EXPECT_NEAR(double(w.weight_macs), double(p.active), 0.001 * double(p.active));
  model::Config one = model::preset_config("flash", 1);
  one.vocab_size = 8192;
  const model::TokenWork w1 = model::token_work(one);
  std::printf("[flash, 1 CSA layer, 8K vocab] per token: %.1f MB of weights\n", double(w1.weight_bytes) / 1e6);
  EXPECT_NEAR(double(w1.weight_bytes) / 1e6, 315, 15);
}
