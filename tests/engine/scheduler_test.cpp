// Scheduler on the real tiny model (the embedded default checkpoint): a batch of N equals N
// singles, prefix-cache reuse equals a cold run, cancellation frees the sequence, forced tool
// calls close their block. The scheduler is driven with step_once() on the test thread.
#include "engine/default_model.h"
#include "engine/scheduler.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "cache/seq_state.h"
#include "model/forward.h"
#include "model/tiny_checkpoint.h"
#include "model/weights.h"
#include "text/json_schema.h"
#include "text/tokenizer.h"
#include "tiny_fixture.h"

namespace dsv4::engine {
namespace {

using test::embedded_model;

GenRequest make_request(const std::string& text, int max_tokens) {
  GenRequest r;
  r.prompt.push_back(embedded_model().tok->bos_id());
  embedded_model().tok->encode_plain(text, &r.prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  return r;
}

struct Result {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::none;
  int cached = 0;
};

// Steps the scheduler until every job has its final event.
std::vector<Result> run_jobs(Scheduler& s, const std::vector<std::shared_ptr<Job>>& jobs) {
  std::vector<Result> out(jobs.size());
  for (int guard = 0; guard < 10000; ++guard) {
    s.step_once(std::chrono::milliseconds(0));
    bool all = true;
    for (size_t i = 0; i < jobs.size(); ++i) {
      std::vector<TokenEvent> ev;
      jobs[i]->events.wait_pop(&ev, std::chrono::milliseconds(0));
      for (auto& e : ev) {
        if (e.token >= 0) out[i].tokens.push_back(e.token);
        if (e.finish != FinishReason::none) {
          out[i].finish = e.finish;
          out[i].cached = e.cached_tokens;
        }
      }
      if (out[i].finish == FinishReason::none) all = false;
    }
    if (all) break;
  }
  return out;
}

SchedulerConfig config(int parallel) {
  SchedulerConfig c;
  c.parallel = parallel;
  c.ctx = 1024;
  c.step_tokens = 32;  // forces chunked prefill interleaved with decodes
  return c;
}

const std::vector<std::string> kPrompts = {
    "The quick brown fox jumps over the lazy dog.",
    "def f(x):\n    return x * 2\n",
    "你好，世界！今天天气很好。",
    "A much longer prompt that needs more than one prefill chunk at thirty-two tokens per step, so "
    "that its prefill is interleaved with the decode steps of the other sequences in the batch.",
};

TEST(Scheduler, BatchOfNEqualsNSingles) {
  std::vector<Result> singles;
  for (const auto& p : kPrompts) {
    Scheduler s(*embedded_model().fp, *embedded_model().tok, config(1));
    auto job = s.submit(make_request(p, 12));
    ASSERT_TRUE(job);
    singles.push_back(run_jobs(s, {job})[0]);
  }
  Scheduler s(*embedded_model().fp, *embedded_model().tok, config(int(kPrompts.size())));
  std::vector<std::shared_ptr<Job>> jobs;
  for (const auto& p : kPrompts) jobs.push_back(s.submit(make_request(p, 12)));
  const auto batched = run_jobs(s, jobs);
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    EXPECT_EQ(batched[i].tokens, singles[i].tokens) << "prompt " << i;
    EXPECT_EQ(batched[i].finish, singles[i].finish);
    EXPECT_EQ(batched[i].tokens.size(), 12u);
  }
  EXPECT_GT(s.stats().steps.load(), 0u);
}

TEST(Scheduler, PrefixReuseGivesColdTokens) {
  const std::string first = kPrompts[3];
  const std::string second = first + " And then a follow-up question.";
  Scheduler cold(*embedded_model().fp, *embedded_model().tok, config(2));
  const Result want = run_jobs(cold, {cold.submit(make_request(second, 10))})[0];
  EXPECT_EQ(want.cached, 0);

  Scheduler warm(*embedded_model().fp, *embedded_model().tok, config(2));
  const GenRequest a = make_request(first, 6);
  run_jobs(warm, {warm.submit(a)});
  const Result got = run_jobs(warm, {warm.submit(make_request(second, 10))})[0];
  EXPECT_GE(got.cached, int(a.prompt.size()) - 2);  // BPE may merge across the join
  EXPECT_EQ(got.tokens, want.tokens);

  // The very same prompt again: served entirely from the cache, same tokens.
  const Result again = run_jobs(warm, {warm.submit(make_request(second, 10))})[0];
  EXPECT_EQ(again.cached, int(make_request(second, 10).prompt.size()));
  EXPECT_EQ(again.tokens, want.tokens);
}

// The shape of a thinking-mode follow-up turn: the new prompt shares all but the last token of
// the previous one (the generation prompt's think marker is re-rendered differently), then goes
// on. The first request asks for a snapshot there (the server does, where it renders the prompt);
// the cache cuts the previous final state back to it without replay. Without one, nothing is cut.
TEST(Scheduler, PrefixReuseCutsAtTheSnapshot) {
  GenRequest a = make_request(kPrompts[3], 6);
  a.snapshot_at = {int64_t(a.prompt.size()) - 1};
  GenRequest b = make_request(kPrompts[3], 6);
  b.prompt.back() = 42;  // diverges at the last token of a
  for (int t : {100, 200, 300, 400}) b.prompt.push_back(t);
  Scheduler cold(*embedded_model().fp, *embedded_model().tok, config(1));
  const Result want = run_jobs(cold, {cold.submit(b)})[0];
  Scheduler warm(*embedded_model().fp, *embedded_model().tok, config(1));
  run_jobs(warm, {warm.submit(a)});
  const Result got = run_jobs(warm, {warm.submit(b)})[0];
  EXPECT_EQ(got.cached, int(a.prompt.size()) - 1);
  EXPECT_EQ(got.tokens, want.tokens);

  Scheduler no_snap(*embedded_model().fp, *embedded_model().tok, config(1));
  GenRequest plain = a;
  plain.snapshot_at.clear();
  run_jobs(no_snap, {no_snap.submit(plain)});
  EXPECT_EQ(run_jobs(no_snap, {no_snap.submit(b)})[0].cached, 0);
}

// A prompt of n tokens: BOS, `first`, then a fixed run (same length for every `first`, and no
// shared prefix beyond BOS between two of them).
GenRequest fixed_request(int32_t first, int n, int max_tokens) {
  GenRequest r;
  r.prompt.push_back(embedded_model().tok->bos_id());
  r.prompt.push_back(first);
  for (int i = 2; i < n; ++i) r.prompt.push_back(1000 + (i * 37) % 500);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  r.sampling.logit_bias.push_back({embedded_model().tok->eos_id(), -std::numeric_limits<float>::infinity()});  // runs to max_tokens
  r.snapshot_at = {int64_t(n) - 1};
  return r;
}

// Admission reserves what a sequence's state really holds at its longest (the state's own
// bytes(), cache::state_bytes_at): reference numerics store 194 B KV rows here, not 4 B a value.
TEST(Scheduler, AdmissionReservesTheStateBytes) {
  Scheduler s(*embedded_model().fp, *embedded_model().tok, config(1));
  const GenRequest r = fixed_request(300, 150, 120);
  const size_t need = s.reservation(r);
  auto job = s.submit(r);
  size_t peak = 0;
  for (int i = 0; i < 1000 && !job->is_cancelled(); ++i) {
    if (!s.step_once(std::chrono::milliseconds(0))) break;
    peak = std::max<size_t>(peak, s.stats().kv_bytes.load());
  }
  std::vector<TokenEvent> ev;
  job->events.wait_pop(&ev, std::chrono::milliseconds(0));
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev.back().generated, 120);
  // The largest state measured holds prompt + 118 tokens (the last two are never run before the
  // sequence leaves): the reservation for prompt + 120 differs by their two token ids only.
  EXPECT_LE(peak, need);
  EXPECT_GE(peak + 8, need) << "reserved " << need << " B, the state held at most " << peak << " B";
}

// --kv-mb: with room for exactly two reservations, two of four equal requests run, then the rest.
TEST(Scheduler, AdmissionFitsTheBudget) {
  SchedulerConfig c = config(4);
  const size_t need = Scheduler(*embedded_model().fp, *embedded_model().tok, c).reservation(fixed_request(300, 60, 20));
  c.kv_budget_bytes = 2 * need + need / 2;
  Scheduler s(*embedded_model().fp, *embedded_model().tok, c);
  std::vector<std::shared_ptr<Job>> jobs;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(s.reservation(fixed_request(300 + i, 60, 20)), need);
    jobs.push_back(s.submit(fixed_request(300 + i, 60, 20)));
  }
  s.step_once(std::chrono::milliseconds(0));
  EXPECT_EQ(s.stats().running.load(), 2);
  EXPECT_EQ(s.stats().waiting.load(), 2);
  EXPECT_LE(s.stats().kv_bytes.load(), 2 * need);
  for (const Result& r : run_jobs(s, jobs)) EXPECT_EQ(r.tokens.size(), 20u);
}

