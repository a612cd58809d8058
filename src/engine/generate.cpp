#include "engine/generate.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "core/error.h"
#include "text/output_parser.h"

namespace dsv4::engine {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

void prefill(model::ForwardPass& fp, cache::SeqState& st, std::span<const int32_t> tokens, std::vector<float>& logits,
             int64_t chunk, const PrefillProgressFn& progress) {
  DSV4_CHECK(chunk > 0, "prefill: chunk must be positive");
  const auto t0 = Clock::now();
  const int64_t n = int64_t(tokens.size());
  for (int64_t i = 0; i < n; i += chunk) {
    const int64_t len = std::min(chunk, n - i);
    model::SeqChunk ch{&st, tokens.subspan(size_t(i), size_t(len)), /*all_logits=*/false};
    fp.forward(std::span<model::SeqChunk>(&ch, 1), logits);
    if (progress) progress(PrefillProgress{i + len, n, st.n_past(), seconds_since(t0)});
  }
}

void decode_step(model::ForwardPass& fp, cache::SeqState& st, int32_t token, std::vector<float>& logits) {
  model::SeqChunk ch{&st, std::span<const int32_t>(&token, 1), false};
  fp.forward(std::span<model::SeqChunk>(&ch, 1), logits);
}

int32_t argmax(std::span<const float> logits) {
  if (logits.empty()) return kNoToken;
  return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

const char* generate_finish_name(GenerateFinish f) {
  switch (f) {
    case GenerateFinish::eos: return "eos";
    case GenerateFinish::stop_string: return "stop_string";
    case GenerateFinish::max_tokens: return "max_tokens";
    case GenerateFinish::context_full: return "context_full";
    case GenerateFinish::no_token: return "no_token";
  }
  return "?";
}

int64_t context_limit(const model::Config& c, int64_t requested) {
  const int64_t model_max = c.max_position_embeddings > 0 ? c.max_position_embeddings : INT64_MAX;
  if (requested < 0) throw Error("--ctx must be >= 0, got " + std::to_string(requested));
  if (requested > model_max)
    throw Error("--ctx " + std::to_string(requested) + " exceeds the model's max_position_embeddings " +
                std::to_string(model_max));
  return requested > 0 ? requested : model_max;
}

namespace {

// The text side of the loop: token ids in, text for the sink out, and whether to stop.
// Plain: StopChecker over everything. Chat: the output parser (reasoning / answer / tool calls,
// stop strings in the answer only, EOS as a marker).
class TextStage {
 public:
  TextStage(const text::Tokenizer& tok, const GenerateOptions& opt, const TextSink& sink)
      : tok_(tok), dec_(tok), sink_(sink), chat_(opt.mode != OutputMode::plain) {
    if (chat_) {
      text::OutputParserOptions po;
      po.thinking = opt.mode == OutputMode::chat_thinking;
      po.stop = opt.stop;
      parser_.emplace(std::move(po));
    } else {
      StopParams sp;
      sp.stop_token_ids = {tok.eos_id()};
      sp.stop_strings = opt.stop;
      checker_.emplace(std::move(sp));
    }
  }

  // One generated token; `last`: no token follows (budget or context spent), so text held for
  // an incomplete character is released. Returns the finish reason when the text says stop.
  std::optional<GenerateFinish> push(int32_t token, bool last) {
    const bool special = tok_.is_added(token);
    std::string piece = special ? dec_.flush() + tok_.token_text(token) : dec_.push(token);
    if (last) piece += dec_.flush();
    if (chat_) {
      parser_->push(piece, special, events_);
      drain();
      if (parser_->should_stop())
        return parser_->finish_reason() == text::FinishReason::stop ? GenerateFinish::stop_string
                                                                    : GenerateFinish::eos;
      if (token == tok_.eos_id()) return GenerateFinish::eos;
      return std::nullopt;
    }
    const StopStatus s = checker_->on_token(token, token == tok_.eos_id() ? std::string_view() : piece);
    if (!s.emit.empty()) sink_(TextKind::content, s.emit);
    if (s.reason == StopReason::stop_token) return GenerateFinish::eos;
    if (s.reason == StopReason::stop_string) return GenerateFinish::stop_string;
    return std::nullopt;
  }

  // Generation is over for a reason the text did not see (budget, context): release held text.
  void finish() {
    if (chat_) {
      const std::string rest = dec_.flush();
      if (!rest.empty()) parser_->push(rest, false, events_);
      parser_->finish(events_);
      drain();
    } else {
      const std::string rest = dec_.flush();
      StopStatus s = checker_->on_token(kNoToken, rest);  // may still complete a stop string
      if (!s.emit.empty()) sink_(TextKind::content, s.emit);
      if (s.reason == StopReason::none) {
        const std::string_view tail = checker_->flush();
        if (!tail.empty()) sink_(TextKind::content, tail);
      }
    }
  }

 private:
  void drain() {
    for (const text::ParseEvent& e : events_) {
      switch (e.kind) {
        case text::ParseEventKind::reasoning_delta: sink_(TextKind::reasoning, e.text); break;
        case text::ParseEventKind::content_delta: sink_(TextKind::content, e.text); break;
        case text::ParseEventKind::tool_call_start: sink_(TextKind::tool_call, e.name + " "); break;
        case text::ParseEventKind::tool_call_arguments: sink_(TextKind::tool_call, e.text); break;
        default: break;
      }
    }
    events_.clear();
  }

  const text::Tokenizer& tok_;
  text::IncrementalDecoder dec_;
  const TextSink& sink_;
  bool chat_;
  std::optional<text::OutputParser> parser_;
  std::optional<StopChecker> checker_;
  std::vector<text::ParseEvent> events_;
};

}  // namespace

// Stays whole: prefill, then the one loop that samples, shows and feeds back each token.
GenerateStats generate(model::ForwardPass& fp, const text::Tokenizer& tok, std::span<const int32_t> prompt,
                       const GenerateOptions& opt, const TextSink& sink, const PrefillProgressFn& progress) {
  const model::Config& c = fp.model().config();
  GenerateStats s;
  s.prompt_tokens = int64_t(prompt.size());
  s.ctx_limit = context_limit(c, opt.ctx);
  if (prompt.empty()) throw Error("the prompt is empty (no tokens)");
  if (s.prompt_tokens >= s.ctx_limit)
    throw Error("the prompt is " + std::to_string(s.prompt_tokens) + " tokens, which does not fit a context of " +
                std::to_string(s.ctx_limit) + " tokens with room to generate (raise --ctx or shorten the prompt)");
  if (opt.prefill_chunk <= 0) throw Error("prefill chunk must be positive");
  opt.sampling.validate(int32_t(c.vocab_size));
  for (const auto& stop : opt.stop)
    if (stop.empty()) throw Error("--stop: stop strings must not be empty");

  Sampler sampler(opt.sampling);
  TextStage text(tok, opt, sink);
  auto st = fp.new_state();
  std::vector<float> logits;

  const auto t0 = Clock::now();
  prefill(fp, *st, prompt, logits, opt.prefill_chunk, progress);
  s.prefill_seconds = seconds_since(t0);

  const auto t1 = Clock::now();
  std::optional<GenerateFinish> fin;
  while (!fin) {
    const SampleResult r = sampler.sample(logits, s.tokens);
    if (r.token == kNoToken) {
      fin = GenerateFinish::no_token;
      break;
    }
    s.tokens.push_back(r.token);
    const int64_t n_gen = int64_t(s.tokens.size());
    const bool budget_spent = opt.max_tokens > 0 && n_gen >= opt.max_tokens;
    const bool ctx_full = s.prompt_tokens + n_gen >= s.ctx_limit;
    fin = text.push(r.token, budget_spent || ctx_full);
    if (fin) break;
    if (budget_spent) fin = GenerateFinish::max_tokens;
    else if (ctx_full) fin = GenerateFinish::context_full;
    else decode_step(fp, *st, r.token, logits);
  }
  // The parser always settles its message; plain text only has held-back text to release when
  // neither EOS nor a stop string ended it (after those, nothing more may be shown).
  if (opt.mode != OutputMode::plain || (*fin != GenerateFinish::eos && *fin != GenerateFinish::stop_string))
    text.finish();
  s.decode_seconds = seconds_since(t1);
  s.finish = *fin;
  s.generated_tokens = int64_t(s.tokens.size());
  s.context = s.prompt_tokens + s.generated_tokens;
  s.state_bytes = st->bytes();
  return s;
}

}  // namespace dsv4::engine
