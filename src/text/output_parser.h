// dsv4 text: model output -> reasoning, content and DSML tool calls (API-NOTES §2.5).
//
// Two parsers over the same grammar:
//   * parse_completion_text: the official `parse_message_from_completion_text`, one shot and
//     strict. It defines what a well-formed completion is and which error it raises otherwise.
//   * OutputParser: a streaming state machine fed the decoded text of each sampled token. It
//     emits typed events as soon as text can no longer be part of a marker (only a possible
//     marker prefix is held back), streams tool-call arguments as JSON fragments while the
//     parameter values are generated, applies stop strings to answer text only, and never
//     throws or drops text on malformed output: what cannot be parsed becomes plain content, and
//     the official error is reported by finish(). For well-formed text the finished message is
//     exactly the official result.
//
// Grammar (thinking mode starts inside the reasoning, after the prompt's `<think>`):
//   [reasoning `</think>`] content [`\n\n<｜DSML｜tool_calls>\n` invoke* `</｜DSML｜tool_calls>`] EOS
//   invoke    = `<｜DSML｜invoke name="N">\n` (param `\n`)* `</｜DSML｜invoke>\n`
//   param     = `<｜DSML｜parameter name="K" string="true|false">VALUE</｜DSML｜parameter>`
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "text/py_json.h"

namespace dsv4::text {

struct ParsedToolCall {
  std::string name;
  std::string arguments;  // JSON object text: {"k": "string value", "k2": <raw non-string>}
};

struct ParsedMessage {
  std::string content;
  std::string reasoning_content;
  std::vector<ParsedToolCall> tool_calls;
};

// The exception the official parser raises: type "AssertionError" (its five structural asserts)
// or "ValueError" (tool-call markup), and its message.
struct ParseError {
  std::string type;
  std::string message;
};

// {"role":"assistant","content":...,"reasoning_content":...,
//  "tool_calls":[{"type":"function","function":{"name":...,"arguments":...}}]}
Json parsed_message_to_json(const ParsedMessage& m);

struct StrictParseResult {
  ParsedMessage message;            // valid only when !error
  std::optional<ParseError> error;
};
// parse_message_from_completion_text(text, "thinking" | "chat").
StrictParseResult parse_completion_text(std::string_view text, bool thinking);

enum class ParseEventKind : uint8_t {
  reasoning_delta,      // text
  content_delta,        // text
  tool_call_start,      // tool_index, name
  tool_call_arguments,  // tool_index, text: next piece of the arguments JSON
  tool_call_end,        // tool_index
  done,                 // finish() ran; error set when the official parser rejects the text
};

struct ParseEvent {
  ParseEventKind kind = ParseEventKind::content_delta;
  std::string text;
  int tool_index = -1;
  std::string name;
  std::optional<ParseError> error;  // done only
};

struct OutputParserOptions {
  bool thinking = true;           // output starts inside the reasoning
  std::vector<std::string> stop;  // stop strings, matched in content only
};

class OutputParser {
 public:
  explicit OutputParser(OutputParserOptions opt);

  // Decoded text of the next token (control tokens by their spelling, e.g. the EOS token as
  // "<｜end▁of▁sentence｜>"). Markers are matched on the text, as the official parser does;
  // `is_special` is informational. Events are appended to `events`.
  void push(std::string_view text, bool is_special, std::vector<ParseEvent>& events);
  // End of generation: flushes held-back text, closes an open tool call, settles the message and
  // the error, and appends a `done` event. Further push() calls are ignored.
  void finish(std::vector<ParseEvent>& events);

  // How the text ended, if it did: the EOS marker, or a stop string in the answer (then
  // matched_stop() names it). Why the generation as a whole ended is the engine's
  // FinishReason (engine/finish_reason.h); the parser only reports what the text says.
  bool saw_eos() const { return saw_eos_; }
  bool stop_matched() const { return !matched_stop_.empty(); }
  const std::string& matched_stop() const { return matched_stop_; }
  // EOS or a stop string was seen: the caller should stop generating.
  bool should_stop() const { return saw_eos_ || stop_matched(); }
  // After finish(): the official result for well-formed text, else the best-effort message
  // (which is also what the events spelled out).
  const ParsedMessage& message() const { return final_; }
  // The streamed message so far (concatenation of the events).
  const ParsedMessage& streamed_message() const { return streamed_; }
  const std::optional<ParseError>& error() const { return error_; }
  const std::string& raw_text() const { return raw_; }

 private:
  enum class State : uint8_t {
    reasoning, content, block, invoke_header, param_header, param_value, after_param,
    after_block, junk, done, stopped,
  };

  bool step(std::vector<ParseEvent>& ev);
  bool step_text(std::vector<ParseEvent>& ev);
  bool step_expect(std::vector<ParseEvent>& ev);
  bool step_invoke_header(std::vector<ParseEvent>& ev);
  bool step_param_header(std::vector<ParseEvent>& ev);
  bool step_param_value(std::vector<ParseEvent>& ev);

  void emit_text(std::vector<ParseEvent>& ev, std::string_view s);  // reasoning or content
  void emit_args(std::vector<ParseEvent>& ev, std::string_view s);
  void emit_value(std::vector<ParseEvent>& ev, std::string_view s);
  void start_call(std::vector<ParseEvent>& ev, std::string name);
  void end_call(std::vector<ParseEvent>& ev);
  void close_open_call(std::vector<ParseEvent>& ev);
  void degrade();
  void consume(size_t n, bool structural);

  OutputParserOptions opt_;
  // Markers of the text states by priority, then the stop strings; built once.
  std::vector<std::string> reasoning_markers_, content_markers_, junk_markers_;
  State state_;
  bool saw_eos_ = false;
  bool finished_ = false;
  bool flushing_ = false;    // inside finish(): no more text will come
  std::string buf_;          // received, not yet consumed
  std::string uncommitted_;  // consumed tool markup not yet represented by an event
  std::string raw_;          // everything received (for the strict parse at finish)
  std::string matched_stop_;
  bool in_call_ = false;
  bool args_open_ = false;       // "{" emitted for the open call
  bool value_is_string_ = false;
  std::vector<std::string> param_names_;  // of the open call
  ParsedMessage streamed_;
  ParsedMessage final_;
  std::optional<ParseError> error_;
};

}  // namespace dsv4::text
