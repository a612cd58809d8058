// dsv4 server: the OpenAI dialect (API-NOTES §3.2, §3.4, §3.5): /v1/chat/completions,
// /v1/completions (FIM with `suffix`), /v1/models, errors. Also the helpers both dialects share
// (dialect_common.h). Every JSON byte of the OpenAI side is written here.
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "server/api.h"
#include "server/request_limits.h"
#include "server/dialect_common.h"
#include "text/tokenizer.h"

namespace dsv4::server {

using text::Json;

ApiError bad_request(const std::string& msg, const std::string& param) {
  return ApiError(400, "invalid_request_error", msg, param);
}

std::string new_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  const auto now = std::chrono::system_clock::now().time_since_epoch().count();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s%08llx%06llx", prefix, (unsigned long long)(now & 0xffffffff),
                (unsigned long long)(counter.fetch_add(1) & 0xffffff));
  return buf;
}

std::string tool_call_id(const std::string& request_id, int i, bool anthropic) {
  return std::string(anthropic ? "toolu_" : "call_") + request_id.substr(request_id.size() > 12 ? request_id.size() - 12 : 0) +
         "_" + std::to_string(i);
}

std::optional<std::string> ServedModel::resolve(const std::string& requested) const {
  if (requested.empty() || requested == name) return name;
  for (const auto& a : aliases)
    if (requested == a) return name;
  if (requested.rfind("claude", 0) == 0) return name;  // as DeepSeek's Anthropic endpoint does
  return std::nullopt;
}

void ServedModel::apply_effort(text::ChatRequest& cr) const {
  const text::EffortTable& t = effort_table ? *effort_table : text::EffortTable::v4();
  cr.options.effort_table = &t;
  if (cr.options.reasoning_effort)
    cr.options.reasoning_effort = text::normalize_reasoning_effort(*cr.options.reasoning_effort, t);
  else if (!default_effort.empty())
    cr.options.reasoning_effort = text::normalize_reasoning_effort(default_effort, t);
}

Json parse_request_json(const std::string& body) {
  check_request_limits(body);  // linear shape limits (keys, array items, logit_bias, stop) first
  Json j;
  try {
    j = text::parse_py_json(body, "request body");
  } catch (const Error& e) {
    throw bad_request(e.what());
  }
  if (!j.is_object()) throw bad_request("request body: expected a JSON object");
  return j;
}

