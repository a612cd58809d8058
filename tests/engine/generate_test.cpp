// engine/generate and engine/frontier_bench on the tiny checkpoint: streamed pieces are whole
// UTF-8 characters, budget and context limits end generation with the right reason, chunked
// prefill leaves the same last logits as one-shot, and the frontier benchmark measures every
// frontier with the state it claims.
#include "engine/generate.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "engine/frontier_bench.h"
#include "model/forward.h"
#include "text/utf8_util.h"
#include "tiny_fixture.h"

namespace dsv4::engine {
namespace {

struct Tiny {
  std::unique_ptr<model::Model> model = model::Model::load(test::tiny_checkpoint_dir());
  text::Tokenizer tok = text::Tokenizer::load(test::tiny_checkpoint_dir());
  model::ForwardPass fp{*model, model::Numerics::reference};
};

Tiny& tiny() {
  static Tiny t;
  return t;
}

GenerateStats run(const std::vector<int32_t>& prompt, const GenerateOptions& opt, std::vector<std::string>* pieces) {
  return generate(tiny().fp, tiny().tok, prompt, opt, [&](TextKind, std::string_view s) {
    pieces->emplace_back(s);
  });
}

TEST(Generate, StreamedPiecesAreWholeCharactersAndMatchDecode) {
  // Sampling at T=1.5 over the tiny model's random weights produces CJK and partial-byte tokens.
  GenerateOptions opt;
  opt.sampling.temperature = 1.5f;
  opt.sampling.has_seed = true;
  opt.sampling.seed = 7;
  opt.max_tokens = 48;
  std::vector<int32_t> prompt{tiny().tok.bos_id()};
  tiny().tok.encode_plain("日本語のテキスト", &prompt);
  std::vector<std::string> pieces;
  const GenerateStats s = run(prompt, opt, &pieces);
  EXPECT_EQ(s.generated_tokens, 48);
  EXPECT_EQ(s.finish, GenerateFinish::max_tokens);
  std::string joined;
  for (const auto& p : pieces) {
    EXPECT_TRUE(text::is_valid_utf8(p)) << "a streamed piece splits a character";
    joined += p;
  }
  EXPECT_EQ(joined, tiny().tok.decode(s.tokens));
}

TEST(Generate, ContextLimitEndsGeneration) {
  GenerateOptions opt;
  opt.sampling.temperature = 0;
  opt.max_tokens = 100;
  opt.ctx = 8;
  const std::vector<int32_t> prompt{tiny().tok.bos_id(), 1000, 2000};
  std::vector<std::string> pieces;
  const GenerateStats s = run(prompt, opt, &pieces);
  EXPECT_EQ(s.finish, GenerateFinish::context_full);
  EXPECT_EQ(s.context, 8);
  EXPECT_EQ(s.generated_tokens, 5);
  opt.ctx = 3;
  EXPECT_THROW(run(prompt, opt, &pieces), Error);
}

TEST(Generate, GreedyEqualsTopKOneAndChunkingDoesNotMatter) {
  GenerateOptions a;
  a.sampling.temperature = 0;
  a.max_tokens = 6;
  a.prefill_chunk = 256;
  GenerateOptions b = a;
  b.sampling.temperature = 1;
  b.sampling.top_k = 1;
  b.sampling.has_seed = true;
  b.prefill_chunk = 3;  // chunked prefill == one-shot prefill
  std::vector<int32_t> prompt{tiny().tok.bos_id()};
  for (int i = 0; i < 40; ++i) prompt.push_back(1000 + 37 * i);
  std::vector<std::string> pa, pb;
  EXPECT_EQ(run(prompt, a, &pa).tokens, run(prompt, b, &pb).tokens);
}

TEST(FrontierBench, MeasuresEachFrontier) {
  FrontierBenchOptions opt;
  opt.contexts = {16, 40};
  opt.gen = 2;
  opt.chunk = 16;
  const auto rows = run_frontier_bench(tiny().fp, opt);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].context, 16);
  EXPECT_EQ(rows[1].prefill_tokens, 24);
  for (const auto& r : rows) {
    EXPECT_GT(r.prefill_tok_s(), 0);
    EXPECT_GT(r.decode_ms_per_token(), 0);
    EXPECT_GT(r.state_bytes, 0u);
    EXPECT_GT(r.state_bytes_model, 0u);
  }
  EXPECT_GE(rows[1].state_bytes, rows[0].state_bytes);
  EXPECT_EQ(frontier_csv_line(rows[0]).substr(0, 3), "16,");
  opt.contexts = {40, 16};
  EXPECT_THROW(run_frontier_bench(tiny().fp, opt), Error);
}

TEST(FrontierBench, ContextListAndTokens) {
  EXPECT_EQ(parse_context_list("128,2K,1M"), (std::vector<int64_t>{128, 2048, 1048576}));
  EXPECT_THROW(parse_context_list("128,,5"), Error);
  EXPECT_THROW(parse_context_list("-3"), Error);
  EXPECT_THROW(parse_context_list("12x"), Error);
  std::vector<int32_t> a, b;
  bench_tokens(3, 100, 50, 129280, a);
  bench_tokens(3, 120, 30, 129280, b);
  EXPECT_TRUE(std::equal(b.begin(), b.end(), a.begin() + 20));  // depends only on (seed, position)
  for (int32_t t : a) EXPECT_TRUE(t >= 1000 && t < 100000);
}

}  // namespace
}  // namespace dsv4::engine
