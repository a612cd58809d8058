// dsv4 server: the OpenAI Responses API (POST /v1/responses, GET /v1/responses/{id}), the API
// Codex, the Vercel AI SDK's default OpenAI provider and LangChain's useResponsesApi speak.
//
// A Responses body is mapped onto a chat-completions body and prepared by the same code as
// /v1/chat/completions (prepare_chat_request), so prompts, sampling, tools and response formats
// behave identically on both routes:
//   instructions                      -> a system message in front (not carried over by
//                                        previous_response_id, as OpenAI documents)
//   input: string                     -> one user message
//   input items: message (user/assistant/system/developer; input_text / output_text parts)
//                reasoning (reasoning_text content, else summary text)  -> reasoning_content
//                function_call       -> assistant tool_calls (consecutive calls: one turn)
//                function_call_output -> tool message
//   tools [{type:function,...}]       -> chat tools; tool_choice the same way
//   text.format json_object/json_schema -> response_format
//   reasoning.effort                  -> reasoning_effort ("none": thinking off)
//   max_output_tokens                 -> max_completion_tokens
//   previous_response_id              -> the stored conversation of that response in front
// Output: a reasoning item (the whole reasoning as its summary_text: what Codex, the AI SDK and
// LangChain display), one message item with an output_text part, function_call items. Streams are `event: <type>` + `data:` SSE frames
// with sequence_number, in the order the openai SDK's ResponseStream and Codex parse.
#include <chrono>
#include <ctime>
#include <limits>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>

#include "core/error.h"
#include "server/api.h"
#include "server/dialect_common.h"

namespace dsv4::server::responses {

using text::Json;

namespace {

// ---------------------------------------------------------------------------------------------
// Stored responses (store: true): the conversation for previous_response_id and the body for
// GET /v1/responses/{id}. Bounded: the oldest go first.
// ---------------------------------------------------------------------------------------------
class Store {
 public:
  static constexpr size_t kMaxEntries = 1024;
  static constexpr size_t kMaxBytes = size_t(256) << 20;

  void put(const std::string& id, Json history, std::string body) {
    Entry e{id, std::move(history), std::move(body), 0};
    e.bytes = e.body.size() + dump_json(e.history).size();
    std::lock_guard<std::mutex> lk(mu_);
    if (auto it = index_.find(id); it != index_.end()) drop(it->second);
    bytes_ += e.bytes;
    lru_.push_front(std::move(e));
    index_[id] = lru_.begin();
    while (!lru_.empty() && (lru_.size() > kMaxEntries || bytes_ > kMaxBytes)) drop(std::prev(lru_.end()));
  }
  bool history(const std::string& id, Json* out) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = index_.find(id);
    if (it == index_.end()) return false;
    *out = it->second->history;
    return true;
  }
  bool body(const std::string& id, std::string* out) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = index_.find(id);
    if (it == index_.end()) return false;
    *out = it->second->body;
    return true;
  }

 private:
  struct Entry {
    std::string id;
    Json history;
    std::string body;
    size_t bytes;
  };
  void drop(std::list<Entry>::iterator it) {
    bytes_ -= it->bytes;
    index_.erase(it->id);
    lru_.erase(it);
  }
  std::mutex mu_;
  std::list<Entry> lru_;
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  size_t bytes_ = 0;
};

Store& store() {
  static Store s;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Request -> chat-completions body
// ---------------------------------------------------------------------------------------------
const Json* member(const Json& j, const char* k) { return text::json_member(j, k); }

std::string req_string(const Json& obj, const char* key, const std::string& where) {
  const Json* v = member(obj, key);
  if (!v || !v->is_string()) throw bad_request(where + "." + key + ": expected a string", where + "." + key);
  return v->get<std::string>();
}

// Text of a message's or an output's content: a string or parts (input_text / output_text /
// text joined by "\n\n"). Other part types are rejected, naming them.
std::string content_text(const Json& c, const std::string& where) {
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) throw bad_request(where + ": expected a string or a list of content parts", where);
  std::string out;
  for (size_t k = 0; k < c.size(); ++k) {
    const Json& p = c[k];
    const std::string pw = where + "[" + std::to_string(k) + "]";
    if (!p.is_object()) throw bad_request(pw + ": expected a content part object", pw);
    const std::string ty = req_string(p, "type", pw);
    std::string piece;
    if (ty == "input_text" || ty == "output_text" || ty == "text") piece = req_string(p, "text", pw);
    else if (ty == "refusal") piece = req_string(p, "refusal", pw);
    else
      throw bad_request(pw + ".type: '" + ty + "' is not supported (this server reads text only: input_text, output_text)", pw + ".type");
    if (k) out += "\n\n";
    out += piece;
  }
  return out;
}