std::string dump_json(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

int32_t dsml_token_id() { return text::control_token_id(text::ControlToken::dsml); }

std::shared_ptr<const text::JsonGrammar> json_schema_grammar(const Json& schema, const std::string& param) {
  try {
    return text::compile_json_schema(schema);
  } catch (const Error& e) {
    throw bad_request(param + ": " + e.what(), param);
  }
}

std::shared_ptr<const text::JsonGrammar> response_format_grammar(const Json& rf, const std::string& param) {
  if (!rf.is_object()) throw bad_request(param + ": expected an object", param);
  const Json* t = text::json_member(rf, "type");
  if (!t || !t->is_string()) throw bad_request(param + ".type: required", param);
  const std::string ty = t->get<std::string>();
  if (ty == "text") return nullptr;
  if (ty == "json_object") return text::json_object_grammar();
  if (ty != "json_schema") throw bad_request(param + ".type: expected text, json_object or json_schema", param);
  // OpenAI chat: {type, json_schema: {name, schema, strict}}; the Responses API and Anthropic put
  // `schema` next to `type`.
  const Json* holder = text::json_member(rf, "json_schema");
  if (!holder) holder = &rf;
  const Json* schema = text::json_member(*holder, "schema");
  if (!schema) throw bad_request(param + (holder == &rf ? ".schema" : ".json_schema.schema") + ": required", param);
  return json_schema_grammar(*schema, param);
}

namespace {
// A parameter's top-level JSON type (the lenient path: schemas the compiler refuses).
engine::ParamKind kind_of(const Json& schema) {
  const Json* t = text::json_member(schema, "type");
  std::string ty = t && t->is_string() ? t->get<std::string>() : "";
  if (t && t->is_array())
    for (const auto& x : *t)
      if (x.is_string() && x.get<std::string>() != "null") {
        ty = x.get<std::string>();
        break;
      }
  if (ty == "integer") return engine::ParamKind::integer;
  if (ty == "number") return engine::ParamKind::number;
  if (ty == "boolean") return engine::ParamKind::boolean;
  if (ty == "object") return engine::ParamKind::object;
  if (ty == "array") return engine::ParamKind::array;
  if (ty == "null") return engine::ParamKind::null;
  return engine::ParamKind::string;
}
}  // namespace

std::shared_ptr<engine::ForcedToolCall> forced_tool_from_tools(const Json& tools, const std::string& only, bool lenient) {
  auto spec = std::make_shared<engine::ForcedToolCall>();
  if (tools.is_array()) {
    for (const auto& t : tools) {
      const Json& fn = t.contains("function") ? t["function"] : t;
      if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string()) continue;
      engine::ForcedTool ft;
      ft.name = fn["name"].get<std::string>();
      if (!only.empty() && ft.name != only) continue;
      const Json* params = nullptr;
      if (auto it = fn.find("parameters"); it != fn.end()) params = &*it;
      if (!params) {
        if (auto it = fn.find("input_schema"); it != fn.end()) params = &*it;
      }
      const bool strict = fn.contains("strict") && fn["strict"].is_boolean() && fn["strict"].get<bool>();
      if (params && params->is_object() && lenient && !strict) {
        // A non-strict tool offered next to strict ones (tool_choice auto): its schema is followed
        // when it compiles; otherwise only the required parameters' top-level types are.
        try {
          text::compile_json_schema(*params);
        } catch (const Error&) {
          if (const Json* props = text::json_member(*params, "properties"); props && props->is_object())
            if (const Json* req = text::json_member(*params, "required"); req && req->is_array())
              for (const auto& r : *req)
                if (r.is_string() && props->contains(r.get<std::string>()))
                  ft.params.push_back({r.get<std::string>(), kind_of((*props)[r.get<std::string>()]), nullptr, -1});
          spec->tools.push_back(std::move(ft));
          continue;
        }
      }
      if (params && params->is_object()) {
        // The arguments follow the parameters schema: each required parameter's value is decoded
        // under its own node of the compiled schema (enums, nested required keys, bounds).
        auto g = json_schema_grammar(*params, "tools[" + ft.name + "].parameters");
        int root = g->root;
        while (g->nodes[size_t(root)].any_of.size() == 1) root = g->nodes[size_t(root)].any_of[0];
        const text::SchemaNode& obj = g->nodes[size_t(root)];
        if (!obj.any_of.empty() || !obj.literals.empty() || !(obj.types & text::kJsonObject))
          throw bad_request("tools[" + ft.name + "].parameters: a forced call needs an object schema", "tools");
        for (const auto& p : obj.properties) {
          if (!p.required) continue;
          engine::ForcedParam fp;
          fp.name = Json::parse("\"" + p.name + "\"").get<std::string>();
          fp.grammar = g;
          fp.node = p.node;
          ft.params.push_back(std::move(fp));
        }
      }
      spec->tools.push_back(std::move(ft));
    }
  }
  if (spec->tools.empty()) {
    if (!only.empty()) throw bad_request("tool_choice names the tool '" + only + "', which is not in tools", "tool_choice");
    throw bad_request("tool_choice requires a tool call but no tools were given", "tool_choice");
  }
  return spec;
}

