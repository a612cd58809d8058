// dsv4 text: DeepSeek-V4 prompt rendering (API-NOTES §2), the rules of the official
// `encoding/encoding_dsv4.py` re-implemented over typed messages.
//
// Pipeline (each step mirrors one function of the official encoder):
//   request JSON --chat_request_from_openai / chat_request_from_anthropic--> ChatRequest
//   merge_tool_messages      tool results (+ following user text) become one user turn
//   sort_tool_results        results re-ordered to the call order of the preceding assistant
//   drop_thinking_messages   thinking mode: old reasoning and old developer turns removed
//   render_prompt_segments   one pass over the messages -> [control token | plain text] segments
// Control tokens are only ever produced by the template; message text (even when it spells
// `<think>` or `<｜User｜>`) stays plain text, so a user cannot forge turns.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "text/py_json.h"

namespace dsv4::text {

// ---------------------------------------------------------------------------------------------
// Control tokens (special_tokens.json of testdata/encoding; ids of the V4 vocabulary)
// ---------------------------------------------------------------------------------------------
enum class ControlToken : uint8_t {
  bos, eos, user, assistant, think_begin, think_end, dsml, latest_reminder,
  task_action, task_query, task_authority, task_domain, task_title, task_read_url,
};
inline constexpr int kNumControlTokens = 14;

std::string_view control_token_spelling(ControlToken t);
int32_t control_token_id(ControlToken t);
// The control token spelled exactly `s`, if any.
std::optional<ControlToken> control_token_from_spelling(std::string_view s);

// One piece of a rendered prompt: a control token (one id) or a run of plain text.
struct PromptSegment {
  bool is_control = false;
  ControlToken token = ControlToken::bos;  // when is_control
  std::string text;                        // when !is_control (never empty)
};

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------
enum class Role : uint8_t { system, user, assistant, tool, developer, latest_reminder };
const char* role_name(Role r);

struct ToolCall {
  std::string id;
  std::string name;
  // `function.arguments` as given: normally a string holding a JSON object. Anything else (a
  // non-JSON string, an object, null) is rendered the way the official encoder's fallback does:
  // one parameter named "arguments".
  Json arguments = Json("{}");
};

// A user turn after merging: text parts and tool results, joined by "\n\n" when rendered.
struct ContentBlock {
  bool is_tool_result = false;
  std::string text;         // text, or the tool result content (list parts already joined)
  std::string tool_use_id;  // tool results only
};

struct Message {
  Role role = Role::user;
  std::string content;            // text of the message (content-part lists already joined)
  std::string reasoning_content;  // assistant; "" when absent
  std::vector<ToolCall> tool_calls;  // assistant
  std::string tool_call_id;          // tool
  Json tools;            // system/developer: OpenAI `tools` array (null or [] = none)
  Json response_format;  // system/developer: null = none
  std::optional<std::string> task;  // quick-instruction task (action, query, ...)
  bool wo_eos = false;   // assistant: render without EOS (prefix continuation)
  std::vector<ContentBlock> blocks;  // user turns after merge_tool_messages
};

enum class ThinkingMode : uint8_t { chat, thinking };

// Reasoning-effort prefix table of one checkpoint (API-NOTES §2.2). Effort values not in the
// table are rejected; no effort (null) adds nothing.
struct EffortTable {
  std::string name;
  std::vector<std::pair<std::string, std::string>> prefixes;  // effort -> text after BOS
  std::string default_effort;  // what the encoder uses when a request names none ("" = none)