struct Converted {
  Json chat = Json::object();       // the chat-completions body
  Json history = Json::array();     // conversation so far (no instructions): what a later
                                    // previous_response_id continues from
  Json echo = Json::object();       // request fields the response object repeats
  bool store = true;
  std::map<std::string, std::string> namespaces;  // function name -> its tool namespace
};

// An output item of a stored response by its id ("<kind>_<response suffix>_<output index>").
bool stored_item(const std::string& item_id, Json* out) {
  const size_t a = item_id.find('_'), b = item_id.rfind('_');
  if (a == std::string::npos || b <= a) return false;
  std::string body;
  if (!store().body("resp_" + item_id.substr(a + 1, b - a - 1), &body)) return false;
  Json r = Json::parse(body, nullptr, false);
  if (!r.is_object() || !r.contains("output") || !r["output"].is_array()) return false;
  for (const auto& item : r["output"])
    if (item.is_object() && item.contains("id") && item["id"] == item_id) {
      *out = item;
      return true;
    }
  return false;
}

// Appends `input` (string or items) to `msgs` as chat messages.
void append_input(const Json& input, Json& msgs) {
  if (input.is_string()) {
    msgs.push_back({{"role", "user"}, {"content", input.get<std::string>()}});
    return;
  }
  if (!input.is_array()) throw bad_request("input: expected a string or a list of items", "input");
  std::string pending_reasoning;  // a reasoning item waits for the assistant turn it belongs to
  auto assistant_turn = [&]() -> Json& {
    if (msgs.empty() || msgs.back()["role"] != "assistant") {
      msgs.push_back({{"role", "assistant"}, {"content", ""}});
    }
    Json& m = msgs.back();
    if (!pending_reasoning.empty()) {
      std::string r = m.contains("reasoning_content") ? m["reasoning_content"].get<std::string>() : "";
      m["reasoning_content"] = r + pending_reasoning;
      pending_reasoning.clear();
    }
    return m;
  };
  auto type_of = [](const Json& it, const std::string& w) {
    std::string ty = "message";
    if (const Json* t = member(it, "type")) {
      if (!t->is_string()) throw bad_request(w + ".type: expected a string", w + ".type");
      ty = t->get<std::string>();
    }
    return ty;
  };
  for (size_t i = 0; i < input.size(); ++i) {
    const std::string w = "input[" + std::to_string(i) + "]";
    if (!input[i].is_object()) throw bad_request(w + ": expected an item object", w);
    std::string ty = type_of(input[i], w);
    Json referenced;
    if (ty == "item_reference") {
      // An output item of a stored response (the AI SDK sends these with store: true).
      const std::string ref = req_string(input[i], "id", w);
      if (!stored_item(ref, &referenced) || type_of(referenced, w) == "item_reference")
        throw ApiError(400, "invalid_request_error", w + ".id: item '" + ref + "' is not held by this server (send the item itself)",
                       w + ".id", "item_not_found");
      ty = type_of(referenced, w);
    }
    const Json& it = ty == "item_reference" || referenced.is_null() ? input[i] : referenced;
    if (ty == "message") {
      const std::string role = req_string(it, "role", w);
      const Json* c = member(it, "content");
      if (!c) throw bad_request(w + ".content: required", w + ".content");
      std::string text = content_text(*c, w + ".content");
      if (role == "user") {
        msgs.push_back({{"role", "user"}, {"content", text}});
      } else if (role == "system" || role == "developer") {
        // OpenAI's developer role is the system prompt of its newer models (V4's own `developer`
        // turn is an internal search-agent format, not this).
        msgs.push_back({{"role", "system"}, {"content", text}});
      } else if (role == "assistant") {
        const bool has_calls = !msgs.empty() && msgs.back()["role"] == "assistant" && msgs.back().contains("tool_calls");
        if (has_calls) msgs.push_back({{"role", "assistant"}, {"content", ""}});
        Json& m = assistant_turn();
        std::string prev = m["content"].is_string() ? m["content"].get<std::string>() : "";
        m["content"] = prev.empty() ? text : prev + "\n\n" + text;
      } else {
        throw bad_request(w + ".role: expected user, assistant, system or developer, got '" + role + "'", w + ".role");
      }
    } else if (ty == "reasoning") {
      std::string text;
      if (const Json* c = member(it, "content"); c && c->is_array()) {
        for (const auto& p : *c)
          if (p.is_object() && p.contains("text") && p["text"].is_string()) text += p["text"].get<std::string>();
      }
      if (text.empty()) {
        if (const Json* s = member(it, "summary"); s && s->is_array()) {
          for (const auto& p : *s)
            if (p.is_object() && p.contains("text") && p["text"].is_string())
              text += (text.empty() ? "" : "\n\n") + p["text"].get<std::string>();
        }
      }
      pending_reasoning += text;
    } else if (ty == "function_call") {
      Json call;
      call["id"] = req_string(it, "call_id", w);
      call["type"] = "function";
      const Json* args = member(it, "arguments");
      if (args && !args->is_string()) throw bad_request(w + ".arguments: expected a string (JSON text)", w + ".arguments");
      call["function"] = {{"name", req_string(it, "name", w)}, {"arguments", args ? args->get<std::string>() : "{}"}};
      Json& m = assistant_turn();
      if (!m.contains("tool_calls")) m["tool_calls"] = Json::array();
      m["tool_calls"].push_back(std::move(call));
    } else if (ty == "function_call_output") {
      const Json* out = member(it, "output");
      if (!out) throw bad_request(w + ".output: required", w + ".output");
      msgs.push_back({{"role", "tool"}, {"tool_call_id", req_string(it, "call_id", w)}, {"content", content_text(*out, w + ".output")}});
    } else {
      throw bad_request(w + ".type: '" + ty + "' is not supported (expected message, reasoning, function_call, function_call_output or item_reference)",
                        w + ".type");
    }
  }
}

