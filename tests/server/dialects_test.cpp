// The dialects' request preparation and responders without HTTP (the e2e tests drive the same
// code through the SDKs): the Responses API maps onto the chat path (same prompt for the same
// conversation), its streaming event sequence and stored conversations; `n`; thinking budgets;
// error codes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/default_model.h"
#include "server/api.h"
#include "server/dialect_common.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace dsv4::server {
namespace {

using text::Json;

const text::Tokenizer& tok() {
  static text::Tokenizer t = text::Tokenizer::load(engine::default_model_dir());
  return t;
}

ServedModel served(int64_t ctx = 65536) {
  ServedModel m;
  m.name = "deepseek-v4-flash";
  m.ctx = ctx;
  return m;
}

struct Ctx {
  ServedModel model = served();
  DialectContext dc{tok(), model, "resp_0000test000001", nullptr, nullptr};
};

ApiError api_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no ApiError thrown";
  return ApiError(0, "", "");
}

int32_t id_of(text::ControlToken t) { return text::control_token_id(t); }

std::vector<int32_t> chat_prompt(const std::string& body);

// ---------------------------------------------------------------------------------------------
// Chat / Anthropic parameters
// ---------------------------------------------------------------------------------------------

TEST(ChatParams, NAbove1IsA400NamingN) {
  Ctx c;
  const ApiError e = api_error_of([&] {
    openai::prepare_chat(R"({"messages":[{"role":"user","content":"q"}],"n":2})", c.dc);
  });
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "n");
  EXPECT_NE(std::string(e.what()).find("n must be 1"), std::string::npos);
  EXPECT_EQ(api_error_of([&] { openai::prepare_chat(R"({"messages":[{"role":"user","content":"q"}],"n":"2"})", c.dc); }).param, "n");
  EXPECT_NO_THROW(openai::prepare_chat(R"({"messages":[{"role":"user","content":"q"}],"n":1})", c.dc));
}

// serve --max-tokens caps every request (agents that name no limit included).
TEST(ChatParams, ServerMaxTokensCaps) {
  Ctx c;
  c.model.max_output = 10;
  EXPECT_EQ(openai::prepare_chat(R"({"messages":[{"role":"user","content":"q"}]})", c.dc).gen.max_tokens, 10);
  EXPECT_EQ(openai::prepare_chat(R"({"messages":[{"role":"user","content":"q"}],"max_tokens":50})", c.dc).gen.max_tokens, 10);
  EXPECT_EQ(openai::prepare_chat(R"({"messages":[{"role":"user","content":"q"}],"max_tokens":5})", c.dc).gen.max_tokens, 5);
  EXPECT_EQ(responses::prepare(R"({"input":"q"})", c.dc).gen.max_tokens, 10);
  c.model.max_output = 0;
  EXPECT_EQ(openai::prepare_chat(R"({"messages":[{"role":"user","content":"q"}]})", c.dc).gen.max_tokens,
            65536 - int(openai::prepare_chat(R"({"messages":[{"role":"user","content":"q"}]})", c.dc).gen.prompt.size()));
}

// OpenAI's developer role is a system prompt (not V4's internal developer turn, which thinking
// mode would drop before the last user message).
TEST(ChatParams, DeveloperRoleIsASystemMessage) {
  EXPECT_EQ(chat_prompt(R"({"messages":[{"role":"developer","content":"Rules"},{"role":"user","content":"q"}]})"),
            chat_prompt(R"({"messages":[{"role":"system","content":"Rules"},{"role":"user","content":"q"}]})"));
}

TEST(ChatParams, EndTurnAfterReachesTheEngine) {
  Ctx c;
  c.model.end_turn_after = 20;
  PreparedRequest t = openai::prepare_chat(R"({"messages":[{"role":"user","content":"q"}]})", c.dc);
  EXPECT_EQ(t.gen.end_turn_after, 20);
  EXPECT_EQ(t.gen.reasoning_budget, 10);
  PreparedRequest n = openai::prepare_chat(R"({"messages":[{"role":"user","content":"q"}],"thinking":false})", c.dc);
  EXPECT_EQ(n.gen.end_turn_after, 20);
  EXPECT_EQ(n.gen.reasoning_budget, -1);
}

