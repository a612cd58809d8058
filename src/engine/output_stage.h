// dsv4 engine: the text side of one sequence, run by the scheduler right after each sample:
// token ids -> incremental detokeniser (whole UTF-8 characters only) -> output parser
// (text/output_parser.h: reasoning, answer, tool calls) or, for plain text, the stop checker ->
// typed text events, and the reasons the text gives to stop (EOS marker, stop string). The one
// copy of this pipeline: the server and `dsv4 run` only read the events it puts on TokenEvents.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/finish_reason.h"
#include "engine/sampling.h"
#include "text/output_parser.h"
#include "text/tokenizer.h"

namespace dsv4::engine {

// How the generated text is read: plain text (stop strings over all of it, EOS ends it), or a
// chat turn through the output parser (stop strings in the answer only), starting in the
// answer (chat) or inside the reasoning (chat_thinking: the prompt ended in <think>).
enum class OutputMode : uint8_t { plain, chat, chat_thinking };

// What the text layer decided for a request: part of the GenRequest the engine receives.
struct OutputSpec {
  OutputMode mode = OutputMode::plain;
  std::vector<std::string> stop;  // stop strings, non-empty; never shown
};

class OutputStage {
 public:
  // Throws dsv4::Error for an empty stop string. `stop_token_ids` (besides EOS) end plain text
  // the way EOS does.
  OutputStage(const text::Tokenizer& tok, const OutputSpec& spec, const std::vector<int32_t>& stop_token_ids = {});

  // One generated token: appends the text it releases to `out`. Returns eos or stop_string when
  // the text ends the generation, else none.
  FinishReason push(int32_t token, std::vector<text::ParseEvent>& out);

  // The generation ended (for `why`, which may come from the text or not): releases held text (an
  // incomplete character, a possible stop-string or marker prefix) unless EOS or a stop string
  // ended plain text, settles the parsed message, appends the parser's `done` event. Returns the
  // final reason: stop_string when the released text completes a stop string, tool_calls when a
  // chat turn with tool calls ended at EOS, else `why`.
  FinishReason finish(FinishReason why, std::vector<text::ParseEvent>& out);

  const std::string& matched_stop() const { return matched_stop_; }
  // The message the events spelled out (plain text: all of it as content).
  const text::ParsedMessage& message() const;
  // Generated tokens before </think> (thinking mode), </think> itself not counted.
  int reasoning_tokens() const { return reasoning_tokens_; }
  // Thinking mode, before </think>: the next token is still reasoning. think_end_token(): its id.
  bool in_reasoning() const { return in_reasoning_; }
  int32_t think_end_token() const { return think_end_; }

 private:
  void content(std::string_view s, std::vector<text::ParseEvent>& out);

  const text::Tokenizer& tok_;
  text::IncrementalDecoder dec_;
  std::optional<text::OutputParser> parser_;  // chat modes
  std::optional<StopChecker> checker_;        // plain
  text::ParsedMessage plain_;                 // plain: the emitted text
  std::string matched_stop_;
  const std::vector<std::string> stop_;
  int32_t think_end_;
  bool in_reasoning_;
  int reasoning_tokens_ = 0;
  bool finished_ = false;
};

}  // namespace dsv4::engine
