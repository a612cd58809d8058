// dsv4 server: the seam between the HTTP layer (http_server.cpp: routes, auth, SSE, the wait
// loop) and the two API dialects (openai.cpp, anthropic.cpp: every byte of JSON). A dialect
// turns a request body into a PreparedRequest (the engine request, with its stop strings and
// output mode, + a Responder) and its Responder turns the engine's typed text events into SSE
// frames or a final body, and the engine's FinishReason into its own strings. No JSON here.
#pragma once
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/queue.h"
#include "engine/request.h"
#include "text/chat_template.h"
#include "text/output_parser.h"

namespace dsv4::text {
class Tokenizer;
}

namespace dsv4::server {

// A failure the client sees: HTTP status + message (the dialect shapes the body).
struct ApiError : std::runtime_error {
  int status;
  std::string type;   // OpenAI error.type / Anthropic error.type
  std::string param;
  std::string code;   // OpenAI error.code ("" = the default for the status)
  ApiError(int st, std::string ty, const std::string& msg, std::string p = "", std::string c = "")
      : std::runtime_error(msg), status(st), type(std::move(ty)), param(std::move(p)), code(std::move(c)) {}
};
ApiError bad_request(const std::string& msg, const std::string& param = "");

struct Usage {
  int prompt = 0, cached = 0, completion = 0, reasoning = 0;
};

struct TokenLogprobInfo {
  std::string token;  // decoded bytes of the token (may be part of a UTF-8 character)
  float logprob = 0.0f;
  std::vector<std::pair<std::string, float>> top;
};

struct Outcome {
  engine::FinishReason finish = engine::FinishReason::eos;
  std::string stop_sequence;   // the stop string matched (FinishReason::stop_string)
  text::ParsedMessage message; // what the client gets (streamed events spelled the same)
  Usage usage;
  std::vector<TokenLogprobInfo> logprobs;
  std::string error;           // FinishReason::error
};

class Responder {
 public:
  virtual ~Responder() = default;
  // SSE frames. begin: after the first engine event (usage.prompt/cached known).
  virtual std::string stream_begin(const Usage& u) = 0;
  virtual std::string stream_events(std::span<const text::ParseEvent> ev,
                                    std::span<const TokenLogprobInfo> lp) = 0;
  virtual std::string stream_end(const Outcome& o) = 0;
  virtual std::string stream_error(const std::string& msg) = 0;
  // Non-stream body.
  virtual std::string response(const Outcome& o) = 0;
};

struct ServedModel {
  std::string name;                  // --served-name
  std::vector<std::string> aliases;  // also accepted in `model`
  int64_t ctx = 0;
  int64_t max_output = 0;  // --max-tokens: most tokens one request generates (0 = the rest of ctx)
  int end_turn_after = 0;  // --end-turn-after: answers end (EOS) after this many tokens (0 = off)
  // The checkpoint's prompt encoder (reasoning-effort table; nullptr = the original V4 one) and
  // the effort used when a request names none ("" = none; --reasoning-effort, else the table's).
  const text::EffortTable* effort_table = nullptr;
  std::string default_effort;
  // Sets cr's effort table and maps its reasoning effort (or the default) onto it; throws
  // dsv4::Error for values that are not effort levels.
  void apply_effort(text::ChatRequest& cr) const;
  // The served name for a requested one ("" = served model); nullopt: unknown (404).
  std::optional<std::string> resolve(const std::string& requested) const;
};

struct PreparedRequest {
  engine::GenRequest gen;  // gen.output: stop strings and output mode
  bool stream = false;
  bool want_logprobs = false;
  std::string model;
  std::unique_ptr<Responder> responder;
};

// Everything a dialect needs to build a request.
struct DialectContext {
  const text::Tokenizer& tok;
  const ServedModel& model;
  std::string request_id;
  engine::TokenRunCache* runs = nullptr;  // sampled token runs replayed in history (may be null)
  engine::ReasoningMemo* memo = nullptr;  // reasoning of tool-call turns by call id (may be null)
};

// Tool-call ids of a response: "call_..." (OpenAI) / "toolu_..." (Anthropic), i-th call.
std::string tool_call_id(const std::string& request_id, int i, bool anthropic);

namespace openai {
PreparedRequest prepare_chat(const std::string& body, const DialectContext& ctx);
PreparedRequest prepare_completion(const std::string& body, const DialectContext& ctx);
std::string error_body(const ApiError& e);
std::string models_body(const ServedModel& m);
std::string model_body(const ServedModel& m);
std::string health_body(const ServedModel& m, const std::string& status, int running, int waiting);
}  // namespace openai

// The Responses API (responses.cpp): POST /v1/responses, GET /v1/responses/{id}.
namespace responses {
PreparedRequest prepare(const std::string& body, const DialectContext& ctx);
std::string get(const std::string& id);  // a stored response's body; ApiError 404 if not held
}  // namespace responses

namespace anthropic {
PreparedRequest prepare_messages(const std::string& body, const DialectContext& ctx);
std::string count_tokens(const std::string& body, const DialectContext& ctx);
std::string error_body(const ApiError& e);
std::string stream_error_frame(const std::string& type, const std::string& msg);
}  // namespace anthropic

// A fresh response id: prefix + time + counter ("chatcmpl-...", "cmpl-...", "msg_..."). Defined in
// openai.cpp with the other helpers both dialects share (dialect_common.h).
std::string new_id(const char* prefix);

}  // namespace dsv4::server
