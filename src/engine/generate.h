// dsv4 engine: one sequence, start to finish, for `dsv4 run` and the benchmarks. Chunked prefill
// with progress, one-token decode, and the generation loop: sample -> detokenise (UTF-8 safe) ->
// stop strings / EOS / budget -> text out. The server does not use this loop (its scheduler
// batches many sequences); both are built on the same ForwardPass, Sampler and text pieces.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/seq_state.h"
#include "engine/sampling.h"
#include "model/forward.h"
#include "text/tokenizer.h"

namespace dsv4::engine {

inline constexpr int64_t kDefaultPrefillChunk = 256;

struct PrefillProgress {
  int64_t done = 0;     // tokens of this call prefilled so far
  int64_t total = 0;    // tokens of this call
  int64_t n_past = 0;   // the state's length now
  double seconds = 0;   // since the call began
};
using PrefillProgressFn = std::function<void(const PrefillProgress&)>;

// Appends `tokens` to `st` in chunks of at most `chunk` rows (chunked prefill equals one-shot
// prefill, issue 3) and leaves the [vocab] logits of the last token in `logits` (only that row
// goes through the LM head). `progress`, when set, runs after every chunk. Empty `tokens`: no-op,
// `logits` untouched.
void prefill(model::ForwardPass& fp, cache::SeqState& st, std::span<const int32_t> tokens, std::vector<float>& logits,
             int64_t chunk = kDefaultPrefillChunk, const PrefillProgressFn& progress = {});

// One decode step: appends `token` to `st`; `logits` receives the [vocab] logits of the next position.
void decode_step(model::ForwardPass& fp, cache::SeqState& st, int32_t token, std::vector<float>& logits);

// Index of the largest logit (ties to the lowest id).
int32_t argmax(std::span<const float> logits);

// How the generated text is read: plain text, or a chat turn through the output parser
// (text/output_parser.h), which separates reasoning from the answer.
enum class OutputMode { plain, chat, chat_thinking };

struct GenerateOptions {
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (plain: over all text; chat: over the answer)
  int max_tokens = 256;           // generated tokens; <= 0: until EOS or the context is full
  int64_t ctx = 0;                // prompt + generated tokens; 0: the model's max_position_embeddings
  OutputMode mode = OutputMode::plain;
  int64_t prefill_chunk = kDefaultPrefillChunk;
};

enum class GenerateFinish { eos, stop_string, max_tokens, context_full, no_token };
const char* generate_finish_name(GenerateFinish f);

enum class TextKind { content, reasoning, tool_call };
// Receives the generated text as it becomes safe to show: whole UTF-8 characters, never the text
// of a stop string. tool_call pieces are "name" then argument JSON fragments.
using TextSink = std::function<void(TextKind, std::string_view)>;

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // from the first sample to the end (sampling included)
  int64_t context = 0;        // tokens in the state at the end
  int64_t ctx_limit = 0;
  size_t state_bytes = 0;     // SeqState::bytes() at the end
  GenerateFinish finish = GenerateFinish::max_tokens;
  std::vector<int32_t> tokens;  // the generated ids
};

// Effective context limit for a model and a requested --ctx (0 = the model's).
int64_t context_limit(const model::Config& c, int64_t requested);

// Prefills `prompt` into a fresh state and generates. Throws dsv4::Error before any work when
// the prompt does not fit the context limit (it must leave room for one generated token) or the
// options are out of range.
GenerateStats generate(model::ForwardPass& fp, const text::Tokenizer& tok, std::span<const int32_t> prompt,
                       const GenerateOptions& opt, const TextSink& sink, const PrefillProgressFn& progress = {});

}  // namespace dsv4::engine