// OpenAI-hosted tools: the API provider runs them, and this server has none of them. They are
// left out of the prompt (the model never sees or calls them), so clients that always send one
// (Codex sends web_search) work unchanged; README "Responses API" lists them.
bool is_hosted_tool(const std::string& ty) {
  return ty == "web_search" || ty == "web_search_preview" || ty == "web_search_2025_08_26" ||
         ty == "web_search_preview_2025_03_11" || ty == "file_search" || ty == "code_interpreter" ||
         ty == "image_generation" || ty == "computer_use_preview" || ty == "mcp" || ty == "tool_search";
}

// Function tools (flattened out of `namespace` groups, whose calls carry the namespace back).
void convert_tools(const Json& tools, const std::string& where, const std::string& ns, Json& out,
                   std::map<std::string, std::string>& namespaces) {
  if (!tools.is_array()) throw bad_request(where + ": expected a list", where);
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& t = tools[i];
    const std::string w = where + "[" + std::to_string(i) + "]";
    if (!t.is_object()) throw bad_request(w + ": expected an object", w);
    const std::string ty = req_string(t, "type", w);
    if (is_hosted_tool(ty)) continue;
    if (ty == "namespace" && ns.empty()) {
      const std::string name = req_string(t, "name", w);
      const Json* inner = member(t, "tools");
      if (!inner) throw bad_request(w + ".tools: required", w + ".tools");
      convert_tools(*inner, w + ".tools", name, out, namespaces);
      continue;
    }
    if (ty != "function")
      throw bad_request(w + ".type: '" + ty + "' tools are not supported (this server runs function tools)", w + ".type");
    Json fn;
    fn["name"] = req_string(t, "name", w);
    if (const Json* d = member(t, "description"); d && !d->is_null()) fn["description"] = *d;
    const Json* p = member(t, "parameters");
    fn["parameters"] = p && !p->is_null() ? *p : Json{{"type", "object"}, {"properties", Json::object()}};
    if (const Json* s = member(t, "strict"); s && !s->is_null()) fn["strict"] = *s;
    if (!ns.empty()) namespaces[fn["name"].get<std::string>()] = ns;
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
}