void render_chat_prompt(const text::ChatRequest& cr, const DialectContext& ctx, PreparedRequest* pr) {
  std::vector<text::PromptSegment> segs;
  try {
    segs = text::render_prompt_segments(cr);
  } catch (const Error& e) {
    throw bad_request(e.what());
  }
  const text::Tokenizer& tok = ctx.tok;
  pr->gen.prompt = text::segments_to_ids(segs, [&](std::string_view s) {
    std::vector<int32_t> ids;
    if (ctx.runs && ctx.runs->get(s, &ids)) return ids;  // the model's own tokens for its text
    return tok.encode_plain(s);
  });
  const bool in_reasoning = !segs.empty() && segs.back().is_control && segs.back().token == text::ControlToken::think_begin;
  pr->gen.output.mode = in_reasoning ? engine::OutputMode::chat_thinking : engine::OutputMode::chat;
  if (pr->gen.forced_tool) pr->gen.forced_tool->in_reasoning = in_reasoning;
  const int64_t n = int64_t(pr->gen.prompt.size());
  // The generation prompt's trailing think marker is rendered differently once this turn is
  // history (thinking mode): snapshot the state just before it, so the next turn reuses the rest.
  const bool ends_in_think_marker = !segs.empty() && segs.back().is_control &&
      (segs.back().token == text::ControlToken::think_begin || segs.back().token == text::ControlToken::think_end);
  if (ends_in_think_marker && n > 1) pr->gen.snapshot_at = {n - 1};
  if (in_reasoning && cr.thinking_budget)  // thinking.budget_tokens: </think> is forced there
    pr->gen.reasoning_budget = int(std::min<int64_t>(*cr.thinking_budget, std::numeric_limits<int>::max()));
  if (ctx.model.end_turn_after > 0) {  // --end-turn-after: half of it for the reasoning, then EOS
    pr->gen.end_turn_after = ctx.model.end_turn_after;
    if (in_reasoning && (pr->gen.reasoning_budget < 0 || pr->gen.reasoning_budget > ctx.model.end_turn_after / 2))
      pr->gen.reasoning_budget = ctx.model.end_turn_after / 2;
  }
  if (n >= ctx.model.ctx)
    throw bad_request("the prompt has " + std::to_string(n) + " tokens, but the context window (--ctx) is " +
                      std::to_string(ctx.model.ctx) + " tokens", "messages");
}

int resolve_max_tokens(const Json* v, const char* key, int64_t prompt_tokens, const DialectContext& ctx) {
  int64_t room = ctx.model.ctx - prompt_tokens;
  if (ctx.model.max_output > 0) room = std::min(room, ctx.model.max_output);
  if (!v || v->is_null()) return int(room);
  if (!v->is_number_integer()) throw bad_request(std::string(key) + ": expected an integer", key);
  const int64_t x = v->get<int64_t>();
  if (x < 1) throw bad_request(std::string(key) + ": must be at least 1, got " + std::to_string(x), key);
  return int(std::min<int64_t>(x, room));
}

