// dsv4 server: the Anthropic dialect (API-NOTES §3.3): /v1/messages (stream and not) and
// /v1/messages/count_tokens. Every JSON byte of the Anthropic side is written here. Each SSE
// frame carries an `event:` line (the SDK skips frames without one).
#include <chrono>
#include <ctime>
#include <limits>

#include "core/error.h"
#include "server/api.h"
#include "server/dialect_common.h"
#include "text/tokenizer.h"

namespace dsv4::server::anthropic {

using text::Json;

namespace {

std::string frame(const char* event, const Json& data) {
  return std::string("event: ") + event + "\ndata: " + dump_json(data) + "\n\n";
}

// The engine's finish reason as Anthropic's stop_reason (the one place it is mapped).
const char* stop_reason(engine::FinishReason f) {
  switch (f) {
    case engine::FinishReason::max_tokens:
    case engine::FinishReason::context_full: return "max_tokens";
    case engine::FinishReason::tool_calls: return "tool_use";
    case engine::FinishReason::stop_string: return "stop_sequence";
    default: return "end_turn";  // eos (cancelled / error never reach a client body)
  }
}

Json usage_json(const Usage& u, bool with_output) {
  Json j;
  j["input_tokens"] = u.prompt - u.cached;
  j["cache_creation_input_tokens"] = 0;
  j["cache_read_input_tokens"] = u.cached;
  j["output_tokens"] = with_output ? u.completion : 0;
  return j;
}

Json tool_input(const std::string& args) {
  Json in;
  if (text::try_parse_py_json(args, &in) && in.is_object()) return in;
  return Json::object();
}

class MessagesResponder : public Responder {
 public:
  MessagesResponder(std::string id, std::string model) : id_(std::move(id)), model_(std::move(model)) {}

  std::string stream_begin(const Usage& u) override {
    Json msg;
    msg["id"] = id_;
    msg["type"] = "message";
    msg["role"] = "assistant";
    msg["model"] = model_;
    msg["content"] = Json::array();
    msg["stop_reason"] = nullptr;
    msg["stop_sequence"] = nullptr;
    msg["usage"] = usage_json(u, false);
    return frame("message_start", {{"type", "message_start"}, {"message", msg}}) + frame("ping", {{"type", "ping"}});
  }