Json convert_tool_choice(const Json& tc) {
  if (tc.is_string()) {
    const std::string s = tc.get<std::string>();
    if (s != "none" && s != "auto" && s != "required")
      throw bad_request("tool_choice: expected none, auto, required or {\"type\":\"function\",\"name\":...}", "tool_choice");
    return tc;
  }
  if (tc.is_object()) {
    const Json* ty = member(tc, "type");
    if (ty && ty->is_string() && ty->get<std::string>() == "function")
      return {{"type", "function"}, {"function", {{"name", req_string(tc, "name", "tool_choice")}}}};
    throw bad_request("tool_choice: only function tool choices are supported ({\"type\":\"function\",\"name\":...})", "tool_choice");
  }
  throw bad_request("tool_choice: expected a string or an object", "tool_choice");
}

// text.format -> the chat route's response_format.
Json convert_format(const Json& text_cfg) {
  if (!text_cfg.is_object()) throw bad_request("text: expected an object", "text");
  const Json* f = member(text_cfg, "format");
  if (!f || f->is_null()) return nullptr;
  if (!f->is_object()) throw bad_request("text.format: expected an object", "text.format");
  const std::string ty = req_string(*f, "type", "text.format");
  if (ty == "text") return nullptr;
  if (ty == "json_object") return {{"type", "json_object"}};
  if (ty == "json_schema") {
    Json js;
    js["name"] = req_string(*f, "name", "text.format");
    const Json* schema = member(*f, "schema");
    if (!schema || !schema->is_object()) throw bad_request("text.format.schema: expected a JSON Schema object", "text.format.schema");
    js["schema"] = *schema;
    if (const Json* d = member(*f, "description"); d && !d->is_null()) js["description"] = *d;
    if (const Json* s = member(*f, "strict"); s && !s->is_null()) js["strict"] = *s;
    return {{"type", "json_schema"}, {"json_schema", std::move(js)}};
  }
  throw bad_request("text.format.type: expected text, json_object or json_schema, got '" + ty + "'", "text.format.type");
}

