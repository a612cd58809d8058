#include "engine/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>

#include "core/log.h"
#include "text/tokenizer.h"

namespace dsv4::engine {

struct Scheduler::Sequence {
  std::shared_ptr<Job> job;
  std::unique_ptr<cache::SeqState> state;
  int64_t prefilled = 0;         // prompt tokens already in the state
  int cached = 0;                // of which came from the prefix cache
  Sampler sampler;
  std::vector<int32_t> generated;
  int32_t pending = -1;          // sampled but not yet run through the model
  std::unique_ptr<Constraint> constraint;  // forced tool call / structured output
  OutputStage output;            // detokenise -> parse -> stop strings: the text's verdict
  std::vector<float> hit_logits; // the whole prompt came from the cache: sample from these
  bool sample_now = false;
  bool done = false;
  size_t reserved = 0;           // KV bytes reserved at admission

  Sequence(std::shared_ptr<Job> j, const text::Tokenizer& tok)
      : job(std::move(j)), sampler(job->req.sampling), output(tok, job->req.output, job->req.stop_token_ids) {}
  const std::vector<int32_t>& prompt() const { return job->req.prompt; }
  bool prefilling() const { return prefilled < int64_t(prompt().size()) && !sample_now; }
};

Scheduler::Scheduler(model::ForwardPass& fp, const text::Tokenizer& tok, SchedulerConfig cfg)
    : fp_(fp),
      tok_(tok),
      cfg_(cfg),
      vocab_(int32_t(fp.model().config().vocab_size)),
      eos_(tok.eos_id()),
      shape_(fp.state_shape()),
      queue_(cfg.queue_capacity),
      prefix_cache_(cfg.cache_budget_bytes) {
  const cache::StateShape& shape = shape_;
  if (!cfg_.cache_dir.empty()) {
    prefix_cache_.open_dir(cfg_.cache_dir, shape, cfg_.cache_fsync);  // the front end prints what was loaded (stats)
    stats_.cache_entries = prefix_cache_.size();
    stats_.cache_bytes = prefix_cache_.bytes();
  }
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void Scheduler::stop(const std::string& error_message) {
  if (thread_.joinable() && !stop_) stop_error_ = error_message;  // read by run() after stop_
  stop_ = true;
  queue_.close();
  if (thread_.joinable()) thread_.join();
}

int64_t context_for_budget(const cache::StateShape& shape, size_t kv_budget_bytes, int parallel, int64_t model_max) {
  const cache::StateBytesOptions full{.per_page = true, .snapshots = cache::SeqState::kMaxSnapshots};
  auto fits = [&](int64_t n) {
    return double(cache::state_bytes_at(shape, n, full).total()) * double(std::max(parallel, 1)) <= double(kv_budget_bytes);
  };
  const int64_t step = 1024;
  if (model_max <= step) return model_max;
  if (fits(model_max)) return model_max;
  // Largest multiple of `step` that fits (state bytes grow with the context).
  int64_t lo = 1, hi = model_max / step;  // in steps; lo always answered (floor)
  if (!fits(lo * step)) return step;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (fits(mid * step)) lo = mid;
    else hi = mid - 1;
  }
  return lo * step;
}

void Scheduler::drain() {
  draining_ = true;  // try_reserve refuses from now on; the next step refuses what waits
}

bool Scheduler::try_reserve() {
  int64_t n = stats_.waiting.load();
  do {
    if (draining_ || stop_ || n >= int64_t(cfg_.queue_capacity)) return false;
  } while (!stats_.waiting.compare_exchange_weak(n, n + 1));
  return true;
}

void Scheduler::release_reservation() { stats_.waiting--; }

size_t Scheduler::reservation(const GenRequest& req) const {
  return reservation(req, prefix_cache_.find(req.prompt));
}

size_t Scheduler::reservation(const GenRequest& req, const PrefixCache::Match& m) const {
  // The state at the request's longest length (the prompt and every token it may generate, within
  // the context), in whole pages, with the snapshots it may hold: those a prefix-cache fork
  // brings and those the request asks for.
  int64_t total = int64_t(req.prompt.size()) + (req.max_tokens > 0 ? req.max_tokens : cfg_.ctx);
  total = std::min(total, cfg_.ctx);
  const size_t snaps = std::min(cache::SeqState::kMaxSnapshots, prefix_cache_.snapshots_kept(m) + req.snapshot_at.size());
  return cache::state_bytes_at(shape_, total, cache::StateBytesOptions{.per_page = true, .snapshots = snaps}).total();
}

std::shared_ptr<Job> Scheduler::submit(GenRequest req, bool reserved, std::function<void()> notify) {
  if (!reserved && !try_reserve()) return nullptr;
  auto job = std::make_shared<Job>();
  job->req = std::move(req);
  if (notify) job->events.set_notify(std::move(notify));
  if (!queue_.try_push(job)) {
    release_reservation();
    return nullptr;
  }
  stats_.requests++;
  return job;
}

void Scheduler::run() {
  while (!stop_) step_once(std::chrono::milliseconds(50));
  // Shutdown: every job still here ends as cancelled, or with the given error (never as a
  // normal finish: a client must not take a cut-off answer for a complete one).
  const bool err = !stop_error_.empty();
  std::vector<std::shared_ptr<Job>> rest;
  queue_.pop_all(&rest, std::chrono::milliseconds(0));
  for (auto& s : running_) {
    if (s->done) continue;
    TokenEvent e;
    end_event(*s, err ? FinishReason::error : FinishReason::cancelled, e);
    if (err) e.error = stop_error_;
    s->job->events.push(std::move(e));
  }
  for (auto& j : waiting_) rest.push_back(j);
  for (auto& j : rest) {
    TokenEvent e;
    e.finish = err ? FinishReason::error : FinishReason::cancelled;
    e.error = stop_error_;
    e.refused = err;
    stats_.waiting--;
    j->events.push(std::move(e));
  }
  running_.clear();
  waiting_.clear();
}

void Scheduler::refuse_waiting() {
  queue_.pop_all(&waiting_, std::chrono::milliseconds(0));
  for (auto& j : waiting_) {
    TokenEvent e;
    e.finish = FinishReason::error;
    e.error = "the server is shutting down; retry on another instance";
    e.refused = true;
    stats_.waiting--;
    j->events.push(std::move(e));
  }
  waiting_.clear();
}

void Scheduler::take_new_jobs(std::chrono::milliseconds wait) {
  queue_.pop_all(&waiting_, wait);
}

void Scheduler::drop_cancelled() {
  auto cancelled_event = [] {
    TokenEvent e;
    e.finish = FinishReason::cancelled;
    return e;
  };
  for (auto& s : running_) {
    if (!s->done && s->job->is_cancelled()) {
      s->done = true;
      stats_.cancelled++;
      TokenEvent e;
      end_event(*s, FinishReason::cancelled, e);
      s->job->events.push(std::move(e));
    }
  }
  std::erase_if(running_, [](const std::unique_ptr<Sequence>& s) { return s->done; });
  std::erase_if(waiting_, [&](const std::shared_ptr<Job>& j) {
    if (!j->is_cancelled()) return false;
    stats_.cancelled++;
    stats_.waiting--;
    j->events.push(cancelled_event());
    return true;
  });
}

void Scheduler::admit() {
  size_t reserved = 0;
  for (auto& s : running_) reserved += s->reserved;
  while (!waiting_.empty() && int(running_.size()) < cfg_.parallel) {
    const GenRequest& req = waiting_.front()->req;
    const PrefixCache::Match m = prefix_cache_.find(req.prompt);
    const size_t need = reservation(req, m);
    if (!running_.empty() && reserved + need > cfg_.kv_budget_bytes) break;  // wait for memory
    auto job = waiting_.front();
    waiting_.erase(waiting_.begin());
    stats_.waiting--;
    if (start_sequence(job, m)) {
      running_.back()->reserved = need;
      reserved += need;
    }
  }
}

bool Scheduler::start_sequence(std::shared_ptr<Job> job, const PrefixCache::Match& m) {
  const GenRequest& req = job->req;
  auto fail = [&](const std::string& msg) {
    TokenEvent e;
    e.finish = FinishReason::error;
    e.error = msg;
    e.prompt_tokens = int(req.prompt.size());
    stats_.errors++;
    job->events.push(std::move(e));
    return false;
  };
  if (req.prompt.empty()) return fail("empty prompt");
  if (int64_t(req.prompt.size()) >= cfg_.ctx)
    return fail("prompt has " + std::to_string(req.prompt.size()) + " tokens, context is " + std::to_string(cfg_.ctx));
  for (int64_t p : req.snapshot_at)
    if (p <= 0 || p > int64_t(req.prompt.size()))
      return fail("snapshot position " + std::to_string(p) + " outside the prompt (" + std::to_string(req.prompt.size()) + " tokens)");
  std::unique_ptr<Sequence> s;
  try {
    s = std::make_unique<Sequence>(job, tok_);
    if (req.forced_tool || req.response_schema) {
      if (!cvocab_) cvocab_ = ConstraintVocab::build(tok_, vocab_);
      // The tokens the answer may take: max_tokens, else what the context leaves.
      const int budget = req.max_tokens > 0 ? req.max_tokens : int(std::max<int64_t>(2, cfg_.ctx - int64_t(req.prompt.size()) - 1));
      if (req.forced_tool) {
        ForcedToolCall spec = *req.forced_tool;
        // Leave room for the block: reasoning gets at most half of max_tokens.
        if (req.max_tokens > 0) spec.max_reasoning_tokens = std::min(spec.max_reasoning_tokens, req.max_tokens / 2);
        s->constraint = std::make_unique<ToolCallConstraint>(spec, cvocab_);
      } else {
        // Thinking mode: the reasoning takes at most half of the budget, then </think> is forced.
        s->constraint = std::make_unique<JsonConstraint>(req.response_schema, cvocab_, budget,
                                                         req.output.mode == OutputMode::chat_thinking, budget / 2);
      }
    }
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  // Prefix cache: fork the entry sharing the longest prefix.
  const std::span<const int32_t> prompt(req.prompt);
  if (m.entry >= 0) {
    s->state = prefix_cache_.fork(m, &s->hit_logits);
    int64_t keep = m.common;
    if (m.exact && keep == int64_t(prompt.size())) {
      s->sample_now = true;
    } else {
      if (keep == int64_t(prompt.size())) --keep;  // need the last prompt token's logits
      if (keep < s->state->n_past()) model::truncate_state(fp_, *s->state, keep);
    }
    s->prefilled = s->sample_now ? int64_t(prompt.size()) : keep;
  } else {
    s->state = fp_.new_state();
  }
  s->cached = int(s->prefilled);
  stats_.prompt_tokens += prompt.size();
  stats_.cached_tokens += uint64_t(s->cached);
  running_.push_back(std::move(s));
  return true;
}

void Scheduler::sample_and_emit(Sequence& s, std::span<const float> row) {
  int32_t tok = kNoToken;
  SampleResult r;
  const int budget = s.job->req.reasoning_budget;
  const int end_after = s.job->req.end_turn_after;
  if (budget >= 0 && s.output.in_reasoning() && s.output.reasoning_tokens() >= budget && s.output.think_end_token() >= 0) {
    tok = s.output.think_end_token();  // the reasoning budget is spent: close the block
    if (s.constraint) s.constraint->accept(tok);
  } else if (end_after >= 0 && int(s.generated.size()) >= end_after && !s.output.in_reasoning() && !s.constraint) {
    tok = eos_;  // --end-turn-after: the turn ends here
  } else if (s.constraint) {
    masked_.assign(row.begin(), row.end());
    const int32_t forced = s.constraint->next(masked_);
    if (forced >= 0) {
      tok = forced;
    } else {
      r = s.sampler.sample(masked_, s.generated);
      tok = r.token;
    }
    if (tok == kNoToken) tok = eos_;
    s.constraint->accept(tok);
  } else {
    r = s.sampler.sample(row, s.generated);
    tok = r.token == kNoToken ? eos_ : r.token;
  }
  s.generated.push_back(tok);
  stats_.generated_tokens++;

  const GenRequest& req = s.job->req;
  TokenEvent e;
  e.token = tok;
  e.logprob = r.logprob;
  if (req.sampling.logprobs || req.sampling.top_logprobs > 0) {
    auto top = r.top_logprobs();
    e.top.assign(top.begin(), top.end());
  }
  e.prompt_tokens = int(req.prompt.size());
  e.cached_tokens = s.cached;
  e.generated = int(s.generated.size());

  // The text's verdict first (a stop string, the EOS marker), then the engine's own reasons.
  FinishReason fin = s.output.push(tok, e.text);
  const bool stop_tok = tok == eos_ ||
      std::find(req.stop_token_ids.begin(), req.stop_token_ids.end(), tok) != req.stop_token_ids.end();
  if (fin != FinishReason::stop_string) {
    if (s.constraint && s.constraint->done()) fin = s.constraint->done_reason();
    else if (stop_tok || fin == FinishReason::eos) fin = FinishReason::eos;
    else if (req.max_tokens > 0 && int(s.generated.size()) >= req.max_tokens && !(s.constraint && s.constraint->in_block()))
      fin = FinishReason::max_tokens;
    else if (int64_t(req.prompt.size() + s.generated.size()) >= cfg_.ctx) fin = FinishReason::context_full;
  }
  if (fin != FinishReason::none) {
    end_event(s, fin, e);
    s.job->events.push(std::move(e));
    finish(s, row);
  } else {
    s.job->events.push(std::move(e));
    s.pending = tok;
  }
}

void Scheduler::end_event(Sequence& s, FinishReason why, TokenEvent& e) {
  e.finish = s.output.finish(why, e.text);
  e.stop_string = s.output.matched_stop();
  e.message = s.output.message();
  e.reasoning_tokens = s.output.reasoning_tokens();
  e.prompt_tokens = int(s.prompt().size());
  e.cached_tokens = s.cached;
  e.generated = int(s.generated.size());
  e.state_bytes = s.state ? s.state->bytes() : 0;
}

void Scheduler::finish(Sequence& s, std::span<const float> last_row) {
  s.done = true;
  stats_.finished++;
  // The final state (prompt + generated but the last token) joins the prefix cache, with the
  // logits that predicted that last token.
  if (s.state)
    prefix_cache_.insert(std::move(s.state), std::vector<float>(last_row.begin(), last_row.end()));
}

bool Scheduler::step_once(std::chrono::milliseconds wait) {
  const bool idle = running_.empty() && waiting_.empty();
  take_new_jobs(idle ? wait : std::chrono::milliseconds(0));
  drop_cancelled();
  if (draining_) refuse_waiting();
  else admit();

  // Prompts the cache held entirely: sample from the stored logits.
  for (auto& s : running_) {
    if (s->sample_now && !s->done) {
      s->sample_now = false;
      std::vector<float> row = std::move(s->hit_logits);
      sample_and_emit(*s, row);
    }
  }

  // One batch: every decode token, then prefill chunks within the step budget.
  std::vector<model::SeqChunk> batch;
  std::vector<Sequence*> owners;
  std::vector<bool> completes;  // this chunk ends its prompt (its row is sampled)
  int n_decode = 0, n_prefill = 0;
  for (auto& s : running_) {
    if (s->done || s->pending < 0) continue;
    batch.push_back({s->state.get(), std::span<const int32_t>(&s->pending, 1), false});
    owners.push_back(s.get());
    completes.push_back(true);
    ++n_decode;
  }
  int budget = std::max(cfg_.step_tokens - n_decode, 16);
  for (auto& s : running_) {
    if (s->done || !s->prefilling() || budget <= 0) continue;
    const int64_t left = int64_t(s->prompt().size()) - s->prefilled;
    int64_t n = std::min<int64_t>(left, budget);
    // A chunk ends at each of the request's snapshot points, where the state is snapshotted
    // after the forward (the prefix cache cuts entries back to those without replay).
    for (int64_t p : s->job->req.snapshot_at)
      if (p > s->prefilled && p < s->prefilled + n) n = p - s->prefilled;
    batch.push_back({s->state.get(), std::span<const int32_t>(s->prompt().data() + s->prefilled, size_t(n)), false});
    owners.push_back(s.get());
    completes.push_back(n == left);
    s->prefilled += n;
    budget -= int(n);
    n_prefill += int(n);
  }

  if (!batch.empty()) {
    const auto t0 = std::chrono::steady_clock::now();
    bool ok = true;
    std::string err;
    try {
      fp_.forward(batch, logits_);
    } catch (const std::exception& e) {
      ok = false;
      err = e.what();
    }
    const auto us = uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(
                                 std::chrono::steady_clock::now() - t0).count());
    stats_.steps++;
    const int rows = n_decode + n_prefill;
    stats_.decode_tokens += uint64_t(n_decode);
    stats_.prefill_tokens += uint64_t(n_prefill);
    stats_.decode_us += us * uint64_t(n_decode) / uint64_t(std::max(rows, 1));
    stats_.prefill_us += us * uint64_t(n_prefill) / uint64_t(std::max(rows, 1));
    if (!ok) {
      log::error("forward failed: %s", err.c_str());
      for (Sequence* s : owners) {
        if (s->done) continue;
        s->done = true;
        stats_.errors++;
        TokenEvent e;
        e.finish = FinishReason::error;
        e.error = "forward pass failed: " + err;
        s->job->events.push(std::move(e));
      }
    } else {
      const size_t V = size_t(vocab_);
      for (size_t i = 0; i < batch.size(); ++i) {
        Sequence* s = owners[i];
        if (s->done) continue;
        std::span<const float> row(logits_.data() + i * V, V);
        if (s->pending < 0 && std::ranges::find(s->job->req.snapshot_at, s->prefilled) != s->job->req.snapshot_at.end())
          s->state->snapshot();
        if (s->pending < 0 && s->job->req.report_prefill) {
          TokenEvent p;
          p.prompt_tokens = int(s->prompt().size());
          p.cached_tokens = s->cached;
          p.prefilled = s->prefilled;
          s->job->events.push(std::move(p));
        }
        if (s->pending >= 0) {
          s->pending = -1;
          if (s->job->is_cancelled()) continue;  // freed before the next step
          sample_and_emit(*s, row);
        } else if (completes[i]) {
          prefix_cache_.insert_copy(*s->state, row);  // the state at the end of the prompt
          if (s->job->is_cancelled()) continue;
          sample_and_emit(*s, row);
        }
      }
    }
  }
  std::erase_if(running_, [](const std::unique_ptr<Sequence>& s) { return s->done; });

  size_t kv = 0;
  for (auto& s : running_)
    if (s->state) kv += s->state->bytes();
  stats_.running = int64_t(running_.size());
  stats_.kv_bytes = kv;
  stats_.cache_bytes = prefix_cache_.bytes();
  stats_.cache_entries = prefix_cache_.size();
  return !batch.empty() || !running_.empty();
}

}  // namespace dsv4::engine
