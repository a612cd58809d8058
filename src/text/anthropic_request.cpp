// dsv4 text: Anthropic Messages request body -> the encoder's message list (API-NOTES §3.3).
//
// Mapping (DeepSeek's own Anthropic endpoint behaves the same way where it is documented):
//   system (string | [{type:text}])     -> one system message (text blocks joined by "\n\n")
//   user text blocks                    -> user message (consecutive blocks joined by "\n\n")
//   user tool_result blocks             -> tool messages (merged into the user turn later, in
//                                          call order, exactly like OpenAI tool messages)
//   assistant thinking / text / tool_use -> reasoning_content / content / tool_calls
//   final assistant message             -> prefill: rendered without EOS (wo_eos)
//   tools [{name, description, input_schema}] -> OpenAI function tools on the system message
//   messages[].role "system"            -> a mid-conversation system message (chat_template.cpp)
//   thinking {type, budget_tokens}      -> thinking mode; absent: chat mode (thinking off, as
//                                          Anthropic's API); budget_tokens caps the reasoning
//   output_config.effort                -> reasoning_effort (raw; see normalize_reasoning_effort)
#include "core/error.h"
#include "text/chat_template.h"

namespace dsv4::text {
namespace {

std::string str_member(const Json& obj, const char* key, const std::string& where) {
  const Json* v = json_member(obj, key);
  if (!v) return "";
  if (!v->is_string()) throw Error(where + "." + key + ": expected a string, got " + v->type_name());
  return v->get<std::string>();
}

std::string block_type(const Json& block, const std::string& where) {
  if (!block.is_object()) throw Error(where + ": expected a content block object");
  std::string t = str_member(block, "type", where);
  if (t.empty()) throw Error(where + ".type: missing");
  return t;
}

// tool_result content: string, or blocks (text kept, others "[Unsupported <type>]" as the
// encoder does for list tool content).
std::string tool_result_text(const Json& block, const std::string& where) {
  const Json* c = json_member(block, "content");
  if (!c) return "";
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) throw Error(where + ".content: expected a string or a list of blocks");
  std::string out;
  for (size_t i = 0; i < c->size(); ++i) {
    const Json& b = (*c)[i];
    std::string bw = where + ".content[" + std::to_string(i) + "]";
    std::string t = block_type(b, bw);
    if (i) out += "\n\n";
    out += t == "text" ? str_member(b, "text", bw) : "[Unsupported " + t + "]";
  }
  return out;
}

void append_user(std::vector<Message>& out, const Json& msg, const std::string& where) {
  const Json* c = json_member(msg, "content");
  if (!c) throw Error(where + ".content: missing");
  if (c->is_string()) {
    Message m;
    m.role = Role::user;
    m.content = c->get<std::string>();
    out.push_back(std::move(m));
    return;
  }
  if (!c->is_array()) throw Error(where + ".content: expected a string or a list of blocks");
  std::optional<Message> text;
  auto flush = [&] {
    if (text) out.push_back(std::move(*text));
    text.reset();
  };
  for (size_t i = 0; i < c->size(); ++i) {
    const Json& b = (*c)[i];
    std::string bw = where + ".content[" + std::to_string(i) + "]";
    std::string t = block_type(b, bw);
    if (t == "text") {
      if (!text) {
        text.emplace();
        text->role = Role::user;
        text->content = str_member(b, "text", bw);
      } else {
        text->content += "\n\n" + str_member(b, "text", bw);
      }
    } else if (t == "tool_result") {
      flush();
      Message m;
      m.role = Role::tool;
      m.tool_call_id = str_member(b, "tool_use_id", bw);
      m.content = tool_result_text(b, bw);
      out.push_back(std::move(m));
    } else {
      throw Error(bw + ": unsupported content block type '" + t + "'");
    }
  }
  flush();
}

Message assistant_message(const Json& msg, const std::string& where) {
  Message m;
  m.role = Role::assistant;
  const Json* c = json_member(msg, "content");
  if (!c) return m;
  if (c->is_string()) {
    m.content = c->get<std::string>();
    return m;
  }
  if (!c->is_array()) throw Error(where + ".content: expected a string or a list of blocks");
  for (size_t i = 0; i < c->size(); ++i) {
    const Json& b = (*c)[i];
    std::string bw = where + ".content[" + std::to_string(i) + "]";
    std::string t = block_type(b, bw);
    if (t == "text") {
      m.content += str_member(b, "text", bw);
    } else if (t == "thinking") {
      m.reasoning_content += str_member(b, "thinking", bw);
    } else if (t == "redacted_thinking") {
      // Opaque to us: nothing to render.
    } else if (t == "tool_use") {
      ToolCall call;
      call.id = str_member(b, "id", bw);
      call.name = str_member(b, "name", bw);
      if (call.name.empty()) throw Error(bw + ".name: missing");
      const Json* input = json_member(b, "input");
      // Serialised the Python way so that the encoder's json.loads gives the same dict back.
      call.arguments = Json(input ? py_json_dumps(*input) : std::string("{}"));
      m.tool_calls.push_back(std::move(call));
    } else {
      throw Error(bw + ": unsupported content block type '" + t + "'");
    }
  }
  return m;
}

Json tools_to_openai(const Json& tools) {
  if (!tools.is_array()) throw Error("request.tools: expected a list");
  Json out = Json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& t = tools[i];
    std::string tw = "request.tools[" + std::to_string(i) + "]";
    if (!t.is_object()) throw Error(tw + ": expected an object");
    std::string type = str_member(t, "type", tw);
    if (!type.empty() && type != "custom")
      throw Error(tw + ".type: server tool '" + type + "' is not supported");
    Json fn = Json::object();
    fn["name"] = str_member(t, "name", tw);
    if (const Json* d = json_member(t, "description")) fn["description"] = *d;
    const Json* schema = json_member(t, "input_schema");
    fn["parameters"] = schema ? *schema : Json::object();
    Json tool = Json::object();
    tool["type"] = "function";
    tool["function"] = std::move(fn);
    out.push_back(std::move(tool));
  }
  return out;
}