Converted convert(const Json& j) {
  Converted cv;
  Json& chat = cv.chat;
  Json& echo = cv.echo;
  for (const char* k : {"background", "conversation", "prompt"}) {
    const Json* v = member(j, k);
    if (v && !v->is_null() && !(v->is_boolean() && !v->get<bool>()))
      throw bad_request(std::string(k) + ": not supported by this server", k);
  }
  if (const Json* v = member(j, "top_logprobs"); v && !v->is_null() && !(v->is_number_integer() && v->get<int64_t>() == 0))
    throw bad_request("top_logprobs: not supported on /v1/responses (use /v1/chat/completions with logprobs)", "top_logprobs");
  if (const Json* v = member(j, "model")) chat["model"] = *v;
  if (const Json* v = member(j, "stream"); v && !v->is_null()) chat["stream"] = *v;
  if (const Json* v = member(j, "store"); v && !v->is_null()) {
    if (!v->is_boolean()) throw bad_request("store: expected a boolean", "store");
    cv.store = v->get<bool>();
  }
  echo["store"] = cv.store;

  // The conversation: the stored one of previous_response_id, then this input.
  Json msgs = Json::array();
  echo["previous_response_id"] = nullptr;
  if (const Json* prev = member(j, "previous_response_id"); prev && !prev->is_null()) {
    if (!prev->is_string()) throw bad_request("previous_response_id: expected a string", "previous_response_id");
    if (!store().history(prev->get<std::string>(), &msgs))
      throw ApiError(400, "invalid_request_error",
                     "Previous response with id '" + prev->get<std::string>() +
                         "' not found (this server keeps the last " + std::to_string(Store::kMaxEntries) +
                         " stored responses in memory; send the conversation as input instead)",
                     "previous_response_id", "previous_response_not_found");
    echo["previous_response_id"] = *prev;
  }
  const Json* input = member(j, "input");
  if (!input || input->is_null()) throw bad_request("input: required", "input");
  append_input(*input, msgs);
  cv.history = msgs;

  echo["instructions"] = nullptr;
  if (const Json* ins = member(j, "instructions"); ins && !ins->is_null()) {
    if (!ins->is_string()) throw bad_request("instructions: expected a string", "instructions");
    if (!ins->get<std::string>().empty())
      msgs.insert(msgs.begin(), Json{{"role", "system"}, {"content", ins->get<std::string>()}});
    echo["instructions"] = *ins;
  }
  if (msgs.empty()) throw bad_request("input: expected at least one item", "input");
  chat["messages"] = std::move(msgs);

  echo["tools"] = Json::array();
  if (const Json* t = member(j, "tools"); t && !t->is_null()) {
    Json tools = Json::array();
    convert_tools(*t, "tools", "", tools, cv.namespaces);
    if (!tools.empty()) chat["tools"] = std::move(tools);
    echo["tools"] = *t;
  }
  echo["tool_choice"] = "auto";
  if (const Json* tc = member(j, "tool_choice"); tc && !tc->is_null()) {
    chat["tool_choice"] = convert_tool_choice(*tc);
    echo["tool_choice"] = *tc;
  }
  echo["parallel_tool_calls"] = true;
  if (const Json* v = member(j, "parallel_tool_calls"); v && !v->is_null()) {
    if (!v->is_boolean()) throw bad_request("parallel_tool_calls: expected a boolean", "parallel_tool_calls");
    echo["parallel_tool_calls"] = *v;
  }
  echo["text"] = {{"format", {{"type", "text"}}}};
  if (const Json* t = member(j, "text"); t && !t->is_null()) {
    Json rf = convert_format(*t);
    if (!rf.is_null()) chat["response_format"] = std::move(rf);
    echo["text"] = *t;
  }
  echo["reasoning"] = {{"effort", nullptr}, {"summary", nullptr}};
  if (const Json* r = member(j, "reasoning"); r && !r->is_null()) {
    if (!r->is_object()) throw bad_request("reasoning: expected an object", "reasoning");
    if (const Json* e = member(*r, "effort"); e && !e->is_null()) {
      if (!e->is_string()) throw bad_request("reasoning.effort: expected a string", "reasoning.effort");
      if (e->get<std::string>() == "none") chat["thinking"] = {{"type", "disabled"}};
      else chat["reasoning_effort"] = *e;
    }
    if (const Json* sm = member(*r, "summary"); sm && !sm->is_null() && !sm->is_string())
      throw bad_request("reasoning.summary: expected a string", "reasoning.summary");
    echo["reasoning"] = *r;
  }
  if (const Json* th = member(j, "thinking"); th && !th->is_null()) chat["thinking"] = *th;  // DeepSeek's own switch
  echo["max_output_tokens"] = nullptr;
  if (const Json* m = member(j, "max_output_tokens"); m && !m->is_null()) {
    if (!m->is_number_integer() || m->get<int64_t>() < 1)
      throw bad_request("max_output_tokens: expected an integer >= 1", "max_output_tokens");
    chat["max_completion_tokens"] = *m;
    echo["max_output_tokens"] = *m;
  }
  for (const char* k : {"temperature", "top_p"}) {
    echo[k] = 1.0;
    if (const Json* v = member(j, k); v && !v->is_null()) {
      chat[k] = *v;
      echo[k] = *v;
    }
  }
  echo["metadata"] = Json::object();
  if (const Json* v = member(j, "metadata"); v && !v->is_null()) echo["metadata"] = *v;
  if (const Json* v = member(j, "user"); v && v->is_string()) echo["user"] = *v;
  echo["truncation"] = "disabled";
  if (const Json* v = member(j, "truncation"); v && v->is_string()) echo["truncation"] = *v;
  return cv;
}

// ---------------------------------------------------------------------------------------------
// Responder
// ---------------------------------------------------------------------------------------------
Json usage_json(const Usage& u) {
  return {{"input_tokens", u.prompt},
          {"input_tokens_details", {{"cached_tokens", u.cached}}},
          {"output_tokens", u.completion},
          {"output_tokens_details", {{"reasoning_tokens", u.reasoning}}},
          {"total_tokens", u.prompt + u.completion}};
}