  std::string stream_events(std::span<const text::ParseEvent> ev, std::span<const TokenLogprobInfo>) override {
    std::string out;
    for (const auto& e : ev) {
      switch (e.kind) {
        case text::ParseEventKind::reasoning_delta:
          if (e.text.empty()) break;
          out += open(Block::thinking, {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
          out += delta({{"type", "thinking_delta"}, {"thinking", e.text}});
          break;
        case text::ParseEventKind::content_delta:
          if (e.text.empty()) break;
          out += open(Block::text, {{"type", "text"}, {"text", ""}});
          out += delta({{"type", "text_delta"}, {"text", e.text}});
          break;
        case text::ParseEventKind::tool_call_start:
          out += close();
          out += open(Block::tool, {{"type", "tool_use"}, {"id", tool_id(e.tool_index)}, {"name", e.name}, {"input", Json::object()}});
          break;
        case text::ParseEventKind::tool_call_arguments:
          if (open_ == Block::tool) out += delta({{"type", "input_json_delta"}, {"partial_json", e.text}});
          break;
        case text::ParseEventKind::tool_call_end:
          out += close();
          break;
        default:
          break;
      }
    }
    return out;
  }

  std::string stream_end(const Outcome& o) override {
    std::string out = close();
    Json d;
    d["type"] = "message_delta";
    d["delta"] = {{"stop_reason", stop_reason(o.finish)},
                  {"stop_sequence", o.finish == engine::FinishReason::stop_string ? Json(o.stop_sequence) : Json(nullptr)}};
    d["usage"] = usage_json(o.usage, true);
    out += frame("message_delta", d);
    out += frame("message_stop", {{"type", "message_stop"}});
    return out;
  }

  std::string stream_error(const std::string& msg) override { return stream_error_frame("api_error", msg); }

  std::string response(const Outcome& o) override {
    Json content = Json::array();
    if (!o.message.reasoning_content.empty())
      content.push_back({{"type", "thinking"}, {"thinking", o.message.reasoning_content}, {"signature", ""}});
    if (!o.message.content.empty() || o.message.tool_calls.empty())
      content.push_back({{"type", "text"}, {"text", o.message.content}});
    for (size_t i = 0; i < o.message.tool_calls.size(); ++i)
      content.push_back({{"type", "tool_use"}, {"id", tool_id(int(i))}, {"name", o.message.tool_calls[i].name},
                         {"input", tool_input(o.message.tool_calls[i].arguments)}});
    Json r;
    r["id"] = id_;
    r["type"] = "message";
    r["role"] = "assistant";
    r["model"] = model_;
    r["content"] = std::move(content);
    r["stop_reason"] = stop_reason(o.finish);
    r["stop_sequence"] = o.finish == engine::FinishReason::stop_string ? Json(o.stop_sequence) : Json(nullptr);
    r["usage"] = usage_json(o.usage, true);
    return dump_json(r);
  }

 private:
  enum class Block { none, thinking, text, tool };

  std::string open(Block b, Json start) {
    if (open_ == b && b != Block::tool) return "";
    std::string out = close();
    open_ = b;
    out += frame("content_block_start", {{"type", "content_block_start"}, {"index", index_}, {"content_block", std::move(start)}});
    return out;
  }
  std::string delta(Json d) {
    return frame("content_block_delta", {{"type", "content_block_delta"}, {"index", index_}, {"delta", std::move(d)}});
  }
  std::string close() {
    if (open_ == Block::none) return "";
    std::string out;
    if (open_ == Block::thinking) out += delta({{"type", "signature_delta"}, {"signature", ""}});
    out += frame("content_block_stop", {{"type", "content_block_stop"}, {"index", index_}});
    open_ = Block::none;
    ++index_;
    return out;
  }
  std::string tool_id(int i) const { return tool_call_id(id_, i, true); }

  std::string id_, model_;
  Block open_ = Block::none;
  int index_ = 0;
};

std::string resolve_model(const Json& j, const DialectContext& ctx) {
  const Json* v = text::json_member(j, "model");
  if (!v) throw bad_request("model: required", "model");
  if (!v->is_string()) throw bad_request("model: expected a string", "model");
  auto r = ctx.model.resolve(v->get<std::string>());
  if (!r) throw ApiError(404, "not_found_error", "model: " + v->get<std::string>() + " (this server serves '" + ctx.model.name + "' and claude-* aliases)", "model");
  return *r;
}

text::ChatRequest chat_request(Json& j, const DialectContext& ctx) {
  const Json* msgs = text::json_member(j, "messages");
  if (!msgs) throw bad_request("messages: Field required", "messages");
  if (!msgs->is_array() || msgs->empty()) throw bad_request("messages: expected a non-empty list", "messages");
  // Assistant turns with tool_use blocks but no (or an empty) thinking block get their
  // reasoning back from the ReasoningMemo.
  if (ctx.memo) {
    for (auto& m : j["messages"]) {
      if (!m.is_object() || !m.contains("content") || !m["content"].is_array()) continue;
      Json& blocks = m["content"];
      std::string first_tool;
      bool has_thinking = false;
      for (const auto& b : blocks) {
        if (!b.is_object() || !b.contains("type") || !b["type"].is_string()) continue;
        const std::string t = b["type"].get<std::string>();
        if (t == "thinking" && b.contains("thinking") && b["thinking"].is_string() && !b["thinking"].get<std::string>().empty())
          has_thinking = true;
        if (t == "tool_use" && first_tool.empty() && b.contains("id") && b["id"].is_string()) first_tool = b["id"].get<std::string>();
      }
      std::string reasoning;
      if (!has_thinking && !first_tool.empty() && ctx.memo->get(first_tool, &reasoning)) {
        Json nb = Json::array();
        nb.push_back({{"type", "thinking"}, {"thinking", reasoning}, {"signature", ""}});
        for (auto& b : blocks)
          if (!(b.is_object() && b.contains("type") && b["type"] == "thinking")) nb.push_back(b);
        blocks = std::move(nb);
      }
    }
  }
  try {
    text::ChatRequest cr = text::chat_request_from_anthropic(j);
    ctx.model.apply_effort(cr);
    return cr;
  } catch (const Error& e) {
    throw bad_request(e.what());
  }
}

}  // namespace

std::string stream_error_frame(const std::string& type, const std::string& msg) {
  return frame("error", {{"type", "error"}, {"error", {{"type", type}, {"message", msg}}}});
}

PreparedRequest prepare_messages(const std::string& body, const DialectContext& ctx) {
  Json j = parse_request_json(body);
  PreparedRequest pr;
  pr.model = resolve_model(j, ctx);
  const Json* mt = text::json_member(j, "max_tokens");
  if (!mt) throw bad_request("max_tokens: Field required", "max_tokens");
  text::ChatRequest cr = chat_request(j, ctx);
  if (const Json* s = text::json_member(j, "stream")) {
    if (!s->is_boolean()) throw bad_request("stream: expected a boolean", "stream");
    pr.stream = s->get<bool>();
  }
  engine::SamplingParams& sp = pr.gen.sampling;
  if (const Json* t = text::json_member(j, "temperature")) {
    if (!t->is_number() || t->get<double>() < 0 || t->get<double>() > 2) throw bad_request("temperature: expected a number in [0, 2]", "temperature");
    sp.temperature = float(t->get<double>());
  }
  if (const Json* t = text::json_member(j, "top_p")) {
    if (!t->is_number() || t->get<double>() <= 0 || t->get<double>() > 1) throw bad_request("top_p: expected a number in (0, 1]", "top_p");
    sp.top_p = float(t->get<double>());
  }
  if (const Json* t = text::json_member(j, "top_k")) {
    if (!t->is_number_integer() || t->get<int64_t>() < 0) throw bad_request("top_k: expected a non-negative integer", "top_k");
    sp.top_k = int(t->get<int64_t>());
  }
  if (const Json* ss = text::json_member(j, "stop_sequences")) {
    if (!ss->is_array()) throw bad_request("stop_sequences: expected a list of strings", "stop_sequences");
    for (const auto& s : *ss) {
      if (!s.is_string()) throw bad_request("stop_sequences: expected a list of strings", "stop_sequences");
      if (!s.get<std::string>().empty()) pr.gen.output.stop.push_back(s.get<std::string>());
    }
  }
  const Json* tools = text::json_member(j, "tools");
  if (const Json* tc = text::json_member(j, "tool_choice")) {
    const Json* ty = tc->is_object() ? text::json_member(*tc, "type") : nullptr;
    if (!ty || !ty->is_string()) throw bad_request("tool_choice.type: required", "tool_choice");
    const std::string t = ty->get<std::string>();
    // chat_request_from_anthropic put the tools (as OpenAI functions) on the system message.
    const Json& oa_tools = cr.messages.empty() ? Json() : cr.messages[0].tools;
    if (t == "none") sp.logit_bias.push_back({dsml_token_id(), -std::numeric_limits<float>::infinity()});
    else if (t == "any") pr.gen.forced_tool = forced_tool_from_tools(tools ? oa_tools : Json(), "");
    else if (t == "tool") {
      const Json* name = text::json_member(*tc, "name");
      if (!name || !name->is_string()) throw bad_request("tool_choice.name: required for type tool", "tool_choice");
      pr.gen.forced_tool = forced_tool_from_tools(tools ? oa_tools : Json(), name->get<std::string>());
    } else if (t != "auto") {
      throw bad_request("tool_choice.type: expected auto, any, tool or none", "tool_choice");
    }
  }
  // tool_choice auto (or absent) with tools marked strict: once the model opens a tool-call block,
  // the block is decoded under the tools' schemas (as on the OpenAI side).
  if (!pr.gen.forced_tool && tools && tools->is_array() && !cr.messages.empty() && cr.messages[0].tools.is_array()) {
    const Json* tc = text::json_member(j, "tool_choice");
    const Json* tct = tc && tc->is_object() ? text::json_member(*tc, "type") : nullptr;
    const bool is_auto = !tc || (tct && tct->is_string() && tct->get<std::string>() == "auto");
    Json marked = cr.messages[0].tools;
    bool any_strict = false;
    for (size_t i = 0; i < tools->size() && i < marked.size(); ++i) {
      const Json& t = (*tools)[i];
      if (t.is_object() && t.contains("strict") && t["strict"].is_boolean() && t["strict"].get<bool>() &&
          marked[i].contains("function")) {
        marked[i]["function"]["strict"] = true;
        any_strict = true;
      }
    }
    if (is_auto && any_strict) {
      pr.gen.forced_tool = forced_tool_from_tools(marked, "", true);
      pr.gen.forced_tool->on_open = true;
    }
  }
  // Structured output: output_config.format (and the beta's top-level output_format).
  if (const Json* oc = text::json_member(j, "output_config"); oc && oc->is_object()) {
    if (const Json* f = text::json_member(*oc, "format")) pr.gen.response_schema = response_format_grammar(*f, "output_config.format");
  }
  if (const Json* f = text::json_member(j, "output_format")) pr.gen.response_schema = response_format_grammar(*f, "output_format");
  try {
    sp.validate(int32_t(1) << 30);
  } catch (const Error& e) {
    throw bad_request(e.what());
  }
  render_chat_prompt(cr, ctx, &pr);
  pr.gen.max_tokens = resolve_max_tokens(mt, "max_tokens", int64_t(pr.gen.prompt.size()), ctx);
  pr.gen.id = ctx.request_id;
  pr.responder = std::make_unique<MessagesResponder>(ctx.request_id, pr.model);
  return pr;
}

std::string count_tokens(const std::string& body, const DialectContext& ctx) {
  Json j = parse_request_json(body);
  resolve_model(j, ctx);
  text::ChatRequest cr = chat_request(j, ctx);
  std::vector<text::PromptSegment> segs;
  try {
    segs = text::render_prompt_segments(cr);
  } catch (const Error& e) {
    throw bad_request(e.what());
  }
  const auto ids = text::segments_to_ids(segs, [&](std::string_view s) {
    std::vector<int32_t> r;
    if (ctx.runs && ctx.runs->get(s, &r)) return r;
    return ctx.tok.encode_plain(s);
  });
  return dump_json(Json{{"input_tokens", ids.size()}});
}

std::string error_body(const ApiError& e) {
  std::string type = e.type;
  if (e.status == 400) type = "invalid_request_error";
  else if (e.status == 401) type = "authentication_error";
  else if (e.status == 404) type = "not_found_error";
  else if (e.status == 429) type = "rate_limit_error";
  else if (e.status == 503 || e.status == 529) type = "overloaded_error";
  else if (e.status >= 500) type = "api_error";
  return dump_json(Json{{"type", "error"}, {"error", {{"type", type}, {"message", e.what()}}}});
}

}  // namespace dsv4::server::anthropic