// A system prompt: a string or text blocks (joined by "\n\n").
Message system_message_from_anthropic(const Json& sys, const std::string& where) {
  Message m;
  m.role = Role::system;
  if (sys.is_string()) {
    m.content = sys.get<std::string>();
  } else if (sys.is_array()) {
    for (size_t i = 0; i < sys.size(); ++i) {
      std::string bw = where + "[" + std::to_string(i) + "]";
      if (block_type(sys[i], bw) != "text") throw Error(bw + ": only text blocks are supported");
      if (i) m.content += "\n\n";
      m.content += str_member(sys[i], "text", bw);
    }
  } else {
    throw Error(where + ": expected a string or a list of text blocks");
  }
  return m;
}

}  // namespace

std::vector<Message> messages_from_anthropic(const Json& body) {
  if (!body.is_object()) throw Error("request: expected a JSON object");
  std::vector<Message> out;
  if (const Json* sys = json_member(body, "system")) out.push_back(system_message_from_anthropic(*sys, "request.system"));
  const Json* msgs = json_member(body, "messages");
  if (!msgs || !msgs->is_array()) throw Error("request.messages: expected a list");
  for (size_t i = 0; i < msgs->size(); ++i) {
    const Json& msg = (*msgs)[i];
    std::string where = "request.messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) throw Error(where + ": expected an object");
    std::string role = str_member(msg, "role", where);
    if (role == "user") {
      append_user(out, msg, where);
    } else if (role == "assistant") {
      out.push_back(assistant_message(msg, where));
      if (i + 1 == msgs->size()) out.back().wo_eos = true;  // prefill: the model continues it
    } else if (role == "system") {
      // A mid-conversation system message (rendered between turns: chat_template.h).
      const Json* c = json_member(msg, "content");
      if (!c) throw Error(where + ".content: missing");
      out.push_back(system_message_from_anthropic(*c, where + ".content"));
    } else {
      throw Error(where + ".role: expected \"user\", \"assistant\" or \"system\", got \"" + role + "\"");
    }
  }
  return out;
}

ChatRequest chat_request_from_anthropic(const Json& body) {
  ChatRequest req;
  req.messages = messages_from_anthropic(body);
  if (const Json* tools = json_member(body, "tools"); tools && !tools->empty()) {
    Json oa = tools_to_openai(*tools);
    if (req.messages.empty() || req.messages[0].role != Role::system) {
      Message sys;
      sys.role = Role::system;
      req.messages.insert(req.messages.begin(), std::move(sys));
    }
    req.messages[0].tools = std::move(oa);
  }
  req.options.thinking_mode = ThinkingMode::chat;  // Anthropic's default: no thinking unless asked
  if (const Json* th = json_member(body, "thinking"); th && !th->is_null()) {
    if (!th->is_object()) throw Error("request.thinking: expected an object");
    std::string type = str_member(*th, "type", "request.thinking");
    if (type == "disabled") req.options.thinking_mode = ThinkingMode::chat;
    else if (type == "enabled" || type == "adaptive" || type.empty()) req.options.thinking_mode = ThinkingMode::thinking;
    else throw Error("request.thinking.type: expected \"enabled\" or \"disabled\", got \"" + type + "\"");
    if (const Json* b = json_member(*th, "budget_tokens")) {
      if (!b->is_number_integer() || b->get<int64_t>() < 1)
        throw Error("request.thinking.budget_tokens: expected an integer >= 1");
      if (req.options.thinking_mode == ThinkingMode::thinking) req.thinking_budget = b->get<int64_t>();
    }
  }
  if (const Json* oc = json_member(body, "output_config")) {
    if (const Json* e = json_member(*oc, "effort")) {
      if (!e->is_string()) throw Error("request.output_config.effort: expected a string");
      req.options.reasoning_effort = e->get<std::string>();
    }
  }
  return req;
}

}  // namespace dsv4::text