bool is_length(engine::FinishReason f) {
  return f == engine::FinishReason::max_tokens || f == engine::FinishReason::context_full;
}

class ResponsesResponder : public Responder {
 public:
  ResponsesResponder(std::string id, std::string model, Json echo, Json history, bool store,
                     std::map<std::string, std::string> namespaces)
      : id_(std::move(id)), model_(std::move(model)), echo_(std::move(echo)), history_(std::move(history)),
        store_(store), namespaces_(std::move(namespaces)), created_(int64_t(std::time(nullptr))) {}

  std::string stream_begin(const Usage&) override {
    begun_ = true;
    Json r = response_object("in_progress", Json::array(), nullptr);
    std::string out = event("response.created", {{"response", r}});
    return out + event("response.in_progress", {{"response", r}});
  }

  std::string stream_events(std::span<const text::ParseEvent> ev, std::span<const TokenLogprobInfo>) override {
    std::string out;
    for (const auto& e : ev) {
      switch (e.kind) {
        case text::ParseEventKind::reasoning_delta:
          if (e.text.empty()) break;
          if (open_ != Open::reasoning) {
            out += close_item();
            open_ = Open::reasoning;
            item_id_ = item_id("rs");
            out += event("response.output_item.added",
                         {{"output_index", output_.size()},
                          {"item", {{"id", item_id_}, {"type", "reasoning"}, {"summary", Json::array()}, {"content", Json::array()},
                                    {"status", "in_progress"}}}});
            if (summary_)
              out += event("response.reasoning_summary_part.added", summary_event({{"part", summary_part("")}}));
            else
              out += event("response.content_part.added", part_event({{"type", "reasoning_text"}, {"text", ""}}));
          }
          text_ += e.text;
          if (summary_) out += event("response.reasoning_summary_text.delta", summary_event({{"delta", e.text}}));
          else out += event("response.reasoning_text.delta", delta_event(e.text));
          break;
        case text::ParseEventKind::content_delta:
          if (e.text.empty()) break;
          if (open_ != Open::message) {
            out += close_item();
            open_ = Open::message;
            item_id_ = item_id("msg");
            out += event("response.output_item.added",
                         {{"output_index", output_.size()},
                          {"item", {{"id", item_id_}, {"type", "message"}, {"status", "in_progress"}, {"role", "assistant"},
                                    {"content", Json::array()}}}});
            out += event("response.content_part.added", part_event(output_text_part("")));
          }
          text_ += e.text;
          {
            Json d = delta_event(e.text);
            d["logprobs"] = Json::array();
            out += event("response.output_text.delta", d);
          }
          break;
        case text::ParseEventKind::tool_call_start: {
          out += close_item();
          open_ = Open::call;
          item_id_ = item_id("fc");
          call_id_ = tool_call_id(id_, e.tool_index, false);
          call_name_ = e.name;
          out += event("response.output_item.added",
                       {{"output_index", output_.size()}, {"item", call_item("", "in_progress")}});
          break;
        }
        case text::ParseEventKind::tool_call_arguments:
          if (open_ != Open::call) break;
          text_ += e.text;
          out += event("response.function_call_arguments.delta",
                       {{"item_id", item_id_}, {"output_index", output_.size()}, {"delta", e.text}});
          break;
        case text::ParseEventKind::tool_call_end:
          out += close_item();
          break;
        default:
          break;
      }
    }
    return out;
  }

  std::string stream_end(const Outcome& o) override {
    const bool incomplete = is_length(o.finish);
    std::string out = close_item(incomplete ? "incomplete" : "completed");
    Json r = response_object(incomplete ? "incomplete" : "completed", output_, usage_json(o.usage));
    if (incomplete) r["incomplete_details"] = {{"reason", "max_output_tokens"}};
    remember(o, r);
    out += event(incomplete ? "response.incomplete" : "response.completed", {{"response", r}});
    return out;
  }

  std::string stream_error(const std::string& msg) override {
    // An engine error before the first token: the stream still starts with response.created.
    std::string out = begun_ ? "" : event("response.created", {{"response", response_object("in_progress", Json::array(), nullptr)}});
    out += close_item();
    Json r = response_object("failed", output_, nullptr);
    r["error"] = {{"code", "server_error"}, {"message", msg}};
    out += event("response.failed", {{"response", r}});
    return out;
  }