TEST(AnthropicParams, ThinkingOffByDefaultAndBudgetReachesTheEngine) {
  Ctx c;
  PreparedRequest off = anthropic::prepare_messages(R"({"model":"claude-x","max_tokens":50,"messages":[{"role":"user","content":"q"}]})", c.dc);
  EXPECT_EQ(off.gen.prompt.back(), id_of(text::ControlToken::think_end));
  EXPECT_EQ(off.gen.output.mode, engine::OutputMode::chat);
  EXPECT_EQ(off.gen.reasoning_budget, -1);
  PreparedRequest on = anthropic::prepare_messages(
      R"({"model":"claude-x","max_tokens":50,"thinking":{"type":"enabled","budget_tokens":7},"messages":[{"role":"user","content":"q"}]})", c.dc);
  EXPECT_EQ(on.gen.prompt.back(), id_of(text::ControlToken::think_begin));
  EXPECT_EQ(on.gen.output.mode, engine::OutputMode::chat_thinking);
  EXPECT_EQ(on.gen.reasoning_budget, 7);
  // The OpenAI route takes the same thinking object.
  PreparedRequest oa = openai::prepare_chat(
      R"({"thinking":{"type":"enabled","budget_tokens":9},"messages":[{"role":"user","content":"q"}]})", c.dc);
  EXPECT_EQ(oa.gen.reasoning_budget, 9);
}

TEST(Errors, RouteAndModel404sHaveDistinctCodes) {
  const Json route = Json::parse(openai::error_body(ApiError(404, "not_found_error", "no route", "", "unknown_route")));
  EXPECT_EQ(route["error"]["code"], "unknown_route");
  Ctx c;
  const ApiError e = api_error_of([&] { openai::prepare_chat(R"({"model":"gpt-9","messages":[{"role":"user","content":"q"}]})", c.dc); });
  EXPECT_EQ(Json::parse(openai::error_body(e))["error"]["code"], "model_not_found");
}

// ---------------------------------------------------------------------------------------------
// Responses API: request mapping
// ---------------------------------------------------------------------------------------------

std::vector<int32_t> chat_prompt(const std::string& body) {
  Ctx c;
  return openai::prepare_chat(body, c.dc).gen.prompt;
}
PreparedRequest resp(const std::string& body) {
  Ctx c;
  return responses::prepare(body, c.dc);
}

TEST(Responses, StringInputAndInstructionsRenderLikeChat) {
  EXPECT_EQ(resp(R"({"model":"deepseek-v4-flash","input":"hello","instructions":"Be brief."})").gen.prompt,
            chat_prompt(R"({"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hello"}]})"));
}

TEST(Responses, ItemsToolsAndToolRoundTripRenderLikeChat) {
  const std::string tools_r = R"([{"type":"function","name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},"strict":true}])";
  const std::string tools_c = R"([{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},"strict":true}}])";
  PreparedRequest r = resp(R"({"input":[
      {"role":"developer","content":"Sys"},
      {"type":"message","role":"user","content":[{"type":"input_text","text":"Weather"},{"type":"input_text","text":"in Paris?"}]},
      {"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"Use the tool."}]},
      {"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
      {"type":"function_call_output","call_id":"call_1","output":"22C"}],
    "tools":)" + tools_r + R"(,"tool_choice":"auto","max_output_tokens":33})");
  EXPECT_EQ(r.gen.prompt, chat_prompt(R"({"messages":[
      {"role":"system","content":"Sys"},
      {"role":"user","content":"Weather\n\nin Paris?"},
      {"role":"assistant","content":"","reasoning_content":"Use the tool.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"22C"}],
    "tools":)" + tools_c + "}"));
  EXPECT_EQ(r.gen.max_tokens, 33);
  EXPECT_EQ(r.gen.output.mode, engine::OutputMode::chat_thinking);
}

