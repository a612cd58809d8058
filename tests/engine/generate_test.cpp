// Generation through the engine on the tiny checkpoint (the pipeline `dsv4 run` and the server
// share): streamed pieces are whole UTF-8 characters, budget, context and stop strings end the
// sequence with the right reason, chunked prefill gives the same tokens; the output stage on its
// own; and the frontier benchmark (engine/generate.h) measures every frontier with the state it
// claims.
#include "engine/generate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "engine/frontier_bench.h"
#include "engine/output_stage.h"
#include "engine/scheduler.h"
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

// One request through the engine (a one-slot scheduler stepped on this thread): its tokens, the
// text its events carried by kind, and the final event.
struct GenRun {
  std::vector<int32_t> tokens;
  std::vector<std::string> pieces;  // every text event's text, in order
  std::string content, reasoning, tool;
  TokenEvent last;
};

GenRun run(const GenRequest& req, int64_t ctx = 4096, int step_tokens = 256) {
  SchedulerConfig c;
  c.parallel = 1;
  c.ctx = ctx;
  c.step_tokens = step_tokens;
  c.cache_budget_bytes = 0;
  Scheduler s(tiny().fp, tiny().tok, c);
  auto job = s.submit(req);
  EXPECT_TRUE(job);
  GenRun r;
  for (int guard = 0; guard < 100000 && r.last.finish == FinishReason::none; ++guard) {
    s.step_once(std::chrono::milliseconds(0));
    std::vector<TokenEvent> ev;
    job->events.wait_pop(&ev, std::chrono::milliseconds(0));
    for (auto& e : ev) {
      if (e.token >= 0) r.tokens.push_back(e.token);
      for (const auto& t : e.text) {
        if (t.kind == text::ParseEventKind::done) continue;
        r.pieces.push_back(t.text);
        if (t.kind == text::ParseEventKind::content_delta) r.content += t.text;
        else if (t.kind == text::ParseEventKind::reasoning_delta) r.reasoning += t.text;
        else r.tool += t.name + t.text;
      }
      if (e.finish != FinishReason::none) r.last = std::move(e);
    }
  }
  return r;
}