// --cache-dir: a second scheduler (a restarted server) finds the first one's states on disk.
TEST(Scheduler, CacheDirSurvivesARestart) {
  const std::string dir = ::testing::TempDir() + "/dsv4_prefix_cache_test";
  std::filesystem::remove_all(dir);
  SchedulerConfig c = config(1);
  c.cache_dir = dir;
  GenRequest r = make_request(kPrompts[1], 6);
  r.snapshot_at = {int64_t(r.prompt.size()) - 1};
  Result first;
  {
    Scheduler s(*embedded_model().fp, *embedded_model().tok, c);
    first = run_jobs(s, {s.submit(r)})[0];
    EXPECT_EQ(first.cached, 0);
  }
  // A file of the older format (snapshot positions in the .meta side file) is removed.
  for (const char* ext : {".meta", ".state"}) {
    std::FILE* f = std::fopen((dir + "/00000000000000ff" + ext).c_str(), "wb");
    ASSERT_TRUE(f);
    std::fputs(ext[1] == 'm' ? "DSV4PCM1 and the rest of an old file" : "DSV4STAT", f);
    std::fclose(f);
  }
  Scheduler s(*embedded_model().fp, *embedded_model().tok, c);
  EXPECT_FALSE(std::filesystem::exists(dir + "/00000000000000ff.meta"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/00000000000000ff.state"));
  const Result again = run_jobs(s, {s.submit(r)})[0];
  EXPECT_EQ(again.cached, int(r.prompt.size()));
  EXPECT_EQ(again.tokens, first.tokens);
  // The snapshots came back with the states: a prompt diverging at the last token is cut there.
  GenRequest b = r;
  b.snapshot_at.clear();
  b.prompt.back() = 42;
  b.prompt.push_back(100);
  {
    Scheduler s2(*embedded_model().fp, *embedded_model().tok, c);
    EXPECT_EQ(run_jobs(s2, {s2.submit(b)})[0].cached, int(r.prompt.size()) - 1);
  }
  // A corrupted file is skipped, not trusted.
  for (const auto& de : std::filesystem::directory_iterator(dir)) {
    std::FILE* f = std::fopen(de.path().c_str(), "r+b");
    ASSERT_TRUE(f);
    std::fseek(f, 20, SEEK_SET);
    std::fputc(0x5a, f);
    std::fclose(f);
  }
  Scheduler broken(*embedded_model().fp, *embedded_model().tok, c);
  const Result cold = run_jobs(broken, {broken.submit(r)})[0];
  EXPECT_EQ(cold.cached, 0);
  EXPECT_EQ(cold.tokens, first.tokens);
  std::filesystem::remove_all(dir);
}

TEST(Scheduler, CancelFreesTheSequence) {
  Scheduler s(*embedded_model().fp, *embedded_model().tok, config(2));
  auto job = s.submit(make_request(kPrompts[0], 500));
  auto other = s.submit(make_request(kPrompts[1], 8));
  int seen = 0;
  for (int i = 0; i < 200 && seen < 3; ++i) {
    s.step_once(std::chrono::milliseconds(0));
    std::vector<TokenEvent> ev;
    job->events.wait_pop(&ev, std::chrono::milliseconds(0));
    seen += int(ev.size());
  }
  ASSERT_GE(seen, 3);
  job->cancel();
  s.step_once(std::chrono::milliseconds(0));
  EXPECT_EQ(s.stats().cancelled.load(), 1u);
  std::vector<TokenEvent> ev;
  job->events.wait_pop(&ev, std::chrono::milliseconds(0));
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev.back().finish, FinishReason::cancelled);
  const auto rest = run_jobs(s, {other});
  EXPECT_EQ(rest[0].tokens.size(), 8u);
  EXPECT_EQ(s.stats().running.load(), 0);
}

TEST(Scheduler, ForcedToolCallClosesTheBlock) {
  Scheduler s(*embedded_model().fp, *embedded_model().tok, config(1));
  GenRequest r = make_request("Weather?", 8);
  r.forced_tool = std::make_shared<ForcedToolCall>();
  r.forced_tool->tools.push_back({"get_weather", {{"city", ParamKind::string}, {"days", ParamKind::integer}}});
  const Result res = run_jobs(s, {s.submit(r)})[0];
  EXPECT_EQ(res.finish, FinishReason::tool_calls);
  const std::string text = embedded_model().tok->decode(res.tokens);
  EXPECT_NE(text.find("<｜DSML｜invoke name=\"get_weather\">"), std::string::npos) << text;
  EXPECT_NE(text.find("<｜DSML｜parameter name=\"days\" string=\"false\">"), std::string::npos) << text;
  EXPECT_NE(text.find("</｜DSML｜tool_calls>"), std::string::npos) << text;
  EXPECT_EQ(res.tokens.back(), embedded_model().tok->eos_id());
}

// Anthropic thinking.budget_tokens: after `reasoning_budget` reasoning tokens the engine writes
// </think> itself and the answer follows.
TEST(Scheduler, ReasoningBudgetClosesTheThinkingBlock) {
  const int32_t think_end = embedded_model().tok->token_id("</think>");
  for (int budget : {0, 3, 6}) {
    Scheduler s(*embedded_model().fp, *embedded_model().tok, config(1));
    GenRequest r = make_request("Why?", 12);
    r.output.mode = OutputMode::chat_thinking;
    r.reasoning_budget = budget;
    const Result res = run_jobs(s, {s.submit(r)})[0];
    ASSERT_GT(res.tokens.size(), size_t(budget)) << "budget " << budget;
    const auto first_end = std::find(res.tokens.begin(), res.tokens.end(), think_end);
    ASSERT_NE(first_end, res.tokens.end()) << "budget " << budget;
    EXPECT_LE(first_end - res.tokens.begin(), budget) << "budget " << budget;
  }
}

// serve --end-turn-after: EOS is written after N tokens (after the reasoning closed), a normal end.
TEST(Scheduler, EndTurnAfterWritesEos) {
  Scheduler s(*embedded_model().fp, *embedded_model().tok, config(1));
  GenRequest r = make_request("Hi", 40);
  r.output.mode = OutputMode::chat_thinking;
  r.reasoning_budget = 3;
  r.end_turn_after = 7;
  const Result res = run_jobs(s, {s.submit(r)})[0];
  EXPECT_EQ(res.finish, FinishReason::eos);
  ASSERT_EQ(res.tokens.size(), 8u);
  EXPECT_EQ(res.tokens[3], embedded_model().tok->token_id("</think>"));
  EXPECT_EQ(res.tokens.back(), embedded_model().tok->eos_id());
}

// The default --ctx of `dsv4 serve`: the longest context whose reservation fits, for N sequences.
TEST(Scheduler, ContextForBudget) {
  const cache::StateShape shape = embedded_model().fp->state_shape();
  const cache::StateBytesOptions full{.per_page = true, .snapshots = cache::SeqState::kMaxSnapshots};
  auto bytes = [&](int64_t n) { return cache::state_bytes_at(shape, n, full).total(); };
  EXPECT_EQ(context_for_budget(shape, size_t(8) << 30, 4, 1 << 20), 1 << 20);  // the tiny state fits 1M x 4
  const size_t budget = 4 * bytes(100000);
  const int64_t c = context_for_budget(shape, budget, 4, 1 << 20);
  EXPECT_EQ(c % 1024, 0);
  EXPECT_LE(4 * bytes(c), budget);
  EXPECT_GT(4 * bytes(c + 1024), budget);
  EXPECT_GE(c, 96 * 1024);
  EXPECT_LT(context_for_budget(shape, budget, 8, 1 << 20), c);  // more sequences, shorter context
  EXPECT_EQ(context_for_budget(shape, 1, 4, 1 << 20), 1024);    // floor
  EXPECT_EQ(context_for_budget(shape, size_t(8) << 30, 4, 512), 512);
}

// Structured output through the scheduler: the answer is JSON of the schema and ends with EOS
// within max_tokens (greedy on random weights: only the constraint makes it valid).
TEST(Scheduler, ResponseSchemaGivesValidJson) {
  Scheduler s(*embedded_model().fp, *embedded_model().tok, config(1));
  GenRequest r = make_request("Fill the form.", 24);
  r.response_schema = text::compile_json_schema(text::Json::parse(
      R"({"type":"object","properties":{"ok":{"type":"boolean"},"n":{"enum":[3,5]}},"required":["ok","n"],"additionalProperties":false})"));
  const Result res = run_jobs(s, {s.submit(r)})[0];
  EXPECT_EQ(res.finish, FinishReason::eos);
  ASSERT_FALSE(res.tokens.empty());
  EXPECT_EQ(res.tokens.back(), embedded_model().tok->eos_id());
  EXPECT_LE(res.tokens.size(), 24u);
  const std::string text = embedded_model().tok->decode(std::span<const int32_t>(res.tokens.data(), res.tokens.size() - 1));
  EXPECT_TRUE(std::regex_match(text, std::regex(R"re(\{"ok": ?(true|false), ?"n": ?[35]\})re"))) << text;
}

TEST(Scheduler, QueueFullRejects) {
  SchedulerConfig c = config(1);
  c.queue_capacity = 2;
  Scheduler s(*embedded_model().fp, *embedded_model().tok, c);
  EXPECT_TRUE(s.submit(make_request("a", 1)));
  EXPECT_TRUE(s.submit(make_request("b", 1)));
  EXPECT_FALSE(s.submit(make_request("c", 1)));
}

// --cache-dir hygiene at start (issue 16): a dangling symlink and a FIFO are skipped (they ended
// and hung the start), temporary files and orphan halves are removed, and what is beyond the
// budget is deleted from the disk too.
TEST(Scheduler, CacheDirHygieneAtStart) {
  namespace fs = std::filesystem;
  const std::string dir = ::testing::TempDir() + "/dsv4_prefix_cache_hygiene";
  fs::remove_all(dir);
  fs::create_directories(dir);
  SchedulerConfig c = config(1);
  c.cache_dir = dir;
  {
    Scheduler s(*embedded_model().fp, *embedded_model().tok, c);
    for (int i = 0; i < 3; ++i) run_jobs(s, {s.submit(make_request(kPrompts[i], 4))});
  }
  auto count = [&](const char* ext) {
    int n = 0;
    for (const auto& de : fs::directory_iterator(dir)) n += de.path().extension() == ext && fs::is_regular_file(de.symlink_status());
    return n;
  };
  const int entries = count(".meta");
  ASSERT_GE(entries, 3);
  ASSERT_EQ(count(".state"), entries);
  fs::create_symlink(dir + "/nowhere", dir + "/00000000000000aa.meta");
  ASSERT_EQ(::mkfifo((dir + "/00000000000000bb.meta").c_str(), 0644), 0);
  ASSERT_EQ(::mkfifo((dir + "/00000000000000bb.state").c_str(), 0644), 0);
  for (const char* junk : {"/00000000000000cc.state", "/00000000000000dd.meta", "/00000000000000ee.meta.tmp.77.0"})
  {
    std::FILE* f = std::fopen((dir + junk).c_str(), "wb");
    ASSERT_TRUE(f);
    std::fputs("x", f);
    std::fclose(f);
  }
  {
    Scheduler s(*embedded_model().fp, *embedded_model().tok, c);  // returns: neither the FIFO nor the link stops it
    EXPECT_EQ(s.stats().cache_entries.load(), uint64_t(entries));
  }
  EXPECT_TRUE(fs::is_symlink(dir + "/00000000000000aa.meta"));  // skipped, not touched
  EXPECT_TRUE(fs::is_fifo(dir + "/00000000000000bb.meta"));
  EXPECT_FALSE(fs::exists(dir + "/00000000000000cc.state"));     // orphan halves
  EXPECT_FALSE(fs::exists(dir + "/00000000000000dd.meta"));
  EXPECT_FALSE(fs::exists(dir + "/00000000000000ee.meta.tmp.77.0"));  // a crash's temporary file
  // --cache-mb on disk: a budget for about one entry leaves about one entry's files.
  uintmax_t one = 0;
  for (const auto& de : fs::directory_iterator(dir))
    if (fs::is_regular_file(de.symlink_status())) one = std::max(one, fs::file_size(de.path()));
  c.cache_budget_bytes = size_t(one) + one / 2;
  c.cache_fsync = false;
  {
    Scheduler s(*embedded_model().fp, *embedded_model().tok, c);
    EXPECT_LE(s.stats().cache_entries.load(), 1u);
  }
  EXPECT_LE(count(".meta"), 1);
  EXPECT_EQ(count(".state"), count(".meta"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dsv4::engine