  static const EffortTable& v4();       // original release: high -> "", max -> "Absolute maximum"
  static const EffortTable& v4_0731();  // V4-Flash-0731: low -> "", high -> "Absolute maximum",
                                        // max -> "Beyond maximum"
  // Table by name ("v4", "v4-0731"); nullptr if unknown.
  static const EffortTable* by_name(std::string_view name);
  // The prefix for `effort`; throws dsv4::Error if the table has no such value.
  const std::string& prefix(const std::string& effort) const;
  // The table of a checkpoint dir: the dir's own `encoding/encoding_dsv4.py` decides when present
  // (v4-0731 if it has the "Beyond maximum" paragraph); otherwise v4-0731 when the dir's name or
  // config.json's _name_or_path says 0731 or 0813, or config.json has the DSpark keys (only the
  // 0731/0813 releases have them); otherwise v4. A missing dir gives v4.
  // `why`, when given, gets what decided it (for the start-up line).
  static const EffortTable& for_model_dir(const std::string& model_dir, std::string* why = nullptr);
  // The `--encoder` flag: "auto" (for_model_dir) or a table name; throws dsv4::Error otherwise.
  static const EffortTable& from_flag(const std::string& flag, const std::string& model_dir,
                                      std::string* why = nullptr);
};

// An API effort value mapped onto `table` the way DeepSeek's API does (minimal -> low,
// medium -> high, xhigh -> high, ultra -> max; none or "" -> no effort). A level the table does
// not list but that adds nothing on that checkpoint ("low" on the original V4) -> no effort.
// Throws dsv4::Error for values that are not effort levels.
std::optional<std::string> normalize_reasoning_effort(std::string_view api_value, const EffortTable& table);

struct RenderOptions {
  ThinkingMode thinking_mode = ThinkingMode::thinking;
  bool drop_thinking = true;
  std::optional<std::string> reasoning_effort;
  const EffortTable* effort_table = nullptr;  // nullptr = EffortTable::v4()
  bool add_bos = true;
};

// A request mapped onto the encoder's inputs.
struct ChatRequest {
  std::vector<Message> messages;
  RenderOptions options;
  std::optional<int64_t> thinking_budget;  // Anthropic `thinking.budget_tokens` (not rendered)
};

// OpenAI chat-completions body (plus the DeepSeek/encoder extras of testdata/encoding/README.md):
// messages, tools, response_format, reasoning_effort, thinking (bool or {"type":...}),
// drop_thinking. `tools` / `response_format` are attached to messages[0] when it is a system
// message, else to a new empty system message inserted in front. Throws dsv4::Error naming the
// offending key.
ChatRequest chat_request_from_openai(const Json& body);
// One OpenAI-style message object (role, content, reasoning_content, tool_calls, tool_call_id,
// and the encoder extras tools, response_format, task, wo_eos / prefix).
Message message_from_openai(const Json& msg, const std::string& where);

// Anthropic Messages body: system (string or text blocks), messages with text / thinking /
// tool_use / tool_result blocks, tools ({name, description, input_schema}),
// thinking {type: enabled|disabled, budget_tokens}, output_config.effort. A final assistant
// message is a prefill and is rendered without EOS.
ChatRequest chat_request_from_anthropic(const Json& body);
// The message list alone.
std::vector<Message> messages_from_anthropic(const Json& body);

// Encoder preprocessing steps, exposed for tests.
std::vector<Message> merge_tool_messages(const std::vector<Message>& messages);
void sort_tool_results(std::vector<Message>& merged);
std::vector<Message> drop_thinking_messages(const std::vector<Message>& merged);

// The full rendering: messages (OpenAI shape, tool messages allowed) -> segments.
// Throws dsv4::Error for inputs the official encoder rejects (unknown task, empty developer
// message, effort value not in the table).
std::vector<PromptSegment> render_prompt_segments(const std::vector<Message>& messages,
                                                  const RenderOptions& opt);
std::vector<PromptSegment> render_prompt_segments(const ChatRequest& req);
// Segments -> prompt string (control tokens by spelling).
std::string segments_to_string(const std::vector<PromptSegment>& segs);
std::string render_prompt(const ChatRequest& req);
// Segments -> token ids: control tokens by id, plain runs through `encode_plain` (byte-level BPE
// with no added-token matching), the `ids` policy of testdata/encoding/README.md.
std::vector<int32_t> segments_to_ids(
    const std::vector<PromptSegment>& segs,
    const std::function<std::vector<int32_t>(std::string_view)>& encode_plain);

// Tool-call arguments as the official encoder renders them in DSML: (name, value, is_string)
// in argument order. Exposed for the server, which may re-render sampled calls.
struct DsmlParameter {
  std::string name;
  std::string value;  // raw string value, or Python JSON of a non-string value
  bool is_string = false;
};
std::vector<DsmlParameter> dsml_parameters_from_arguments(const Json& arguments);

}  // namespace dsv4::text