GenRequest plain_request(const std::string& text, int max_tokens, float temperature = 0) {
  GenRequest r;
  r.prompt.push_back(tiny().tok.bos_id());
  tiny().tok.encode_plain(text, &r.prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = temperature;
  return r;
}

TEST(Generate, StreamedPiecesAreWholeCharactersAndMatchDecode) {
  // Sampling at T=1.5 over the tiny model's random weights, with tokens that are not whole
  // characters on their own (byte tokens, halves of CJK characters) favoured, so the streamed
  // text mixes whole characters, characters split across tokens and broken sequences (U+FFFD).
  GenRequest req = plain_request("日本語のテキスト", 48, 1.5f);
  req.sampling.has_seed = true;
  req.sampling.seed = 7;
  req.sampling.logit_bias.push_back({tiny().tok.eos_id(), -std::numeric_limits<float>::infinity()});
  auto bytes_of = [](int32_t t) {
    std::string b;
    tiny().tok.append_token_bytes(t, &b);
    return b;
  };
  for (int32_t t = 0, n = 0; t < int32_t(tiny().model->config().vocab_size) && n < 200; ++t)
    if (!tiny().tok.is_added(t) && !text::is_valid_utf8(bytes_of(t))) {
      req.sampling.logit_bias.push_back({t, 3.0f});
      ++n;
    }
  const GenRun r = run(req);
  EXPECT_EQ(r.tokens.size(), 48u);
  EXPECT_EQ(r.last.finish, FinishReason::max_tokens);
  // The premise: some sampled token is not a whole character on its own, so the decoder had to
  // hold bytes back for the pieces below to be whole.
  int partial = 0;
  for (int32_t t : r.tokens) partial += !text::is_valid_utf8(bytes_of(t));
  EXPECT_GT(partial, 0) << "no sampled token splits a character: the test proves nothing";
  std::string joined;
  for (const auto& p : r.pieces) {
    EXPECT_TRUE(text::is_valid_utf8(p)) << "a streamed piece splits a character";
    joined += p;
  }
  EXPECT_EQ(joined, tiny().tok.decode(r.tokens));
  EXPECT_EQ(r.last.message.content, joined);
}

TEST(Generate, ContextLimitEndsGeneration) {
  GenRequest req;
  req.prompt = {tiny().tok.bos_id(), 1000, 2000};
  req.max_tokens = 100;
  req.sampling.logit_bias.push_back({tiny().tok.eos_id(), -std::numeric_limits<float>::infinity()});
  const GenRun r = run(req, /*ctx=*/8);
  EXPECT_EQ(r.last.finish, FinishReason::context_full);
  EXPECT_EQ(r.last.generated, 5);
  EXPECT_EQ(r.tokens.size(), 5u);
  EXPECT_GT(r.last.state_bytes, 0u);
  const GenRun too_long = run(req, /*ctx=*/3);
  EXPECT_EQ(too_long.last.finish, FinishReason::error);
  EXPECT_TRUE(too_long.tokens.empty());
}

TEST(Generate, GreedyEqualsTopKOneAndChunkingDoesNotMatter) {
  GenRequest a;
  a.prompt.push_back(tiny().tok.bos_id());
  for (int i = 0; i < 40; ++i) a.prompt.push_back(1000 + 37 * i);
  a.max_tokens = 6;
  a.sampling.temperature = 0;
  GenRequest b = a;
  b.sampling.temperature = 1;
  b.sampling.top_k = 1;
  b.sampling.has_seed = true;
  const GenRun ra = run(a, 4096, 256), rb = run(b, 4096, 16);  // chunked prefill == one-shot prefill
  EXPECT_EQ(ra.tokens, rb.tokens);
  EXPECT_EQ(ra.tokens.size(), 6u);
}

// Stop strings are the engine's: the sequence ends at the token completing one, its text and
// everything after it never shown, the finish reason and the string on the final event.
TEST(Generate, StopStringEndsTheSequenceInTheEngine) {
  const GenRun full = run(plain_request("Hello there", 24));
  ASSERT_GE(full.content.size(), 8u) << full.content;
  size_t k = full.content.size() / 2;
  while (k > 0 && (static_cast<unsigned char>(full.content[k]) & 0xC0) == 0x80) --k;
  size_t len = 1;
  while (k + len < full.content.size() && (static_cast<unsigned char>(full.content[k + len]) & 0xC0) == 0x80) ++len;
  const std::string stop = full.content.substr(k, len);
  const size_t at = full.content.find(stop);
  GenRequest req = plain_request("Hello there", 24);
  req.output.stop = {"never appears \x01", stop};
  const GenRun r = run(req);
  EXPECT_EQ(r.last.finish, FinishReason::stop_string);
  EXPECT_EQ(r.last.stop_string, stop);
  EXPECT_EQ(r.content, full.content.substr(0, at));
  // It stopped generating there: not one token more than it took to complete the stop string.
  size_t n = 0;
  while (n < full.tokens.size() &&
         tiny().tok.decode(std::vector<int32_t>(full.tokens.begin(), full.tokens.begin() + long(n))).find(stop) ==
             std::string::npos)
    ++n;
  EXPECT_EQ(r.tokens.size(), n);
  EXPECT_EQ(r.tokens, std::vector<int32_t>(full.tokens.begin(), full.tokens.begin() + long(n)));
}

// The text stage on its own: a chat turn's reasoning, answer, tool call and the reasons the text
// gives, as the tokens of a real completion produce them.
TEST(OutputStage, ChatTurnEventsAndFinishReasons) {
  const text::Tokenizer& tok = tiny().tok;
  auto feed = [&](OutputStage& st, const std::string& s, std::vector<text::ParseEvent>& ev) {
    std::vector<int32_t> ids;
    tok.encode_plain(s, &ids);
    FinishReason r = FinishReason::none;
    for (int32_t t : ids)
      if ((r = st.push(t, ev)) != FinishReason::none) break;
    return r;
  };
  std::vector<text::ParseEvent> ev;
  OutputStage think(tok, OutputSpec{OutputMode::chat_thinking, {"STOP"}});
  EXPECT_EQ(feed(think, "why STOP so", ev), FinishReason::none);  // not in reasoning
  EXPECT_EQ(think.push(tok.token_id("</think>"), ev), FinishReason::none);
  EXPECT_EQ(feed(think, "the answer STOP and more", ev), FinishReason::stop_string);
  EXPECT_EQ(think.finish(FinishReason::stop_string, ev), FinishReason::stop_string);
  EXPECT_EQ(think.message().reasoning_content, "why STOP so");
  EXPECT_EQ(think.message().content, "the answer ");
  EXPECT_EQ(think.matched_stop(), "STOP");
  EXPECT_GT(think.reasoning_tokens(), 0);

  OutputStage chat(tok, OutputSpec{OutputMode::chat, {}});
  ev.clear();
  const std::string call = "ok\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" "
                           "string=\"true\">x</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  EXPECT_EQ(feed(chat, call, ev), FinishReason::none);
  EXPECT_EQ(chat.push(tok.eos_id(), ev), FinishReason::eos);
  EXPECT_EQ(chat.finish(FinishReason::eos, ev), FinishReason::tool_calls);  // EOS after calls
  ASSERT_EQ(chat.message().tool_calls.size(), 1u);
  EXPECT_EQ(chat.message().tool_calls[0].arguments, R"({"a": "x"})");
  EXPECT_EQ(ev.back().kind, text::ParseEventKind::done);

  OutputStage plain(tok, OutputSpec{OutputMode::plain, {"xyz"}});
  ev.clear();
  EXPECT_EQ(feed(plain, "abc xy", ev), FinishReason::none);
  EXPECT_EQ(plain.message().content, "abc ");  // "xy" held: it may start the stop string
  EXPECT_EQ(plain.finish(FinishReason::max_tokens, ev), FinishReason::max_tokens);
  EXPECT_EQ(plain.message().content, "abc xy");
  EXPECT_THROW(OutputStage(tok, OutputSpec{OutputMode::plain, {""}}), Error);
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

// The synthetic state has exactly the rows a prefilled state of the same length has (same bytes,
// same row counts per layer), and decoding from it works (finite logits, the state grows by one).
TEST(FrontierBench, SyntheticStateHasThePrefilledShape) {
  auto& t = tiny();
  const int64_t n = 384;
  auto syn = t.fp.new_state();
  fill_state_synthetic(*syn, n, 7);
  auto real = t.fp.new_state();
  std::vector<int32_t> ids;
  bench_tokens(7, 0, n, int32_t(t.model->config().vocab_size), ids);
  std::vector<float> logits;
  prefill(t.fp, *real, ids, logits, 128, {});
  EXPECT_EQ(syn->n_past(), n);
  EXPECT_EQ(syn->tokens(), real->tokens());
  EXPECT_EQ(syn->bytes(), real->bytes());
  for (int l = 0; l < t.model->config().n_layers; ++l) {
    EXPECT_EQ(syn->layer(l).kv_compressed.size(), real->layer(l).kv_compressed.size()) << l;
    EXPECT_EQ(syn->layer(l).index_keys.size(), real->layer(l).index_keys.size()) << l;
  }
  decode_step(t.fp, *syn, 1234, logits);
  EXPECT_EQ(syn->n_past(), n + 1);
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
  auto other = t.fp.new_state();
  EXPECT_THROW(fill_state_synthetic(*other, 100, 7), Error);  // not whole compressor windows
  FrontierBenchOptions opt;
  opt.contexts = {128, 256};
  opt.gen = 2;
  opt.synthetic_state = true;
  const auto rows = run_frontier_bench(t.fp, opt);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].prefill_tokens, 0);
  EXPECT_GT(rows[1].decode_ms_per_token(), 0);
  EXPECT_EQ(rows[1].state_bytes, rows[1].state_bytes_model);
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