  std::string response(const Outcome& o) override {
    Json output = Json::array();
    const auto& m = o.message;
    const bool incomplete = is_length(o.finish);
    const char* item_status = incomplete ? "incomplete" : "completed";
    if (!m.reasoning_content.empty()) output.push_back(reasoning_item(item_id("rs", output.size()), m.reasoning_content, item_status));
    if (!m.content.empty() || (m.tool_calls.empty() && m.reasoning_content.empty()))
      output.push_back({{"id", item_id("msg", output.size())}, {"type", "message"}, {"status", item_status}, {"role", "assistant"},
                        {"content", Json::array({output_text_part(m.content)})}});
    for (size_t i = 0; i < m.tool_calls.size(); ++i)
      output.push_back(function_call(item_id("fc", output.size()), tool_call_id(id_, int(i), false), m.tool_calls[i].name,
                                     m.tool_calls[i].arguments, "completed"));
    Json r = response_object(incomplete ? "incomplete" : "completed", output, usage_json(o.usage));
    if (incomplete) r["incomplete_details"] = {{"reason", "max_output_tokens"}};
    remember(o, r);
    return dump_json(r);
  }

 private:
  enum class Open { none, reasoning, message, call };

  std::string event(const char* type, Json data) {
    data["type"] = type;
    data["sequence_number"] = seq_++;
    return std::string("event: ") + type + "\ndata: " + dump_json(data) + "\n\n";
  }
  std::string item_id(const char* prefix, size_t index) const {
    return std::string(prefix) + "_" + id_.substr(id_.rfind('_') + 1) + "_" + std::to_string(index);
  }
  std::string item_id(const char* prefix) const { return item_id(prefix, output_.size()); }
  static Json output_text_part(const std::string& text) {
    return {{"type", "output_text"}, {"text", text}, {"annotations", Json::array()}, {"logprobs", Json::array()}};
  }
  static Json summary_part(const std::string& text) { return {{"type", "summary_text"}, {"text", text}}; }
  // The reasoning as an output item: raw reasoning_text content, or (reasoning.summary asked) the
  // whole reasoning as its summary (V4 has no separate summarizer).
  Json reasoning_item(const std::string& id, const std::string& text, const char* status) const {
    Json item = {{"id", id}, {"type", "reasoning"}, {"summary", Json::array()}, {"status", status}};
    if (summary_) item["summary"].push_back(summary_part(text));
    else item["content"] = Json::array({{{"type", "reasoning_text"}, {"text", text}}});
    return item;
  }
  Json summary_event(Json extra) const {
    Json e = {{"item_id", item_id_}, {"output_index", output_.size()}, {"summary_index", 0}};
    for (auto it = extra.begin(); it != extra.end(); ++it) e[it.key()] = it.value();
    return e;
  }
  Json part_event(Json part) const {
    return {{"item_id", item_id_}, {"output_index", output_.size()}, {"content_index", 0}, {"part", std::move(part)}};
  }
  Json delta_event(const std::string& d) const {
    return {{"item_id", item_id_}, {"output_index", output_.size()}, {"content_index", 0}, {"delta", d}};
  }
  Json call_item(const std::string& args, const char* status) const {
    return function_call(item_id_, call_id_, call_name_, args, status);
  }
  Json function_call(const std::string& id, const std::string& call_id, const std::string& name, const std::string& args,
                     const char* status) const {
    Json c = {{"id", id}, {"type", "function_call"}, {"status", status}, {"call_id", call_id}, {"name", name}, {"arguments", args}};
    if (auto it = namespaces_.find(name); it != namespaces_.end()) c["namespace"] = it->second;
    return c;
  }

