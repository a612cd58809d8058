// dsv4 text: DeepSeek-V4 prompt rendering (API-NOTES §2). Rules follow the official
// `encoding_dsv4.py`; each function below names the encoder step it mirrors.
#include "text/chat_template.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"

namespace dsv4::text {

// ---------------------------------------------------------------------------------------------
// Control tokens
// ---------------------------------------------------------------------------------------------
namespace {

struct ControlTokenInfo {
  ControlToken token;
  std::string_view spelling;
  int32_t id;
};

// testdata/encoding/special_tokens.json (V4 vocabulary ids).
constexpr std::array<ControlTokenInfo, kNumControlTokens> kControlTokens{{
    {ControlToken::bos, "<｜begin▁of▁sentence｜>", 0},
    {ControlToken::eos, "<｜end▁of▁sentence｜>", 1},
    {ControlToken::user, "<｜User｜>", 128803},
    {ControlToken::assistant, "<｜Assistant｜>", 128804},
    {ControlToken::think_begin, "<think>", 128821},
    {ControlToken::think_end, "</think>", 128822},
    {ControlToken::dsml, "｜DSML｜", 128825},
    {ControlToken::latest_reminder, "<｜latest_reminder｜>", 128828},
    {ControlToken::task_action, "<｜action｜>", 128829},
    {ControlToken::task_query, "<｜query｜>", 128830},
    {ControlToken::task_authority, "<｜authority｜>", 128831},
    {ControlToken::task_domain, "<｜domain｜>", 128832},
    {ControlToken::task_title, "<｜title｜>", 128836},
    {ControlToken::task_read_url, "<｜read_url｜>", 128845},
}};

const ControlTokenInfo& info(ControlToken t) { return kControlTokens[static_cast<size_t>(t)]; }

}  // namespace

std::string_view control_token_spelling(ControlToken t) { return info(t).spelling; }
int32_t control_token_id(ControlToken t) { return info(t).id; }

std::optional<ControlToken> control_token_from_spelling(std::string_view s) {
  for (const auto& i : kControlTokens)
    if (i.spelling == s) return i.token;
  return std::nullopt;
}

const char* role_name(Role r) {
  switch (r) {
    case Role::system: return "system";
    case Role::user: return "user";
    case Role::assistant: return "assistant";
    case Role::tool: return "tool";
    case Role::developer: return "developer";
    case Role::latest_reminder: return "latest_reminder";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Fixed template text
// ---------------------------------------------------------------------------------------------
namespace {

// TOOLS_TEMPLATE of the official encoder. Every control-token spelling in it is produced by the
// template, so emit_template() turns them into control tokens.
constexpr std::string_view kToolsTemplateHead =
    "## Tools\n\n"
    "You have access to a set of tools to help answer the user's question. You can invoke tools "
    "by writing a \"<｜DSML｜tool_calls>\" block like the following:\n\n"
    "<｜DSML｜tool_calls>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME\">\n"
    "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE"
    "</｜DSML｜parameter>\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "</｜DSML｜tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other types "
    "(numbers, booleans, arrays, objects), pass the value in JSON format and set "
    "`string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning "
    "inside <think>...</think> BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n";
constexpr std::string_view kToolsTemplateTail =
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool "
    "calls.\n";

constexpr std::string_view kResponseFormatHead =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

constexpr std::string_view kEffortAbsoluteMax =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to "
    "resolve the root cause, rigorously stress-testing your logic against all potential paths, "
    "edge cases, and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, "
    "considered alternative, and rejected hypothesis to ensure absolutely no assumption is left "
    "unchecked.\n\n";

constexpr std::string_view kEffortBeyondMax =
    "Reasoning Effort: Beyond maximum — exhaustive, relentless, and uncompromising.\n"
    "You MUST reason with the utmost depth and rigor, leaving absolutely nothing to chance: "
    "exhaustively decompose the problem into its most fundamental components, trace every causal "
    "chain to its root, and resolve the underlying cause rather than any surface symptom.\n"
    "Do not stop reasoning until you have independently verified the solution from multiple "
    "angles and are certain that no assumption remains unchecked and no error remains "
    "undiscovered.\n\n";

}  // namespace

const EffortTable& EffortTable::v4() {
  static const EffortTable t{"v4", {{"high", ""}, {"max", std::string(kEffortAbsoluteMax)}}, ""};
  return t;
}

const EffortTable& EffortTable::v4_0731() {
  static const EffortTable t{"v4-0731",
                             {{"low", ""},
                              {"high", std::string(kEffortAbsoluteMax)},
                              {"max", std::string(kEffortBeyondMax)}},
                             "low"};
  return t;
}

const EffortTable* EffortTable::by_name(std::string_view name) {
  if (name == "v4") return &v4();
  if (name == "v4-0731" || name == "v4_0731" || name == "0731") return &v4_0731();
  return nullptr;
}

const EffortTable& EffortTable::for_model_dir(const std::string& model_dir, std::string* why) {
  namespace fs = std::filesystem;
  auto read = [](const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream ss;
    if (f) ss << f.rdbuf();
    return ss.str();
  };
  auto because = [&](const EffortTable& t, std::string reason) -> const EffortTable& {
    if (why) *why = std::move(reason);
    return t;
  };
  std::error_code ec;
  fs::path dir(model_dir);
  if (model_dir.empty() || !fs::is_directory(dir, ec)) return because(v4(), "no checkpoint directory");
  fs::path enc = dir / "encoding" / "encoding_dsv4.py";
  if (fs::exists(enc, ec))
    return read(enc).find("Beyond maximum") != std::string::npos
               ? because(v4_0731(), "the checkpoint's encoding/encoding_dsv4.py has the 0731 effort table")
               : because(v4(), "the checkpoint's encoding/encoding_dsv4.py has the original effort table");
  // Later releases (Flash-0731, Pro-0813) by name, by the config's name, or by their DSpark keys.
  auto later = [](const std::string& n) {
    return n.find("0731") != std::string::npos || n.find("0813") != std::string::npos;
  };
  std::string name = fs::weakly_canonical(dir, ec).filename().string();
  if (name.empty()) name = dir.filename().string();
  if (later(name)) return because(v4_0731(), "the directory name says 0731/0813");
  Json cfg = Json::parse(read(dir / "config.json"), nullptr, /*allow_exceptions=*/false);
  if (!cfg.is_object()) return because(v4(), "no encoder file, no later-release marker");
  for (const char* key : {"_name_or_path", "name_or_path", "model_name"}) {
    if (cfg.contains(key) && cfg[key].is_string() && later(cfg[key].get<std::string>()))
      return because(v4_0731(), std::string("config.json ") + key + " says 0731/0813");
  }
  if (cfg.contains("dspark_target_layer_ids"))
    return because(v4_0731(), "config.json has the DSpark keys of the 0731/0813 releases");
  return because(v4(), "no encoder file, no later-release marker");
}

const EffortTable& EffortTable::from_flag(const std::string& flag, const std::string& model_dir, std::string* why) {
  if (flag == "auto") return for_model_dir(model_dir, why);
  const EffortTable* t = by_name(flag);
  if (!t) throw Error("--encoder: unknown encoder '" + flag + "' (expected auto, v4 or v4-0731)");
  if (why) *why = "--encoder " + flag;
  return *t;
}

const std::string& EffortTable::prefix(const std::string& effort) const {
  for (const auto& [k, v] : prefixes)
    if (k == effort) return v;
  std::string allowed;
  for (const auto& [k, v] : prefixes) allowed += (allowed.empty() ? "" : ", ") + k;
  throw Error("reasoning_effort: '" + effort + "' is not supported by the " + name +
              " effort table (expected null or one of: " + allowed + ")");
}

std::optional<std::string> normalize_reasoning_effort(std::string_view api_value, const EffortTable& table) {
  std::string v(api_value);
  if (v.empty() || v == "none") return std::nullopt;
  if (v == "minimal") v = "low";
  else if (v == "medium" || v == "xhigh") v = "high";
  else if (v == "ultra") v = "max";
  for (const auto& [k, p] : table.prefixes)
    if (k == v) return v;
  if (v == "low") return std::nullopt;
  throw Error("reasoning_effort: unknown value '" + std::string(api_value) + "'");
}

// ---------------------------------------------------------------------------------------------
// Request JSON -> messages
// ---------------------------------------------------------------------------------------------
namespace {

// Python truthiness of a JSON value (`if x:` in the encoder).
bool py_truthy(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return false;
    case Json::value_t::boolean: return v.get<bool>();
    case Json::value_t::number_integer: return v.get<int64_t>() != 0;
    case Json::value_t::number_unsigned: return v.get<uint64_t>() != 0;
    case Json::value_t::number_float: return v.get<double>() != 0.0;
    case Json::value_t::string: return !v.get_ref<const std::string&>().empty();
    case Json::value_t::array:
    case Json::value_t::object: return !v.empty();
    case Json::value_t::binary: return true;  // big integer: never zero
    case Json::value_t::discarded: return false;
  }
  return false;
}

// Optional string member: absent or null -> fallback.
std::string opt_string(const Json& obj, const char* key, const std::string& where,
                       const std::string& fallback = "") {
  const Json* v = json_member(obj, key);
  if (!v || v->is_null()) return fallback;
  if (!v->is_string()) throw Error(where + "." + key + ": expected a string, got " + v->type_name());
  return v->get<std::string>();
}

Role parse_role(const Json& msg, const std::string& where) {
  const Json* r = json_member(msg, "role");
  if (!r || !r->is_string()) throw Error(where + ".role: expected a string");
  const std::string& s = r->get_ref<const std::string&>();
  if (s == "system") return Role::system;
  if (s == "user") return Role::user;
  if (s == "assistant") return Role::assistant;
  if (s == "tool") return Role::tool;
  if (s == "developer") return Role::developer;
  if (s == "latest_reminder") return Role::latest_reminder;
  throw Error(where + ".role: unknown role '" + s + "'");
}

// `content` as text. Lists of parts are joined by "\n\n" (the encoder's join for tool-result
// parts and merged user turns). Tool results follow the encoder exactly: non-text parts become
// "[Unsupported <type>]". Other roles reject non-text parts.
std::string content_text(const Json& msg, Role role, const std::string& where) {
  const Json* c = json_member(msg, "content");
  if (!c || c->is_null()) return "";
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) throw Error(where + ".content: expected a string or a list of parts, got " + c->type_name());
  std::string out;
  size_t k = 0;
  for (const auto& part : *c) {
    std::string pw = where + ".content[" + std::to_string(k) + "]";
    std::string piece;
    if (part.is_string()) {
      piece = part.get<std::string>();
    } else {
      std::string type = part.is_object() ? opt_string(part, "type", pw, "None") : "None";
      if (type == "text") {
        piece = opt_string(part, "text", pw);
      } else if (role == Role::tool) {
        piece = "[Unsupported " + type + "]";
      } else {
        throw Error(pw + ": unsupported content part type '" + type + "' (only text is supported)");
      }
    }
    if (k++) out += "\n\n";
    out += piece;
  }
  return out;
}

ToolCall tool_call_from_openai(const Json& tc, const std::string& where) {
  if (!tc.is_object()) throw Error(where + ": expected an object");
  ToolCall call;
  const Json* fn = json_member(tc, "function");
  if (!fn || !fn->is_object()) throw Error(where + ".function: expected an object");
  // encoder: tc.get("id") or tc["function"].get("id", "")
  call.id = opt_string(tc, "id", where);
  if (call.id.empty()) call.id = opt_string(*fn, "id", where + ".function");
  const Json* name = json_member(*fn, "name");
  if (!name || !name->is_string()) throw Error(where + ".function.name: expected a string");
  call.name = name->get<std::string>();
  const Json* args = json_member(*fn, "arguments");
  call.arguments = args ? *args : Json("{}");
  return call;
}

}  // namespace

Message message_from_openai(const Json& msg, const std::string& where) {
  if (!msg.is_object()) throw Error(where + ": expected an object");
  Message m;
  m.role = parse_role(msg, where);
  m.content = content_text(msg, m.role, where);
  m.reasoning_content = opt_string(msg, "reasoning_content", where);
  if (!json_member(msg, "reasoning_content")) m.reasoning_content = opt_string(msg, "reasoning", where);
  if (const Json* tcs = json_member(msg, "tool_calls"); tcs && !tcs->is_null()) {
    if (!tcs->is_array()) throw Error(where + ".tool_calls: expected a list");
    for (size_t i = 0; i < tcs->size(); ++i)
      m.tool_calls.push_back(tool_call_from_openai((*tcs)[i], where + ".tool_calls[" + std::to_string(i) + "]"));
  }
  m.tool_call_id = opt_string(msg, "tool_call_id", where);
  if (const Json* t = json_member(msg, "tools"); t && !t->is_null()) {
    if (!t->is_array()) throw Error(where + ".tools: expected a list");
    m.tools = *t;
  }
  if (const Json* rf = json_member(msg, "response_format")) m.response_format = *rf;
  if (const Json* task = json_member(msg, "task"); task && !task->is_null()) {
    if (!task->is_string()) throw Error(where + ".task: expected a string");
    m.task = task->get<std::string>();
  }
  if (const Json* w = json_member(msg, "wo_eos")) m.wo_eos = py_truthy(*w);
  if (const Json* p = json_member(msg, "prefix"); p && m.role == Role::assistant) m.wo_eos = m.wo_eos || py_truthy(*p);
  return m;
}

ChatRequest chat_request_from_openai(const Json& body) {
  if (!body.is_object()) throw Error("request: expected a JSON object");
  ChatRequest req;
  const Json* msgs = json_member(body, "messages");
  if (!msgs || !msgs->is_array()) throw Error("request.messages: expected a list");
  for (size_t i = 0; i < msgs->size(); ++i)
    req.messages.push_back(message_from_openai((*msgs)[i], "request.messages[" + std::to_string(i) + "]"));

  // tools / response_format ride on the first system message (README mapping step 2).
  const Json* tools = json_member(body, "tools");
  const Json* rf = json_member(body, "response_format");
  bool attach_tools = tools && tools->is_array() && !tools->empty();
  bool attach_rf = rf && !rf->is_null();
  if (tools && !tools->is_null() && !tools->is_array()) throw Error("request.tools: expected a list");
  if (attach_tools || attach_rf) {
    if (req.messages.empty() || req.messages[0].role != Role::system) {
      Message sys;
      sys.role = Role::system;
      req.messages.insert(req.messages.begin(), std::move(sys));
    }
    if (attach_tools) req.messages[0].tools = *tools;
    if (attach_rf) req.messages[0].response_format = *rf;
  }

  // thinking: bool | {"type": "enabled"|"disabled"} | absent (enabled, as the hosted API).
  const Json* th = json_member(body, "thinking");
  if (!th || th->is_null()) {
    if (const Json* kw = json_member(body, "chat_template_kwargs")) {
      if (const Json* t = json_member(*kw, "thinking")) th = t;
      else if (const Json* t2 = json_member(*kw, "enable_thinking")) th = t2;
    }
  }
  if (th && !th->is_null()) {
    if (th->is_boolean()) {
      req.options.thinking_mode = th->get<bool>() ? ThinkingMode::thinking : ThinkingMode::chat;
    } else if (th->is_object()) {
      std::string type = opt_string(*th, "type", "request.thinking", "enabled");
      if (type == "disabled") req.options.thinking_mode = ThinkingMode::chat;
      else if (type == "enabled" || type == "auto" || type == "adaptive") req.options.thinking_mode = ThinkingMode::thinking;
      else throw Error("request.thinking.type: expected \"enabled\" or \"disabled\", got \"" + type + "\"");
      if (const Json* b = json_member(*th, "budget_tokens"); b && b->is_number_integer())
        req.thinking_budget = b->get<int64_t>();
    } else {
      throw Error(std::string("request.thinking: expected a boolean or an object, got ") + th->type_name());
    }
  }
  if (const Json* e = json_member(body, "reasoning_effort"); e && !e->is_null()) {
    if (!e->is_string()) throw Error("request.reasoning_effort: expected a string or null");
    req.options.reasoning_effort = e->get<std::string>();
  }
  if (const Json* d = json_member(body, "drop_thinking"); d && !d->is_null()) {
    if (!d->is_boolean()) throw Error("request.drop_thinking: expected a boolean");
    req.options.drop_thinking = d->get<bool>();
  }
  return req;
}

// ---------------------------------------------------------------------------------------------
// Encoder preprocessing
// ---------------------------------------------------------------------------------------------

// merge_tool_messages(): tool messages become tool_result blocks of a user turn; user text joins
// a preceding merged user turn unless that turn carries a task.
std::vector<Message> merge_tool_messages(const std::vector<Message>& messages) {
  std::vector<Message> merged;
  for (const Message& msg : messages) {
    if (msg.role == Role::tool) {
      ContentBlock b{true, msg.content, msg.tool_call_id};
      if (!merged.empty() && merged.back().role == Role::user) {
        merged.back().blocks.push_back(std::move(b));
      } else {
        Message u;
        u.role = Role::user;
        u.blocks.push_back(std::move(b));
        merged.push_back(std::move(u));
      }
    } else if (msg.role == Role::user) {
      ContentBlock b{false, msg.content, ""};
      if (!merged.empty() && merged.back().role == Role::user && !merged.back().task) {
        merged.back().blocks.push_back(std::move(b));
      } else {
        // Only content, task and wo_eos survive (the encoder rebuilds the dict).
        Message u;
        u.role = Role::user;
        u.content = msg.content;
        u.task = msg.task;
        u.wo_eos = msg.wo_eos;
        u.blocks.push_back(std::move(b));
        merged.push_back(std::move(u));
      }
    } else {
      merged.push_back(msg);
    }
  }
  return merged;
}

// sort_tool_results_by_call_order(): within each user turn, tool results follow the call order of
// the latest assistant message with tool calls (unknown ids sort as position 0, stable).
void sort_tool_results(std::vector<Message>& merged) {
  std::map<std::string, size_t> order;
  for (Message& msg : merged) {
    if (msg.role == Role::assistant && !msg.tool_calls.empty()) {
      order.clear();
      for (size_t i = 0; i < msg.tool_calls.size(); ++i)
        if (!msg.tool_calls[i].id.empty()) order[msg.tool_calls[i].id] = i;
    } else if (msg.role == Role::user && !msg.blocks.empty()) {
      std::vector<ContentBlock> results;
      for (const auto& b : msg.blocks)
        if (b.is_tool_result) results.push_back(b);
      if (results.size() <= 1 || order.empty()) continue;
      auto key = [&](const ContentBlock& b) {
        auto it = order.find(b.tool_use_id);
        return it == order.end() ? size_t{0} : it->second;
      };
      std::stable_sort(results.begin(), results.end(),
                       [&](const ContentBlock& a, const ContentBlock& b) { return key(a) < key(b); });
      size_t k = 0;
      for (auto& b : msg.blocks)
        if (b.is_tool_result) b = results[k++];
    }
  }
}

namespace {
int last_user_index(const std::vector<Message>& msgs) {
  for (int i = static_cast<int>(msgs.size()) - 1; i >= 0; --i)
    if (msgs[i].role == Role::user || msgs[i].role == Role::developer) return i;
  return -1;
}
}  // namespace

// _drop_thinking_messages(): before the last user/developer message, assistant turns lose their
// reasoning and developer turns are dropped.
std::vector<Message> drop_thinking_messages(const std::vector<Message>& merged) {
  int last = last_user_index(merged);
  std::vector<Message> out;
  for (int i = 0; i < static_cast<int>(merged.size()); ++i) {
    const Message& m = merged[i];
    bool keep_role = m.role == Role::user || m.role == Role::system || m.role == Role::tool ||
                     m.role == Role::latest_reminder;
    if (keep_role || i >= last) {
      out.push_back(m);
    } else if (m.role == Role::assistant) {
      out.push_back(m);
      out.back().reasoning_content.clear();
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

std::vector<DsmlParameter> dsml_parameters_from_arguments(const Json& arguments) {
  std::vector<DsmlParameter> out;
  auto wrap = [&](const Json& raw) {
    // encoder fallback: {"arguments": raw}
    if (raw.is_string()) out.push_back({"arguments", raw.get<std::string>(), true});
    else out.push_back({"arguments", py_json_dumps(raw), false});
  };
  if (!arguments.is_string()) {
    wrap(arguments);
    return out;
  }
  Json parsed;
  if (!try_parse_py_json(arguments.get_ref<const std::string&>(), &parsed) || !parsed.is_object()) {
    // Not JSON: wrapped as one string parameter. JSON that is not an object crashes every copy
    // of the encoder; it is wrapped the same way here.
    wrap(arguments);
    return out;
  }
  for (const auto& [k, v] : parsed.items()) {
    if (v.is_string()) out.push_back({k, v.get<std::string>(), true});
    else out.push_back({k, py_json_dumps(v), false});
  }
  return out;
}

namespace {

class SegmentWriter {
 public:
  explicit SegmentWriter(std::vector<PromptSegment>& out) : out_(out) {}

  void text(std::string_view s) {
    if (s.empty()) return;
    if (!out_.empty() && !out_.back().is_control) {
      out_.back().text.append(s);
    } else {
      PromptSegment seg;
      seg.text = std::string(s);
      out_.push_back(std::move(seg));
    }
  }
  void control(ControlToken t) {
    PromptSegment seg;
    seg.is_control = true;
    seg.token = t;
    out_.push_back(std::move(seg));
  }
  // Fixed template text: every control-token spelling in it is a control token.
  void template_text(std::string_view s) {
    size_t start = 0, i = 0;
    while (i < s.size()) {
      bool hit = false;
      for (const auto& ci : kControlTokens) {
        if (s.compare(i, ci.spelling.size(), ci.spelling) == 0) {
          text(s.substr(start, i - start));
          control(ci.token);
          i += ci.spelling.size();
          start = i;
          hit = true;
          break;
        }
      }
      if (!hit) ++i;
    }
    text(s.substr(start));
  }

 private:
  std::vector<PromptSegment>& out_;
};

void render_tools_block(SegmentWriter& w, const Json& tools) {
  // render_tools(): one `json.dumps` line per tools[i]["function"].
  std::string schemas;
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& t = tools[i];
    const Json* fn = json_member(t, "function");
    // Flat tool objects (no "function" wrapper) are accepted as the function itself.
    if (i) schemas += '\n';
    py_json_dump_to(schemas, fn ? *fn : t);
  }
  w.template_text(kToolsTemplateHead);
  w.text(schemas);
  w.template_text(kToolsTemplateTail);
}

void render_response_format(SegmentWriter& w, const Json& rf) {
  w.text(kResponseFormatHead);
  w.text(py_json_dumps(rf));
}

// Attachments of a system/developer message: "\n\n" + tools block, "\n\n" + response format.
void render_attachments(SegmentWriter& w, const Message& m) {
  if (py_truthy(m.tools)) {
    w.text("\n\n");
    render_tools_block(w, m.tools);
  }
  if (py_truthy(m.response_format)) {
    w.text("\n\n");
    render_response_format(w, m.response_format);
  }
}

void render_tool_calls(SegmentWriter& w, const std::vector<ToolCall>& calls) {
  w.text("\n\n<");
  w.control(ControlToken::dsml);
  w.text("tool_calls>\n");
  for (size_t i = 0; i < calls.size(); ++i) {
    if (i) w.text("\n");
    w.text("<");
    w.control(ControlToken::dsml);
    w.text("invoke name=\"");
    w.text(calls[i].name);
    w.text("\">\n");
    auto params = dsml_parameters_from_arguments(calls[i].arguments);
    for (size_t k = 0; k < params.size(); ++k) {
      if (k) w.text("\n");
      w.text("<");
      w.control(ControlToken::dsml);
      w.text("parameter name=\"");
      w.text(params[k].name);
      w.text(params[k].is_string ? "\" string=\"true\">" : "\" string=\"false\">");
      w.text(params[k].value);
      w.text("</");
      w.control(ControlToken::dsml);
      w.text("parameter>");
    }
    w.text("\n</");
    w.control(ControlToken::dsml);
    w.text("invoke>");
  }
  w.text("\n</");
  w.control(ControlToken::dsml);
  w.text("tool_calls>");
}

ControlToken task_token(const std::string& task) {
  if (task == "action") return ControlToken::task_action;
  if (task == "query") return ControlToken::task_query;
  if (task == "authority") return ControlToken::task_authority;
  if (task == "domain") return ControlToken::task_domain;
  if (task == "title") return ControlToken::task_title;
  if (task == "read_url") return ControlToken::task_read_url;
  throw Error("task: invalid task '" + task + "' (expected action, query, authority, domain, title or read_url)");
}

struct RenderContext {
  const std::vector<Message>& msgs;
  bool thinking;
  bool drop_thinking;  // effective value
  const std::string* effort_prefix;
  int last_user_idx;
  int first_turn_idx;  // the first non-system message (msgs.size() if none)
};

// A system message after the conversation started (Anthropic's and OpenAI's mid-conversation
// system messages). The official encoder renders a system turn as its raw text with no marker
// (after BOS); mid-conversation it does the same between turns: right after the previous
// assistant's EOS, or after a "\n\n" when it follows a user/tool turn (so it does not run into
// that turn's text: the encoder joins a merged user turn's parts the same way). Like a user turn,
// it ends in the assistant transition when the assistant speaks next or the prompt ends there.
bool is_mid_system(const RenderContext& ctx, int index) {
  return ctx.msgs[index].role == Role::system && index > ctx.first_turn_idx;
}

// render_message(): one message plus the transition that follows it. Kept whole so that it reads
// side by side with the official function.
void render_message(SegmentWriter& w, const RenderContext& ctx, int index) {
  const Message& msg = ctx.msgs[index];
  if (index == 0 && ctx.thinking && ctx.effort_prefix) w.text(*ctx.effort_prefix);

  switch (msg.role) {
    case Role::system:
      if (is_mid_system(ctx, index) && ctx.msgs[index - 1].role != Role::assistant) w.text("\n\n");
      w.text(msg.content);
      render_attachments(w, msg);
      break;
    case Role::developer:
      if (msg.content.empty()) throw Error("developer message: content must not be empty");
      w.control(ControlToken::user);
      w.text(msg.content);
      render_attachments(w, msg);
      break;
    case Role::user: {
      w.control(ControlToken::user);
      if (msg.blocks.empty()) {
        w.text(msg.content);
        break;
      }
      for (size_t i = 0; i < msg.blocks.size(); ++i) {
        if (i) w.text("\n\n");
        const ContentBlock& b = msg.blocks[i];
        if (b.is_tool_result) {
          w.text("<tool_result>");
          w.text(b.text);
          w.text("</tool_result>");
        } else {
          w.text(b.text);
        }
      }
      break;
    }
    case Role::latest_reminder:
      w.control(ControlToken::latest_reminder);
      w.text(msg.content);
      break;
    case Role::tool:
      throw Error("tool message reached the renderer unmerged");  // merge_tool_messages ran
    case Role::assistant: {
      bool prev_has_task = index >= 1 && ctx.msgs[index - 1].task.has_value();
      if (ctx.thinking && !prev_has_task && (!ctx.drop_thinking || index > ctx.last_user_idx)) {
        w.text(msg.reasoning_content);
        w.control(ControlToken::think_end);
      }
      w.text(msg.content);
      if (!msg.tool_calls.empty()) render_tool_calls(w, msg.tool_calls);
      if (!msg.wo_eos) w.control(ControlToken::eos);
      break;
    }
  }

  // Transition: only before an assistant / latest_reminder message or at the very end.
  if (index + 1 < static_cast<int>(ctx.msgs.size())) {
    Role next = ctx.msgs[index + 1].role;
    if (next != Role::assistant && next != Role::latest_reminder) return;
  }
  if (msg.task) {
    ControlToken tt = task_token(*msg.task);
    if (tt != ControlToken::task_action) {
      w.control(tt);
    } else {
      w.control(ControlToken::assistant);
      w.control(ctx.thinking ? ControlToken::think_begin : ControlToken::think_end);
      w.control(tt);
    }
  } else if (msg.role == Role::user || msg.role == Role::developer || is_mid_system(ctx, index)) {
    w.control(ControlToken::assistant);
    bool open_thinking = ctx.thinking && (!ctx.drop_thinking || index >= ctx.last_user_idx);
    w.control(open_thinking ? ControlToken::think_begin : ControlToken::think_end);
  }
}

}  // namespace

// encode_messages(messages, thinking_mode, drop_thinking, reasoning_effort), context=None.
std::vector<PromptSegment> render_prompt_segments(const std::vector<Message>& messages,
                                                  const RenderOptions& opt) {
  std::vector<Message> msgs = merge_tool_messages(messages);
  sort_tool_results(msgs);

  bool thinking = opt.thinking_mode == ThinkingMode::thinking;
  bool drop = opt.drop_thinking;
  for (const auto& m : msgs)
    if (py_truthy(m.tools)) drop = false;  // tools anywhere: keep all reasoning
  if (thinking && drop) msgs = drop_thinking_messages(msgs);

  const EffortTable& table = opt.effort_table ? *opt.effort_table : EffortTable::v4();
  const std::string* effort_prefix = nullptr;
  if (opt.reasoning_effort) {
    const std::string& p = table.prefix(*opt.reasoning_effort);  // validates in every mode
    if (!p.empty()) effort_prefix = &p;
  }

  std::vector<PromptSegment> segs;
  SegmentWriter w(segs);
  if (opt.add_bos) w.control(ControlToken::bos);
  int first_turn = 0;
  while (first_turn < static_cast<int>(msgs.size()) && msgs[first_turn].role == Role::system) ++first_turn;
  RenderContext ctx{msgs, thinking, drop, effort_prefix, last_user_index(msgs), first_turn};
  for (int i = 0; i < static_cast<int>(msgs.size()); ++i) render_message(w, ctx, i);
  return segs;
}

std::vector<PromptSegment> render_prompt_segments(const ChatRequest& req) {
  return render_prompt_segments(req.messages, req.options);
}

std::string segments_to_string(const std::vector<PromptSegment>& segs) {
  std::string out;
  for (const auto& s : segs) {
    if (s.is_control) out += control_token_spelling(s.token);
    else out += s.text;
  }
  return out;
}

std::string render_prompt(const ChatRequest& req) { return segments_to_string(render_prompt_segments(req)); }

std::vector<int32_t> segments_to_ids(
    const std::vector<PromptSegment>& segs,
    const std::function<std::vector<int32_t>(std::string_view)>& encode_plain) {
  std::vector<int32_t> ids;
  for (const auto& s : segs) {
    if (s.is_control) {
      ids.push_back(control_token_id(s.token));
    } else {
      auto part = encode_plain(s.text);
      ids.insert(ids.end(), part.begin(), part.end());
    }
  }
  return ids;
}

}  // namespace dsv4::text
