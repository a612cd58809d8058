// `dsv4 run`: generate from a prompt and stream the text to stdout. One request through the same
// engine the server uses (a scheduler with one sequence slot): the engine samples, detokenises,
// parses and applies the stop strings (engine/output_stage.h); this file prints its events.
//   dsv4 run [--model DIR] --prompt TEXT [--chat] [--thinking] [-n N] [sampling flags] [--stop S]...
//            [--json-schema FILE]
// --json-schema constrains the answer (after the reasoning with --thinking) to one JSON value valid
// against the schema (engine/constraint.h); with --chat the schema is also shown to the model the
// way response_format is.
// Plain mode feeds BOS + the prompt as plain text; --chat renders a one-user-message chat through
// the V4 template (thinking off unless --thinking) and the output parser splits reasoning (shown
// between "[thinking]" and "[/thinking]", dimmed on a terminal) from the answer. Statistics go to
// stderr at the end; stdout holds only the generated text.
#include <unistd.h>

#include <chrono>
#include <climits>
#include <fstream>
#include <sstream>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/progress.h"
#include "core/error.h"
#include "engine/generate.h"
#include "engine/scheduler.h"
#include "engine/default_model.h"
#include "model/expert_store.h"
#include "text/chat_template.h"
#include "text/json_schema.h"
#include "text/tokenizer.h"

namespace dsv4::cli {

namespace {

struct RunArgs {
  std::string model, prompt, numerics = "reference", encoder = "auto", reasoning_effort;
  ModelLoadArgs load;
  bool chat = false, thinking = false;
  int n = 256;
  int64_t ctx = 0;
  int64_t chunk = engine::kDefaultPrefillChunk;
  engine::SamplingParams sampling;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  std::string json_schema;  // --json-schema FILE ("" = free text)
};

// Writes the streamed text to stdout, marking reasoning and tool calls, flushing every piece.
class StdoutSink {
 public:
  StdoutSink() : tty_(::isatty(STDOUT_FILENO) == 1) {}

  void operator()(const text::ParseEvent& e) {
    switch (e.kind) {
      case text::ParseEventKind::reasoning_delta: write(Block::reasoning, e.text); break;
      case text::ParseEventKind::content_delta: write(Block::content, e.text); break;
      case text::ParseEventKind::tool_call_start: write(Block::tool_call, e.name + " "); break;
      case text::ParseEventKind::tool_call_arguments: write(Block::tool_call, e.text); break;
      default: break;
    }
  }

  void end() {
    close_block();
    if (wrote_ && last_ != '\n') std::fputc('\n', stdout);
    std::fflush(stdout);
  }

 private:
  enum class Block { content, reasoning, tool_call };

  void write(Block b, std::string_view text) {
    if (text.empty()) return;
    if (b != block_) {
      close_block();
      block_ = b;
      if (b == Block::reasoning) std::fputs(tty_ ? "\x1b[2m[thinking]\n" : "[thinking]\n", stdout);
      else if (b == Block::tool_call) std::fputs("\n[tool call] ", stdout);
    }
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    wrote_ = true;
    last_ = text.back();
  }

  void close_block() {
    if (block_ == Block::content) return;
    std::fputs(block_ == Block::reasoning ? (tty_ ? "\n[/thinking]\x1b[0m\n" : "\n[/thinking]\n") : "\n", stdout);
    last_ = '\n';
    block_ = Block::content;
  }