  // Ends the open output item with its .done events and files it in output_.
  std::string close_item(const char* status = "completed") {
    std::string out;
    const size_t idx = output_.size();
    Json item;
    switch (open_) {
      case Open::none: return "";
      case Open::reasoning: {
        item = reasoning_item(item_id_, text_, status);
        if (summary_) {
          out += event("response.reasoning_summary_text.done", summary_event({{"text", text_}}));
          out += event("response.reasoning_summary_part.done", summary_event({{"part", summary_part(text_)}}));
        } else {
          Json part = {{"type", "reasoning_text"}, {"text", text_}};
          out += event("response.reasoning_text.done", {{"item_id", item_id_}, {"output_index", idx}, {"content_index", 0}, {"text", text_}});
          out += event("response.content_part.done", part_event(part));
        }
        break;
      }
      case Open::message: {
        Json done = {{"item_id", item_id_}, {"output_index", idx}, {"content_index", 0}, {"text", text_}, {"logprobs", Json::array()}};
        out += event("response.output_text.done", done);
        out += event("response.content_part.done", part_event(output_text_part(text_)));
        item = {{"id", item_id_}, {"type", "message"}, {"status", status}, {"role", "assistant"},
                {"content", Json::array({output_text_part(text_)})}};
        break;
      }
      case Open::call: {
        out += event("response.function_call_arguments.done",
                     {{"item_id", item_id_}, {"output_index", idx}, {"name", call_name_}, {"arguments", text_}});
        item = call_item(text_, "completed");
        break;
      }
    }
    out += event("response.output_item.done", {{"output_index", idx}, {"item", item}});
    output_.push_back(std::move(item));
    open_ = Open::none;
    text_.clear();
    return out;
  }

  Json response_object(const char* status, Json output, Json usage) const {
    Json r;
    r["id"] = id_;
    r["object"] = "response";
    r["created_at"] = created_;
    r["status"] = status;
    r["error"] = nullptr;
    r["incomplete_details"] = nullptr;
    r["model"] = model_;
    r["output"] = std::move(output);
    r["usage"] = std::move(usage);
    for (auto it = echo_.begin(); it != echo_.end(); ++it) r[it.key()] = it.value();
    return r;
  }

  // store: true -> the conversation (this input + the answer as an assistant turn) and the body.
  void remember(const Outcome& o, const Json& r) {
    if (!store_) return;
    Json msg = {{"role", "assistant"}, {"content", o.message.content}};
    if (!o.message.reasoning_content.empty()) msg["reasoning_content"] = o.message.reasoning_content;
    if (!o.message.tool_calls.empty()) {
      Json tcs = Json::array();
      for (size_t i = 0; i < o.message.tool_calls.size(); ++i)
        tcs.push_back({{"id", tool_call_id(id_, int(i), false)}, {"type", "function"},
                       {"function", {{"name", o.message.tool_calls[i].name}, {"arguments", o.message.tool_calls[i].arguments}}}});
      msg["tool_calls"] = std::move(tcs);
    }
    Json history = history_;
    history.push_back(std::move(msg));
    store().put(id_, std::move(history), dump_json(r));
  }

  std::string id_, model_;
  Json echo_, history_;
  bool store_;
  std::map<std::string, std::string> namespaces_;
  // The reasoning comes as the reasoning item's summary_text: that is what clients display
  // (Codex, the AI SDK, LangChain); V4 has no separate summarizer, so it is the whole reasoning.
  // false: as reasoning_text content (the raw-reasoning shape of open-weight servers).
  static constexpr bool summary_ = true;
  int64_t created_;
  int64_t seq_ = 0;
  bool begun_ = false;
  Json output_ = Json::array();  // finished output items (streaming)
  Open open_ = Open::none;
  std::string item_id_, text_, call_id_, call_name_;
};

}  // namespace

PreparedRequest prepare(const std::string& body, const DialectContext& ctx) {
  Json j = parse_request_json(body);
  Converted cv = convert(j);
  PreparedRequest pr;
  try {
    pr = prepare_chat_request(cv.chat, ctx);
  } catch (ApiError& e) {
    if (e.param == "messages") e.param = "input";
    throw;
  }
  pr.responder = std::make_unique<ResponsesResponder>(ctx.request_id, pr.model, std::move(cv.echo), std::move(cv.history), cv.store, std::move(cv.namespaces));
  return pr;
}

std::string get(const std::string& id) {
  std::string body;
  if (!store().body(id, &body))
    throw ApiError(404, "invalid_request_error", "Response with id '" + id + "' not found", "response_id", "response_not_found");
  return body;
}

}  // namespace dsv4::server::responses