// Codex sends function tools grouped in a `namespace` and the hosted web_search: the first are
// flattened (their calls name the namespace), the hosted tool is left out of the prompt.
TEST(Responses, NamespacesFlattenHostedToolsLeftOut) {
  EXPECT_EQ(resp(R"({"input":"q","tools":[{"type":"web_search","external_web_access":false},
      {"type":"namespace","name":"agents","description":"d","tools":[{"type":"function","name":"spawn","parameters":{"type":"object","properties":{}}}]}]})").gen.prompt,
            chat_prompt(R"({"messages":[{"role":"user","content":"q"}],"tools":[{"type":"function","function":{"name":"spawn","parameters":{"type":"object","properties":{}}}}]})"));
  EXPECT_EQ(resp(R"({"input":"q","tools":[{"type":"web_search"}]})").gen.prompt, chat_prompt(R"({"messages":[{"role":"user","content":"q"}]})"));
  Ctx c;
  PreparedRequest pr = responses::prepare(R"({"input":"q","tools":[{"type":"namespace","name":"agents","tools":[{"type":"function","name":"spawn"}]}]})", c.dc);
  Outcome o;
  o.finish = engine::FinishReason::tool_calls;
  o.message.tool_calls.push_back({"spawn", "{}"});
  const Json body = Json::parse(pr.responder->response(o));
  EXPECT_EQ(body["output"][0]["name"], "spawn");
  EXPECT_EQ(body["output"][0]["namespace"], "agents");
}

TEST(Responses, TextFormatReachesResponseFormat) {
  const std::string schema = R"({"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]})";
  EXPECT_EQ(resp(R"({"input":"q","text":{"format":{"type":"json_schema","name":"x","schema":)" + schema + R"(,"strict":true}}})").gen.prompt,
            chat_prompt(R"({"messages":[{"role":"user","content":"q"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":)" +
                        schema + R"(,"strict":true}}})"));
  EXPECT_EQ(resp(R"({"input":"q","text":{"format":{"type":"json_object"}}})").gen.prompt,
            chat_prompt(R"({"messages":[{"role":"user","content":"q"}],"response_format":{"type":"json_object"}})"));
  EXPECT_EQ(resp(R"({"input":"q","text":{"format":{"type":"text"},"verbosity":"low"}})").gen.prompt,
            chat_prompt(R"({"messages":[{"role":"user","content":"q"}]})"));
  EXPECT_EQ(api_error_of([] { resp(R"({"input":"q","text":{"format":{"type":"json_schema","name":"x"}}})"); }).param, "text.format.schema");
}