  bool tty_;
  bool wrote_ = false;
  char last_ = '\n';
  Block block_ = Block::content;
};

// --json-schema: the schema file's JSON (dsv4::Error naming the file when unreadable or not JSON).
text::Json read_schema(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("--json-schema: cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  text::Json j;
  if (!text::try_parse_py_json(ss.str(), &j)) throw Error("--json-schema: " + path + " is not JSON");
  return j;
}

std::vector<int32_t> prompt_ids(const RunArgs& a, const text::Tokenizer& tok, const std::string& dir) {
  if (!a.chat) {
    std::vector<int32_t> ids{tok.bos_id()};
    tok.encode_plain(a.prompt, &ids);
    return ids;
  }
  text::ChatRequest req;
  if (!a.json_schema.empty()) {  // the schema rides on a system message, as response_format does
    text::Message sys;
    sys.role = text::Role::system;
    sys.response_format = text::Json{{"type", "json_schema"},
                                     {"json_schema", {{"name", "output"}, {"schema", read_schema(a.json_schema)}}}};
    req.messages.push_back(std::move(sys));
  }
  text::Message user;
  user.role = text::Role::user;
  user.content = a.prompt;
  req.messages.push_back(std::move(user));
  req.options.thinking_mode = a.thinking ? text::ThinkingMode::thinking : text::ThinkingMode::chat;
  std::string why;
  const text::EffortTable& table = text::EffortTable::from_flag(a.encoder, dir, &why);
  req.options.effort_table = &table;
  const std::string effort = a.reasoning_effort.empty() ? table.default_effort : a.reasoning_effort;
  if (!effort.empty()) req.options.reasoning_effort = text::normalize_reasoning_effort(effort, table);
  std::fprintf(stderr, "run: encoder %s (%s), effort %s\n", table.name.c_str(), why.c_str(),
               req.options.reasoning_effort ? req.options.reasoning_effort->c_str() : "none");
  const auto segs = text::render_prompt_segments(req);
  return text::segments_to_ids(segs, [&tok](std::string_view s) { return tok.encode_plain(s); });
}

void run_generate(const RunArgs& a) {
  using Clock = std::chrono::steady_clock;
  const model::Numerics num = parse_numerics(a.numerics);
  if (a.thinking && !a.chat) throw Error("--thinking needs --chat");
  const std::string dir = a.model.empty() ? engine::default_model_dir() : a.model;
  auto m = load_model(dir, a.load, "run");
  const auto tok = text::Tokenizer::load(dir);
  model::ForwardPass fp(*m, num);

  const int64_t ctx = engine::context_limit(m->config(), a.ctx);
  const std::vector<int32_t> ids = prompt_ids(a, tok, dir);
  const int64_t n_prompt = int64_t(ids.size());
  if (ids.empty()) throw Error("the prompt is empty (no tokens)");
  if (n_prompt >= ctx)
    throw Error("the prompt is " + std::to_string(n_prompt) + " tokens, which does not fit a context of " +
                std::to_string(ctx) + " tokens with room to generate (raise --ctx or shorten the prompt)");
  if (a.chunk <= 0) throw Error("--chunk: prefill chunk must be positive");
  a.sampling.validate(int32_t(m->config().vocab_size));
  for (const auto& stop : a.stop)
    if (stop.empty()) throw Error("--stop: stop strings must not be empty");

  // One sequence slot, nothing kept for later requests (there are none).
  engine::SchedulerConfig sc;
  sc.parallel = 1;
  sc.ctx = ctx;
  sc.step_tokens = int(std::min<int64_t>(a.chunk, INT_MAX));
  sc.queue_capacity = 1;
  sc.kv_budget_bytes = SIZE_MAX;
  sc.cache_budget_bytes = 0;
  engine::Scheduler sched(fp, tok, sc);

  engine::GenRequest req;
  req.id = "run";
  req.prompt = ids;
  req.sampling = a.sampling;
  req.max_tokens = a.n;
  req.output.mode = !a.chat ? engine::OutputMode::plain
                            : (a.thinking ? engine::OutputMode::chat_thinking : engine::OutputMode::chat);
  req.output.stop = a.stop;
  req.report_prefill = n_prompt > a.chunk;
  if (!a.json_schema.empty()) {
    try {
      req.response_schema = text::compile_json_schema(read_schema(a.json_schema));
    } catch (const Error& e) {
      throw Error("--json-schema " + a.json_schema + ": " + e.what());
    }
  }
  const auto t0 = Clock::now();
  auto job = sched.submit(std::move(req));
  if (!job) throw Error("the engine did not take the request");
  sched.start();

  StdoutSink out;
  PrefillProgressPrinter progress("run");
  auto secs = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  Clock::time_point t_first = t0;
  bool first = true;
  engine::TokenEvent last;
  std::vector<engine::TokenEvent> evs;
  while (last.finish == engine::FinishReason::none) {
    evs.clear();
    job->events.wait_pop(&evs, std::chrono::milliseconds(200));
    for (auto& e : evs) {
      if (e.token < 0 && e.finish == engine::FinishReason::none) {  // prefill progress
        progress({e.prefilled - e.cached_tokens, n_prompt - e.cached_tokens, e.prefilled, secs(t0, Clock::now())});
        continue;
      }
      if (first && e.token >= 0) {
        t_first = Clock::now();  // prefill ends with the first sample
        first = false;
      }
      for (const auto& t : e.text) out(t);
      if (e.finish != engine::FinishReason::none) {
        last = std::move(e);
        break;
      }
    }
  }
  const auto t_end = Clock::now();
  sched.stop();
  out.end();
  if (last.finish == engine::FinishReason::error) throw Error(last.error);

  const double prefill_s = secs(t0, t_first), decode_s = secs(t_first, t_end);
  const int64_t generated = last.generated, context = n_prompt + generated;
  auto rate = [](double n, double s) { return s > 0 ? n / s : 0.0; };
  std::fprintf(stderr, "run: prompt %lld tokens, prefill %.3f s (%.1f tok/s)\n", (long long)n_prompt, prefill_s,
               rate(double(n_prompt), prefill_s));
  std::fprintf(stderr, "run: generated %lld tokens, decode %.3f s (%.1f tok/s), finish %s\n", (long long)generated,
               decode_s, rate(double(generated), decode_s), engine::finish_reason_name(last.finish));
  std::fprintf(stderr, "run: context %lld / %lld tokens, state %zu bytes (%.3f MiB, numerics %s)\n",
               (long long)context, (long long)ctx, last.state_bytes, double(last.state_bytes) / 1048576.0,
               model::numerics_name(num));
  std::fprintf(stderr, "run: %s\n", model::expert_stats_summary(m->expert_store()).c_str());
}

}  // namespace

void register_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand("run", "Generate text from a prompt, streamed to stdout");
  cmd->add_option("--model", a->model, "checkpoint directory (default: the embedded tiny model)");
  add_model_load_options(cmd, a->load);
  cmd->add_option("--prompt,-p", a->prompt, "prompt text")->required();
  cmd->add_flag("--chat", a->chat, "render the prompt as one user message of a V4 chat");
  cmd->add_flag("--thinking", a->thinking, "--chat in thinking mode (reasoning shown marked)");
  cmd->add_option("--encoder", a->encoder, "--chat prompt encoder: auto (from the checkpoint), v4 or v4-0731")->capture_default_str();
  cmd->add_option("--reasoning-effort", a->reasoning_effort, "--thinking effort (none, low, high, max; default: the encoder's)");
  cmd->add_option("-n,--max-tokens", a->n, "tokens to generate at most (<= 0: until EOS or --ctx)")
      ->capture_default_str();
  auto& sp = a->sampling;
  cmd->add_option("--temperature", sp.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", sp.top_k, "0 = off")->capture_default_str();
  cmd->add_option("--top-p", sp.top_p, "1 = off")->capture_default_str();
  cmd->add_option("--min-p", sp.min_p, "0 = off")->capture_default_str();
  cmd->add_option("--repeat-penalty", sp.repetition_penalty, "1 = off")->capture_default_str();
  cmd->add_option("--presence-penalty", sp.presence_penalty, "[-2, 2]")->capture_default_str();
  cmd->add_option("--frequency-penalty", sp.frequency_penalty, "[-2, 2]")->capture_default_str();
  auto* seed = cmd->add_option("--seed", a->seed, "sampling seed (same seed, same output)");
  cmd->add_option("--stop", a->stop, "stop string (repeatable); not printed");
  cmd->add_option("--json-schema", a->json_schema,
                  "FILE: the answer is one JSON value valid against this JSON Schema (grammar-constrained decoding)");
  cmd->add_option("--numerics", a->numerics, "reference | f32")->capture_default_str();
  cmd->add_option("--ctx", a->ctx, "context limit in tokens, prompt + generated (0 = the model's)")
      ->capture_default_str();
  cmd->add_option("--chunk", a->chunk, "prefill chunk (tokens per forward pass)")->capture_default_str();
  add_expert_parallel_options(cmd);
  cmd->callback([a, seed] {
    if (seed->count() > 0) {
      a->sampling.seed = a->seed;
      a->sampling.has_seed = true;
    }
    run_generate(*a);
  });
}

}  // namespace dsv4::cli