namespace openai {
namespace {

double get_number(const Json& j, const char* k, double def, double lo, double hi) {
  const Json* v = text::json_member(j, k);
  if (!v) return def;
  if (!v->is_number()) throw bad_request(std::string(k) + ": expected a number", k);
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    throw bad_request(std::string(k) + ": must be between " + text::py_float_repr(lo) + " and " + text::py_float_repr(hi), k);
  return x;
}

std::string resolve_model(const Json& j, const DialectContext& ctx) {
  std::string m;
  if (const Json* v = text::json_member(j, "model")) {
    if (!v->is_string()) throw bad_request("model: expected a string", "model");
    m = v->get<std::string>();
  }
  auto r = ctx.model.resolve(m);
  if (!r) throw ApiError(404, "not_found_error", "The model '" + m + "' does not exist (this server serves '" + ctx.model.name + "')", "model");
  return *r;
}

void read_sampling(const Json& j, PreparedRequest* pr, bool chat) {
  engine::SamplingParams& s = pr->gen.sampling;
  s.temperature = float(get_number(j, "temperature", 1.0, 0.0, 2.0));
  s.top_p = float(get_number(j, "top_p", 1.0, 0.0, 1.0));
  if (s.top_p <= 0.0f) s.top_p = 1e-6f;
  s.presence_penalty = float(get_number(j, "presence_penalty", 0.0, -2.0, 2.0));
  s.frequency_penalty = float(get_number(j, "frequency_penalty", 0.0, -2.0, 2.0));
  // n > 1 (several choices per request) is not supported: refused, never silently ignored.
  if (const Json* n = text::json_member(j, "n"); n && !n->is_null()) {
    if (!n->is_number_integer()) throw bad_request("n: expected an integer", "n");
    if (n->get<int64_t>() != 1)
      throw bad_request("n: this server returns one choice per request, so n must be 1 (got " + std::to_string(n->get<int64_t>()) +
                        "); send n requests for n samples (they share the prompt through the prefix cache)", "n");
  }
  if (const Json* v = text::json_member(j, "seed")) {
    if (!v->is_number_integer()) throw bad_request("seed: expected an integer", "seed");
    s.seed = uint64_t(v->get<int64_t>());
    s.has_seed = true;
  }
  if (const Json* v = text::json_member(j, "logprobs")) {
    if (chat) {
      if (!v->is_boolean()) throw bad_request("logprobs: expected a boolean", "logprobs");
      s.logprobs = v->get<bool>();
    } else {  // completions: logprobs is the number of alternatives
      if (!v->is_number_integer()) throw bad_request("logprobs: expected an integer", "logprobs");
      s.logprobs = true;
      s.top_logprobs = int(v->get<int64_t>());
    }
  }
  if (const Json* v = text::json_member(j, "top_logprobs")) {
    if (!v->is_number_integer()) throw bad_request("top_logprobs: expected an integer", "top_logprobs");
    s.top_logprobs = int(v->get<int64_t>());
    if (!s.logprobs) throw bad_request("top_logprobs requires logprobs: true", "top_logprobs");
  }
  if (s.top_logprobs < 0 || s.top_logprobs > engine::kMaxTopLogprobs)
    throw bad_request("top_logprobs: must be between 0 and 20", "top_logprobs");
  pr->want_logprobs = s.logprobs;
  if (const Json* v = text::json_member(j, "stop")) {
    if (v->is_string()) {
      if (!v->get<std::string>().empty()) pr->gen.output.stop.push_back(v->get<std::string>());
    }
    else if (v->is_array()) {
      for (const auto& x : *v) {
        if (!x.is_string()) throw bad_request("stop: expected a string or a list of strings", "stop");
        if (!x.get<std::string>().empty()) pr->gen.output.stop.push_back(x.get<std::string>());
      }
    } else {
      throw bad_request("stop: expected a string or a list of strings", "stop");
    }
    if (pr->gen.output.stop.size() > 16) throw bad_request("stop: at most 16 stop sequences", "stop");
  }
  try {
    s.validate(int32_t(1) << 30);
  } catch (const Error& e) {
    throw bad_request(e.what());
  }
}

bool get_stream(const Json& j) {
  const Json* v = text::json_member(j, "stream");
  if (!v) return false;
  if (!v->is_boolean()) throw bad_request("stream: expected a boolean", "stream");
  return v->get<bool>();
}

Json usage_json(const Usage& u) {
  Json j;
  j["prompt_tokens"] = u.prompt;
  j["completion_tokens"] = u.completion;
  j["total_tokens"] = u.prompt + u.completion;
  j["prompt_tokens_details"] = {{"cached_tokens", u.cached}};
  j["completion_tokens_details"] = {{"reasoning_tokens", u.reasoning}};
  j["prompt_cache_hit_tokens"] = u.cached;
  j["prompt_cache_miss_tokens"] = u.prompt - u.cached;
  return j;
}

// The engine's finish reason as OpenAI's finish_reason (the one place it is mapped).
const char* finish_name(engine::FinishReason f) {
  switch (f) {
    case engine::FinishReason::max_tokens:
    case engine::FinishReason::context_full: return "length";
    case engine::FinishReason::tool_calls: return "tool_calls";
    default: return "stop";  // eos, stop_string (cancelled / error never reach a client body)
  }
}

Json bytes_of(const std::string& s) {
  Json b = Json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

Json logprob_entry(const TokenLogprobInfo& t) {
  Json e;
  e["token"] = t.token;
  e["logprob"] = t.logprob;
  e["bytes"] = bytes_of(t.token);
  Json top = Json::array();
  for (const auto& [tok, lp] : t.top) top.push_back({{"token", tok}, {"logprob", lp}, {"bytes", bytes_of(tok)}});
  e["top_logprobs"] = std::move(top);
  return e;
}

Json logprobs_json(std::span<const TokenLogprobInfo> lp) {
  Json c = Json::array();
  for (const auto& t : lp) c.push_back(logprob_entry(t));
  return {{"content", std::move(c)}};
}

std::string sse(const Json& j) { return "data: " + dump_json(j) + "\n\n"; }

// The end of an OpenAI stream after the finish chunk: the usage chunk (`head` with choices: [])
// when stream_options.include_usage asked for it, then [DONE].
std::string stream_tail(bool include_usage, Json head, const Usage& usage) {
  std::string out;
  if (include_usage) {
    head["choices"] = Json::array();
    head["usage"] = usage_json(usage);
    out = sse(head);
  }
  return out + "data: [DONE]\n\n";
}

std::string sse_error(const std::string& msg) {
  return sse({{"error", {{"message", msg}, {"type", "server_error"}, {"param", nullptr}, {"code", nullptr}}}});
}

class ChatResponder : public Responder {
 public:
  ChatResponder(std::string id, std::string model, bool include_usage, bool logprobs)
      : id_(std::move(id)), model_(std::move(model)), include_usage_(include_usage), logprobs_(logprobs),
        created_(int64_t(std::time(nullptr))) {}

  Json chunk(Json delta, Json finish = nullptr) {
    Json c;
    c["id"] = id_;
    c["object"] = "chat.completion.chunk";
    c["created"] = created_;
    c["model"] = model_;
    c["system_fingerprint"] = "fp_dsv4";
    Json ch;
    ch["index"] = 0;
    ch["delta"] = std::move(delta);
    ch["logprobs"] = nullptr;
    ch["finish_reason"] = std::move(finish);
    c["choices"] = Json::array({std::move(ch)});
    return c;
  }

  std::string stream_begin(const Usage&) override {
    return sse(chunk({{"role", "assistant"}, {"content", ""}}));
  }

  std::string stream_events(std::span<const text::ParseEvent> ev, std::span<const TokenLogprobInfo> lp) override {
    pending_lp_.insert(pending_lp_.end(), lp.begin(), lp.end());
    std::vector<Json> chunks;
    std::string reasoning, content;
    auto flush_text = [&] {
      if (!reasoning.empty()) chunks.push_back(chunk({{"content", nullptr}, {"reasoning_content", reasoning}}));
      if (!content.empty()) chunks.push_back(chunk({{"content", content}}));
      reasoning.clear();
      content.clear();
    };
    for (const auto& e : ev) {
      switch (e.kind) {
        case text::ParseEventKind::reasoning_delta:
          if (!content.empty()) flush_text();
          reasoning += e.text;
          break;
        case text::ParseEventKind::content_delta:
          if (!reasoning.empty()) flush_text();
          content += e.text;
          break;
        case text::ParseEventKind::tool_call_start: {
          flush_text();
          Json tc = {{"index", e.tool_index}, {"id", call_id(e.tool_index)}, {"type", "function"},
                     {"function", {{"name", e.name}, {"arguments", ""}}}};
          chunks.push_back(chunk({{"tool_calls", Json::array({tc})}}));
          break;
        }
        case text::ParseEventKind::tool_call_arguments: {
          flush_text();
          Json tc = {{"index", e.tool_index}, {"function", {{"arguments", e.text}}}};
          chunks.push_back(chunk({{"tool_calls", Json::array({tc})}}));
          break;
        }
        default:
          break;
      }
    }
    flush_text();
    std::string out;
    for (size_t i = 0; i < chunks.size(); ++i) {
      if (i == 0 && logprobs_ && !pending_lp_.empty()) {
        chunks[0]["choices"][0]["logprobs"] = logprobs_json(pending_lp_);
        pending_lp_.clear();
      }
      out += sse(chunks[i]);
    }
    return out;
  }

  std::string stream_end(const Outcome& o) override {
    Json last = chunk(Json::object(), finish_name(o.finish));
    if (logprobs_ && !pending_lp_.empty()) last["choices"][0]["logprobs"] = logprobs_json(pending_lp_);
    Json head;
    head["id"] = id_;
    head["object"] = "chat.completion.chunk";
    head["created"] = created_;
    head["model"] = model_;
    head["system_fingerprint"] = "fp_dsv4";
    return sse(last) + stream_tail(include_usage_, head, o.usage);
  }

  std::string stream_error(const std::string& msg) override { return sse_error(msg); }

  std::string response(const Outcome& o) override {
    Json msg;
    msg["role"] = "assistant";
    msg["content"] = o.message.content;
    if (!o.message.reasoning_content.empty()) msg["reasoning_content"] = o.message.reasoning_content;
    else msg["reasoning_content"] = nullptr;
    if (!o.message.tool_calls.empty()) {
      Json tcs = Json::array();
      for (size_t i = 0; i < o.message.tool_calls.size(); ++i)
        tcs.push_back({{"id", call_id(int(i))}, {"type", "function"},
                       {"function", {{"name", o.message.tool_calls[i].name}, {"arguments", o.message.tool_calls[i].arguments}}}});
      msg["tool_calls"] = std::move(tcs);
    }
    Json ch;
    ch["index"] = 0;
    ch["message"] = std::move(msg);
    ch["logprobs"] = logprobs_ ? logprobs_json(o.logprobs) : Json(nullptr);
    ch["finish_reason"] = finish_name(o.finish);
    Json r;
    r["id"] = id_;
    r["object"] = "chat.completion";
    r["created"] = created_;
    r["model"] = model_;
    r["system_fingerprint"] = "fp_dsv4";
    r["choices"] = Json::array({std::move(ch)});
    r["usage"] = usage_json(o.usage);
    return dump_json(r);
  }

 private:
  std::string call_id(int i) const { return tool_call_id(id_, i, false); }

  std::string id_, model_;
  bool include_usage_, logprobs_;
  int64_t created_;
  std::vector<TokenLogprobInfo> pending_lp_;
};

class CompletionResponder : public Responder {
 public:
  CompletionResponder(std::string id, std::string model, bool include_usage, bool logprobs)
      : id_(std::move(id)), model_(std::move(model)), include_usage_(include_usage), logprobs_(logprobs),
        created_(int64_t(std::time(nullptr))) {}

  Json base() const {
    Json c;
    c["id"] = id_;
    c["object"] = "text_completion";
    c["created"] = created_;
    c["model"] = model_;
    c["system_fingerprint"] = "fp_dsv4";
    return c;
  }
  Json choice(const std::string& text, Json finish, std::span<const TokenLogprobInfo> lp) const {
    Json ch;
    ch["index"] = 0;
    ch["text"] = text;
    if (logprobs_) {
      Json toks = Json::array(), lps = Json::array(), tops = Json::array();
      for (const auto& t : lp) {
        toks.push_back(t.token);
        lps.push_back(t.logprob);
        Json m = Json::object();
        for (const auto& [tk, v] : t.top) m[tk] = v;
        tops.push_back(std::move(m));
      }
      ch["logprobs"] = {{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}};
    } else {
      ch["logprobs"] = nullptr;
    }
    ch["finish_reason"] = std::move(finish);
    return ch;
  }
  std::string stream_begin(const Usage&) override { return ""; }
  std::string stream_events(std::span<const text::ParseEvent> ev, std::span<const TokenLogprobInfo> lp) override {
    std::string text;
    for (const auto& e : ev)
      if (e.kind == text::ParseEventKind::content_delta || e.kind == text::ParseEventKind::reasoning_delta) text += e.text;
    if (text.empty() && lp.empty()) return "";
    Json c = base();
    c["choices"] = Json::array({choice(text, nullptr, lp)});
    return sse(c);
  }
  std::string stream_end(const Outcome& o) override {
    Json c = base();
    c["choices"] = Json::array({choice("", finish_name(o.finish), {})});
    return sse(c) + stream_tail(include_usage_, base(), o.usage);
  }
  std::string stream_error(const std::string& msg) override { return sse_error(msg); }
  std::string response(const Outcome& o) override {
    Json r = base();
    r["choices"] = Json::array({choice(o.message.reasoning_content + o.message.content, finish_name(o.finish), o.logprobs)});
    r["usage"] = usage_json(o.usage);
    return dump_json(r);
  }

 private:
  std::string id_, model_;
  bool include_usage_, logprobs_;
  int64_t created_;
};

bool include_usage_of(const Json& j) {
  if (const Json* so = text::json_member(j, "stream_options"); so && so->is_object())
    if (const Json* iu = text::json_member(*so, "include_usage"); iu && iu->is_boolean()) return iu->get<bool>();
  return false;
}

}  // namespace

}  // namespace openai

PreparedRequest prepare_chat_request(Json& j, const DialectContext& ctx) {
  using namespace openai;
  PreparedRequest pr;
  pr.model = resolve_model(j, ctx);
  const Json* msgs = text::json_member(j, "messages");
  if (!msgs) throw bad_request("messages: required", "messages");
  if (!msgs->is_array() || msgs->empty()) throw bad_request("messages: expected a non-empty list", "messages");
  pr.stream = get_stream(j);
  read_sampling(j, &pr, true);

  // OpenAI's `developer` role is the system prompt of its newer models (the openai Agents SDK and
  // the AI SDK send it). V4's own developer turn is an internal search-agent format that the
  // encoder drops before the last user message in thinking mode, so it is read as a system message.
  for (auto& m : j["messages"])
    if (m.is_object() && m.contains("role") && m["role"] == "developer") m["role"] = "system";
  // Assistant tool-call turns sent back without their reasoning get it restored (ReasoningMemo).
  if (ctx.memo) {
    for (auto& m : j["messages"]) {
      if (!m.is_object() || !m.contains("tool_calls") || !m["tool_calls"].is_array() || m["tool_calls"].empty()) continue;
      const Json* rc = text::json_member(m, "reasoning_content");
      if (rc && rc->is_string() && !rc->get<std::string>().empty()) continue;
      const Json& tc = m["tool_calls"][0];
      std::string reasoning;
      if (tc.is_object() && tc.contains("id") && tc["id"].is_string() && ctx.memo->get(tc["id"].get<std::string>(), &reasoning))
        m["reasoning_content"] = reasoning;
    }
  }
  text::ChatRequest cr;
  try {
    cr = text::chat_request_from_openai(j);
    ctx.model.apply_effort(cr);
  } catch (const Error& e) {
    throw bad_request(e.what());
  }

  // tool_choice: none | auto | required | {"type":"function","function":{"name":...}}
  const Json* tools = text::json_member(j, "tools");
  if (const Json* tc = text::json_member(j, "tool_choice")) {
    if (tc->is_string()) {
      const std::string s = tc->get<std::string>();
      if (s == "none") pr.gen.sampling.logit_bias.push_back({dsml_token_id(), -std::numeric_limits<float>::infinity()});
      else if (s == "required") pr.gen.forced_tool = forced_tool_from_tools(tools ? *tools : Json(), "");
      else if (s != "auto") throw bad_request("tool_choice: expected none, auto, required or a function object", "tool_choice");
    } else if (tc->is_object()) {
      const Json* fn = text::json_member(*tc, "function");
      const Json* name = fn && fn->is_object() ? text::json_member(*fn, "name") : nullptr;
      if (!name || !name->is_string()) throw bad_request("tool_choice.function.name: required", "tool_choice");
      pr.gen.forced_tool = forced_tool_from_tools(tools ? *tools : Json(), name->get<std::string>());
    } else {
      throw bad_request("tool_choice: expected a string or an object", "tool_choice");
    }
  }
  // tool_choice auto (or absent) with a strict tool: once the model opens a tool-call block, the
  // block is decoded under the tools' schemas.
  if (!pr.gen.forced_tool && tools && tools->is_array()) {
    const Json* tc = text::json_member(j, "tool_choice");
    const bool is_auto = !tc || (tc->is_string() && tc->get<std::string>() == "auto");
    bool any_strict = false;
    for (const auto& t : *tools) {
      const Json& fn = t.contains("function") ? t["function"] : t;
      any_strict |= fn.is_object() && fn.contains("strict") && fn["strict"].is_boolean() && fn["strict"].get<bool>();
    }
    if (is_auto && any_strict) {
      pr.gen.forced_tool = forced_tool_from_tools(*tools, "", true);
      pr.gen.forced_tool->on_open = true;
    }
  }
  // Structured output: response_format json_object / json_schema constrains the answer.
  if (const Json* rf = text::json_member(j, "response_format"))
    pr.gen.response_schema = response_format_grammar(*rf, "response_format");
  // parallel_tool_calls: true lets a forced block hold more than one call.
  if (const Json* ptc = text::json_member(j, "parallel_tool_calls")) {
    if (!ptc->is_boolean()) throw bad_request("parallel_tool_calls: expected a boolean", "parallel_tool_calls");
    if (pr.gen.forced_tool) pr.gen.forced_tool->parallel = ptc->get<bool>();
  }
  render_chat_prompt(cr, ctx, &pr);
  const Json* mt = text::json_member(j, "max_completion_tokens");
  const char* mt_key = "max_completion_tokens";
  if (!mt) {
    mt = text::json_member(j, "max_tokens");
    mt_key = "max_tokens";
  }
  pr.gen.max_tokens = resolve_max_tokens(mt, mt_key, int64_t(pr.gen.prompt.size()), ctx);
  pr.gen.id = ctx.request_id;
  return pr;
}

namespace openai {

PreparedRequest prepare_chat(const std::string& body, const DialectContext& ctx) {
  Json j = parse_request_json(body);
  PreparedRequest pr = prepare_chat_request(j, ctx);
  pr.responder = std::make_unique<ChatResponder>(ctx.request_id, pr.model, include_usage_of(j), pr.want_logprobs);
  return pr;
}

PreparedRequest prepare_completion(const std::string& body, const DialectContext& ctx) {
  Json j = parse_request_json(body);
  PreparedRequest pr;
  pr.model = resolve_model(j, ctx);
  const Json* p = text::json_member(j, "prompt");
  if (!p) throw bad_request("prompt: required", "prompt");
  std::string prompt;
  if (p->is_string()) prompt = p->get<std::string>();
  else if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) prompt = (*p)[0].get<std::string>();
  else throw bad_request("prompt: expected a string", "prompt");
  pr.stream = get_stream(j);
  read_sampling(j, &pr, false);
  const text::Tokenizer& tok = ctx.tok;
  std::vector<int32_t>& ids = pr.gen.prompt;
  ids.push_back(tok.bos_id());
  if (const Json* sfx = text::json_member(j, "suffix")) {
    if (!sfx->is_string()) throw bad_request("suffix: expected a string", "suffix");
    const int32_t b = tok.token_id("<｜fim▁begin｜>"), h = tok.token_id("<｜fim▁hole｜>"), e = tok.token_id("<｜fim▁end｜>");
    if (b < 0 || h < 0 || e < 0) throw bad_request("suffix: this model's tokenizer has no FIM tokens", "suffix");
    ids.push_back(b);
    tok.encode_plain(prompt, &ids);
    ids.push_back(h);
    tok.encode_plain(sfx->get<std::string>(), &ids);
    ids.push_back(e);
  } else {
    tok.encode_plain(prompt, &ids);
  }
  if (int64_t(ids.size()) >= ctx.model.ctx)
    throw bad_request("the prompt has " + std::to_string(ids.size()) + " tokens, but the context window (--ctx) is " +
                      std::to_string(ctx.model.ctx) + " tokens", "prompt");
  pr.gen.output.mode = engine::OutputMode::chat;  // the text as the answer: no reasoning to split off
  const Json* mt = text::json_member(j, "max_tokens");
  pr.gen.max_tokens = resolve_max_tokens(mt ? mt : nullptr, "max_tokens", int64_t(ids.size()), ctx);
  if (!mt) pr.gen.max_tokens = std::min(pr.gen.max_tokens, 16);  // OpenAI's default for completions
  pr.gen.id = ctx.request_id;
  pr.responder = std::make_unique<CompletionResponder>(ctx.request_id, pr.model, include_usage_of(j), pr.want_logprobs);
  return pr;
}

std::string error_body(const ApiError& e) {
  Json err;
  err["message"] = e.what();
  err["type"] = e.type;
  err["param"] = e.param.empty() ? Json(nullptr) : Json(e.param);
  err["code"] = !e.code.empty() ? Json(e.code) : e.status == 404 ? Json("model_not_found") : Json(nullptr);
  return dump_json(Json{{"error", std::move(err)}});
}

namespace {
Json model_json(const ServedModel& m) {
  return {{"id", m.name}, {"object", "model"}, {"created", 0}, {"owned_by", "dsv4"}, {"type", "model"},
          {"display_name", m.name}, {"created_at", "2026-01-01T00:00:00Z"}, {"context_length", m.ctx}};
}
}  // namespace

std::string models_body(const ServedModel& m) {
  Json data = Json::array({model_json(m)});
  return dump_json(Json{{"object", "list"}, {"data", data}, {"has_more", false}, {"first_id", m.name}, {"last_id", m.name}});
}

std::string model_body(const ServedModel& m) { return dump_json(model_json(m)); }

std::string health_body(const ServedModel& m, const std::string& status, int running, int waiting) {
  return dump_json(Json{{"status", status}, {"model", m.name}, {"ctx", m.ctx}, {"running", running}, {"waiting", waiting}});
}

}  // namespace openai
}  // namespace dsv4::server