TEST(Responses, ReasoningEffortAndSampling) {
  PreparedRequest none = resp(R"({"input":"q","reasoning":{"effort":"none"}})");
  EXPECT_EQ(none.gen.prompt.back(), id_of(text::ControlToken::think_end));
  PreparedRequest high = resp(R"({"input":"q","reasoning":{"effort":"high","summary":"auto"},"temperature":0.5,"top_p":0.9})");
  EXPECT_EQ(high.gen.prompt.back(), id_of(text::ControlToken::think_begin));
  EXPECT_FLOAT_EQ(high.gen.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(high.gen.sampling.top_p, 0.9f);
  EXPECT_EQ(resp(R"({"input":"q","reasoning":{"effort":"max"}})").gen.prompt,
            chat_prompt(R"({"messages":[{"role":"user","content":"q"}],"reasoning_effort":"max"})"));
}

TEST(Responses, BadInputsAre400sNamingTheField) {
  auto param = [](const std::string& body) { return api_error_of([&] { resp(body); }).param; };
  EXPECT_EQ(param(R"({"input":[{"role":"user","content":[{"type":"input_image","image_url":"x"}]}]})"), "input[0].content[0].type");
  EXPECT_EQ(param(R"({"input":"q","tools":[{"type":"custom","name":"apply_patch"}]})"), "tools[0].type");
  EXPECT_EQ(param(R"({"input":[{"type":"computer_call_output","id":"x"}]})"), "input[0].type");
  EXPECT_EQ(param(R"({"input":[{"type":"item_reference","id":"fc_nothere_0"}]})"), "input[0].id");
  EXPECT_EQ(param(R"({"input":"q","max_output_tokens":0})"), "max_output_tokens");
  EXPECT_EQ(param(R"({"model":"x"})"), "input");
  EXPECT_EQ(param(R"({"input":"q","background":true})"), "background");
  const ApiError prev = api_error_of([] { resp(R"({"input":"q","previous_response_id":"resp_nope"})"); });
  EXPECT_EQ(prev.status, 400);
  EXPECT_EQ(prev.code, "previous_response_not_found");
  const ApiError ctx = api_error_of([] {
    ServedModel m = served(8);
    DialectContext dc{tok(), m, "resp_x", nullptr, nullptr};
    responses::prepare(R"({"input":"a long enough prompt to pass eight tokens for sure"})", dc);
  });
  EXPECT_EQ(ctx.param, "input");
}

// ---------------------------------------------------------------------------------------------
// Responses API: streaming events, final object, stored conversations
// ---------------------------------------------------------------------------------------------

struct Frame {
  std::string event;
  Json data;
};
std::vector<Frame> frames(const std::string& sse) {
  std::vector<Frame> out;
  size_t pos = 0;
  while (pos < sse.size()) {
    size_t end = sse.find("\n\n", pos);
    if (end == std::string::npos) break;
    const std::string block = sse.substr(pos, end - pos);
    pos = end + 2;
    Frame f;
    const size_t nl = block.find('\n');
    EXPECT_EQ(block.rfind("event: ", 0), 0u) << block;
    f.event = block.substr(7, nl - 7);
    f.data = Json::parse(block.substr(nl + 1 + 6));
    out.push_back(std::move(f));
  }
  return out;
}

text::ParseEvent ev(text::ParseEventKind k, std::string t = "", int idx = -1, std::string name = "") {
  text::ParseEvent e;
  e.kind = k;
  e.text = std::move(t);
  e.tool_index = idx;
  e.name = std::move(name);
  return e;
}

TEST(Responses, StreamEventSequence) {
  Ctx c;
  c.dc.request_id = "resp_stream0000001";
  PreparedRequest pr = responses::prepare(R"({"input":"q","stream":true,"tools":[{"type":"function","name":"f","parameters":{}}]})", c.dc);
  ASSERT_TRUE(pr.stream);
  Usage u;
  u.prompt = 10;
  u.cached = 4;
  std::string sse = pr.responder->stream_begin(u);
  using K = text::ParseEventKind;
  std::vector<text::ParseEvent> evs = {ev(K::reasoning_delta, "thin"), ev(K::reasoning_delta, "k"), ev(K::content_delta, "Hi"),
                                       ev(K::tool_call_start, "", 0, "f"), ev(K::tool_call_arguments, "{\"a\": ", 0),
                                       ev(K::tool_call_arguments, "1}", 0), ev(K::tool_call_end, "", 0)};
  sse += pr.responder->stream_events(evs, {});
  Outcome o;
  o.finish = engine::FinishReason::tool_calls;
  o.message.reasoning_content = "think";
  o.message.content = "Hi";
  o.message.tool_calls.push_back({"f", "{\"a\": 1}"});
  o.usage = {10, 4, 9, 5};
  sse += pr.responder->stream_end(o);
  const auto fs = frames(sse);
  std::vector<std::string> types;
  for (size_t i = 0; i < fs.size(); ++i) {
    EXPECT_EQ(fs[i].data["type"], fs[i].event);
    EXPECT_EQ(fs[i].data["sequence_number"], int(i));
    types.push_back(fs[i].event);
  }
  const std::vector<std::string> want = {
      "response.created", "response.in_progress",
      "response.output_item.added", "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
      "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
      "response.output_item.done",
      "response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.done",
      "response.content_part.done", "response.output_item.done",
      "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
      "response.function_call_arguments.done", "response.output_item.done", "response.completed"};
  EXPECT_EQ(types, want);
  EXPECT_EQ(fs[0].data["response"]["status"], "in_progress");
  EXPECT_EQ(fs[6].data["text"], "think");
  EXPECT_EQ(fs[12].data["text"], "Hi");
  EXPECT_EQ(fs[12].data["output_index"], 1);
  EXPECT_EQ(fs[18].data["arguments"], "{\"a\": 1}");
  EXPECT_EQ(fs[18].data["name"], "f");
  const Json& fin = fs.back().data["response"];
  EXPECT_EQ(fin["status"], "completed");
  ASSERT_EQ(fin["output"].size(), 3u);
  EXPECT_EQ(fin["output"][0]["type"], "reasoning");
  EXPECT_EQ(fin["output"][0]["summary"][0]["text"], "think");
  EXPECT_EQ(fin["output"][1]["content"][0]["text"], "Hi");
  EXPECT_EQ(fin["output"][2]["type"], "function_call");
  EXPECT_EQ(fin["output"][2]["call_id"], tool_call_id(c.dc.request_id, 0, false));
  EXPECT_EQ(fin["output"][2]["arguments"], "{\"a\": 1}");
  EXPECT_EQ(fin["usage"]["input_tokens"], 10);
  EXPECT_EQ(fin["usage"]["input_tokens_details"]["cached_tokens"], 4);
  EXPECT_EQ(fin["usage"]["output_tokens"], 9);
  EXPECT_EQ(fin["usage"]["output_tokens_details"]["reasoning_tokens"], 5);
  EXPECT_EQ(fin["usage"]["total_tokens"], 19);
  EXPECT_EQ(fin["tools"][0]["name"], "f");
}

// The reasoning streams as the item's summary text, which Codex and the AI SDK display.
TEST(Responses, ReasoningAsSummary) {
  Ctx c;
  PreparedRequest pr = responses::prepare(R"({"input":"q","stream":true,"reasoning":{"effort":"high","summary":"auto"}})", c.dc);
  std::string sse = pr.responder->stream_begin({});
  using K = text::ParseEventKind;
  sse += pr.responder->stream_events(std::vector<text::ParseEvent>{ev(K::reasoning_delta, "a"), ev(K::reasoning_delta, "b"),
                                                                   ev(K::content_delta, "x")}, {});
  Outcome o;
  o.message.reasoning_content = "ab";
  o.message.content = "x";
  sse += pr.responder->stream_end(o);
  std::vector<std::string> types;
  for (const auto& f : frames(sse)) types.push_back(f.event);
  const std::vector<std::string> head = {"response.created", "response.in_progress", "response.output_item.added",
                                         "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
                                         "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
                                         "response.reasoning_summary_part.done", "response.output_item.done"};
  ASSERT_GE(types.size(), head.size());
  EXPECT_EQ(std::vector<std::string>(types.begin(), types.begin() + long(head.size())), head);
  const Json fin = frames(sse).back().data["response"];
  EXPECT_EQ(fin["output"][0]["summary"][0]["text"], "ab");
  EXPECT_EQ(fin["output"][0]["summary"][0]["type"], "summary_text");
  PreparedRequest pn = responses::prepare(R"({"input":"q","reasoning":{"summary":"detailed"}})", c.dc);
  EXPECT_EQ(Json::parse(pn.responder->response(o))["output"][0]["summary"][0]["text"], "ab");
}

TEST(Responses, LengthIsIncompleteAndErrorsFail) {
  Ctx c;
  PreparedRequest pr = responses::prepare(R"({"input":"q","stream":true,"max_output_tokens":3})", c.dc);
  std::string sse = pr.responder->stream_begin({});
  sse += pr.responder->stream_events(std::vector<text::ParseEvent>{ev(text::ParseEventKind::content_delta, "abc")}, {});
  Outcome o;
  o.finish = engine::FinishReason::max_tokens;
  o.message.content = "abc";
  sse += pr.responder->stream_end(o);
  auto fs = frames(sse);
  EXPECT_EQ(fs.back().event, "response.incomplete");
  EXPECT_EQ(fs.back().data["response"]["incomplete_details"]["reason"], "max_output_tokens");
  EXPECT_EQ(fs.back().data["response"]["output"][0]["status"], "incomplete");
  PreparedRequest pe = responses::prepare(R"({"input":"q","stream":true})", c.dc);
  auto fe = frames(pe.responder->stream_begin({}) + pe.responder->stream_error("boom"));
  EXPECT_EQ(fe.back().event, "response.failed");
  EXPECT_EQ(fe.back().data["response"]["error"]["message"], "boom");
  PreparedRequest p0 = responses::prepare(R"({"input":"q","stream":true})", c.dc);  // error before any token
  auto f0 = frames(p0.responder->stream_error("early"));
  ASSERT_EQ(f0.size(), 2u);
  EXPECT_EQ(f0[0].event, "response.created");
  EXPECT_EQ(f0[1].event, "response.failed");
  EXPECT_EQ(f0[1].data["sequence_number"], 1);
  // Non-stream: an incomplete answer still has its status and usage.
  PreparedRequest pn = responses::prepare(R"({"input":"q","max_output_tokens":3})", c.dc);
  const Json body = Json::parse(pn.responder->response(o));
  EXPECT_EQ(body["status"], "incomplete");
  EXPECT_EQ(body["output"][0]["content"][0]["text"], "abc");
}

TEST(Responses, PreviousResponseIdContinuesTheStoredConversation) {
  Ctx c;
  c.dc.request_id = "resp_first00000042";
  PreparedRequest first = responses::prepare(R"({"input":"What is 2+2?","instructions":"Old instructions"})", c.dc);
  Outcome o;
  o.message.content = "4";
  o.message.reasoning_content = "adding";
  const Json body = Json::parse(first.responder->response(o));
  EXPECT_EQ(body["id"], "resp_first00000042");
  EXPECT_EQ(Json::parse(responses::get("resp_first00000042"))["output"][0]["type"], "reasoning");

  c.dc.request_id = "resp_second0000043";
  PreparedRequest second = responses::prepare(
      R"({"input":[{"role":"user","content":"And 3+3?"}],"previous_response_id":"resp_first00000042","instructions":"New"})", c.dc);
  // Instructions are not carried over; the earlier turn and its answer are.
  EXPECT_EQ(second.gen.prompt, chat_prompt(R"({"messages":[{"role":"system","content":"New"},{"role":"user","content":"What is 2+2?"},
      {"role":"assistant","content":"4","reasoning_content":"adding"},{"role":"user","content":"And 3+3?"}]})"));
  // item_reference: an output item of a stored response stands for the item itself.
  PreparedRequest ref = responses::prepare(R"({"input":[{"role":"user","content":"What is 2+2?"},
      {"type":"item_reference","id":"rs_first00000042_0"},{"type":"item_reference","id":"msg_first00000042_1"},
      {"role":"user","content":"And 3+3?"}]})", c.dc);
  EXPECT_EQ(ref.gen.prompt, chat_prompt(R"({"messages":[{"role":"user","content":"What is 2+2?"},
      {"role":"assistant","content":"4","reasoning_content":"adding"},{"role":"user","content":"And 3+3?"}]})"));
  // store: false keeps nothing.
  c.dc.request_id = "resp_nostore000044";
  PreparedRequest ns = responses::prepare(R"({"input":"x","store":false})", c.dc);
  ns.responder->response(o);
  EXPECT_EQ(api_error_of([] { responses::get("resp_nostore000044"); }).status, 404);
}

}  // namespace
}  // namespace dsv4::server
