// dsv4 engine: what a front end hands the scheduler (GenRequest) and what it gets back
// (TokenEvent: one per generated token, the last one with the finish reason; the text each
// token released comes with it, typed by the output stage). Plain data; no JSON.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/finish_reason.h"
#include "engine/output_stage.h"
#include "engine/sampling.h"
#include "text/json_schema.h"
#include "text/output_parser.h"

namespace dsv4::engine {

// A forced tool call (tool_choice required / named): the engine writes the DSML block itself and
// lets the model fill only the parameter values (engine/constraint.h).
enum class ParamKind { string, integer, number, boolean, object, array, null };
struct ForcedParam {
  std::string name;
  ParamKind kind = ParamKind::string;  // used when `grammar` is null
  // The value's schema: node `node` of `grammar` (the tool's compiled parameters schema). A plain
  // string (no enum, pattern, format or length) is written raw (string="true"); anything else is
  // a JSON value that follows the schema (string="false").
  std::shared_ptr<const text::JsonGrammar> grammar;
  int node = -1;
};
struct ForcedTool {
  std::string name;
  std::vector<ForcedParam> params;  // in schema order; required ones first
};
struct ForcedToolCall {
  std::vector<ForcedTool> tools;     // the model picks among these (size 1 = named)
  bool in_reasoning = false;         // the prompt ended in <think>: reasoning runs first
  int max_reasoning_tokens = 64;     // then </think> is forced
  int max_value_tokens = 24;         // per raw string parameter value
  int max_json_tokens = 64;          // per JSON parameter value (then its completion is forced)
  bool parallel = false;             // more than one call may follow (parallel_tool_calls: true)
  // tool_choice auto with strict tools: decoding stays free until the model itself opens a
  // tool-call block (writes "\n\n<｜DSML｜"); from there the block is decoded as above.
  bool on_open = false;
  int max_calls = 4;                 // calls in one block at most (parallel)
};

struct GenRequest {
  std::string id;
  std::vector<int32_t> prompt;       // rendered prompt tokens (BOS included)
  SamplingParams sampling;
  int max_tokens = 0;                // generated-token budget; <= 0: until the context is full
  std::vector<int32_t> stop_token_ids;  // besides EOS
  // Prompt positions to snapshot the state at (the state after p tokens, 0 < p <= prompt size),
  // chosen where the prompt is rendered: where a later prompt of the same conversation may
  // diverge. The prefix cache cuts a longer entry back to such a snapshot without replay.
  std::vector<int64_t> snapshot_at;
  OutputSpec output;                 // how the text is read, stop strings (decided by the text layer)
  bool report_prefill = false;       // also send a progress event after each prefill chunk
  std::shared_ptr<ForcedToolCall> forced_tool;  // null: free decoding
  // Thinking mode: after this many reasoning tokens the engine writes </think> itself (Anthropic
  // thinking.budget_tokens); < 0: no budget.
  int reasoning_budget = -1;
  // After this many generated tokens the engine writes EOS itself, ending the turn normally (serve
  // --end-turn-after: a test aid for random-weight models, which never end on their own); < 0: off.
  int end_turn_after = -1;
  // Structured output: the answer (after the reasoning, in thinking mode) is one JSON value of
  // this grammar, then EOS (engine/constraint.h JsonConstraint). Set from response_format
  // json_object / json_schema, the Responses API's text.format, Anthropic's
  // output_config.format and `dsv4 run --json-schema`; build it with text::compile_json_schema
  // (cached per schema text) or text::json_object_grammar(). Null: free text. Ignored when
  // forced_tool is set.
  std::shared_ptr<const text::JsonGrammar> response_schema;
  std::chrono::steady_clock::time_point enqueued = std::chrono::steady_clock::now();
};

// One event per generated token, in order; the one with finish != none is the last. A progress
// event (report_prefill) has token -1, finish none and prefilled > 0.
struct TokenEvent {
  int32_t token = -1;        // -1 on the final event when no token comes with it
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;  // only when sampling.logprobs / top_logprobs asked for
  // The text this token released (reasoning, answer, tool-call pieces: whole characters, never a
  // stop string); the final event also carries what finishing released and the parser's `done`.
  std::vector<text::ParseEvent> text;
  FinishReason finish = FinishReason::none;  // != none: last event of the request
  // Filled on every token event and on the final one:
  int prompt_tokens = 0;
  int cached_tokens = 0;     // prompt tokens reused from the prefix cache
  int generated = 0;         // tokens generated so far (this one included)
  int64_t prefilled = 0;     // progress events: prompt tokens in the state now
  // The final event only:
  std::string stop_string;         // FinishReason::stop_string: the one matched
  text::ParsedMessage message;     // what the text events spelled out
  int reasoning_tokens = 0;        // generated tokens before </think> (thinking mode)
  size_t state_bytes = 0;          // the sequence state's size at the end
  std::string error;               // FinishReason::error
  bool refused = false;            // FinishReason::error before the request ever ran (the server is
                                   // shutting down): the front end answers 503, not a stream error
};

}  // namespace dsv4::engine
