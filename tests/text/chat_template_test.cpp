// Prompt rendering: the golden render cases (prompt bytes and ids), the encoder rules one by one,
// Python-exact JSON, the Anthropic mapping and the `dsv4 render` CLI.
#include "text/chat_template.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "test_util.h"
#include "text/py_json.h"
#include "text/tokenizer.h"

namespace dsv4::text {
namespace {

using test::testdata_path;

bool have_encoding_data() { return std::filesystem::exists(testdata_path("encoding/render_cases.json")); }

#define REQUIRE_ENCODING_DATA()                                                                   \
  do {                                                                                            \
    if (!have_encoding_data())                                                                    \
      GTEST_SKIP() << "MISSING golden data " << testdata_path("encoding") << ": skipped";         \
  } while (0)

Json load_cases(const std::string& name) {
  std::string path = testdata_path("encoding/" + name);
  return parse_py_json(test::read_file(path), path);  // numbers kept exactly as written
}

std::string render_request(const Json& request, const EffortTable& table = EffortTable::v4()) {
  ChatRequest req = chat_request_from_openai(request);
  req.options.effort_table = &table;
  return render_prompt(req);
}

std::string render_json(const std::string& request_json) {
  return render_request(parse_py_json(request_json));
}

// ---------------------------------------------------------------------------------------------
// Python-compatible JSON
// ---------------------------------------------------------------------------------------------

TEST(PyJson, FloatReprMatchesPython) {
  struct Case {
    double v;
    const char* repr;
  } cases[] = {
      {1000.0, "1000.0"}, {1e-7, "1e-07"}, {1.5e300, "1.5e+300"}, {-0.0, "-0.0"}, {0.0, "0.0"},
      {0.1, "0.1"}, {0.5, "0.5"}, {2.5, "2.5"}, {1e16, "1e+16"}, {1e15, "1000000000000000.0"},
      {0.0001, "0.0001"}, {0.00001, "1e-05"}, {123456789.123, "123456789.123"},
      {5e-324, "5e-324"}, {1.7976931348623157e308, "1.7976931348623157e+308"}, {1e22, "1e+22"},
      {-1.25e-10, "-1.25e-10"}, {3.141592653589793, "3.141592653589793"}, {1.0 / 3, "0.3333333333333333"},
      {9007199254740993.0, "9007199254740992.0"}, {12345678901234567.0, "1.2345678901234568e+16"},
      {std::numeric_limits<double>::infinity(), "Infinity"},
      {-std::numeric_limits<double>::infinity(), "-Infinity"},
      {std::numeric_limits<double>::quiet_NaN(), "NaN"},
  };
  for (const auto& c : cases) EXPECT_EQ(py_float_repr(c.v), c.repr) << c.repr;
}

TEST(PyJson, DumpsLikePython) {
  Json v = parse_py_json(
      R"({"a": [1, 2.0, "x\u0001\u007f\u2028é", null, true, false], "big": 123456789012345678901234567890,)"
      R"( "neg": -123456789012345678901234567890, "e": 1e3, "t": 1E-7, "h": 1.5e300, "z": -0,)"
      R"( "nan": NaN, "inf": -Infinity, "u64": 18446744073709551615, "o": {}, "l": [],)"
      R"( "q": "\"\\\/\b\f\n\r\t"})");
  EXPECT_EQ(py_json_dumps(v),
            "{\"a\": [1, 2.0, \"x\\u0001\x7f\u2028é\", null, true, false], "
            "\"big\": 123456789012345678901234567890, \"neg\": -123456789012345678901234567890, "
            "\"e\": 1000.0, \"t\": 1e-07, \"h\": 1.5e+300, \"z\": 0, \"nan\": NaN, \"inf\": -Infinity, "
            "\"u64\": 18446744073709551615, \"o\": {}, \"l\": [], \"q\": \"\\\"\\\\/\\b\\f\\n\\r\\t\"}");
}

TEST(PyJson, RepeatedKeyKeepsFirstPositionAndLastValue) {
  EXPECT_EQ(py_json_dumps(parse_py_json(R"({"a": 1, "b": 2, "a": 3})")), R"({"a": 3, "b": 2})");
}

TEST(PyJson, SurrogateEscapes) {
  EXPECT_EQ(parse_py_json(R"("\ud83d\ude00")").get<std::string>(), "😀");
  EXPECT_EQ(parse_py_json(R"("\ud800x")").get<std::string>(), "\xED\xA0\x80x");  // lone: kept (WTF-8)
}

TEST(PyJson, RejectsWhatPythonRejects) {
  for (const char* bad : {"", "[1,]", "{\"a\":1,}", "01", "[1 2]", "\"a\nb\"", "{'a': 1}", "1.", ".5",
                          "[1] x", "tru", "\"\\x\"", "{\"a\" 1}", "-", "1e", "[", "\"abc"}) {
    EXPECT_FALSE(try_parse_py_json(bad, nullptr)) << bad;
  }
  EXPECT_THROW(parse_py_json("[1,]", "req.json"), Error);
  EXPECT_TRUE(try_parse_py_json(" \t\n[1, -0.5e+2, {\"a\": null}] \r\n", nullptr));
}

TEST(PyJson, DeepNestingIsAnErrorNotACrash) {
  std::string deep(100000, '[');
  EXPECT_FALSE(try_parse_py_json(deep, nullptr));
}

// ---------------------------------------------------------------------------------------------
// Golden render cases
// ---------------------------------------------------------------------------------------------

TEST(RenderCases, PromptsMatchExactly) {
  REQUIRE_ENCODING_DATA();
  Json cases = load_cases("render_cases.json");
  ASSERT_GE(cases.size(), 22u);
  int passed = 0;
  for (const auto& c : cases) {
    std::string id = c["id"].get<std::string>();
    std::string prompt = render_request(c["request"]);
    EXPECT_EQ(prompt, c["prompt"].get<std::string>()) << "case " << id;
    std::string file = test::read_file(testdata_path("encoding/prompts/" + id + ".txt"));
    EXPECT_EQ(prompt, file) << "case " << id << " vs prompts/" << id << ".txt";
    passed += prompt == file;
  }
  EXPECT_EQ(passed, static_cast<int>(cases.size()));
}

TEST(RenderCases, EffortTable0731) {
  REQUIRE_ENCODING_DATA();
  Json cases = load_cases("render_cases_v4_0731_effort.json");
  ASSERT_GE(cases.size(), 3u);
  for (const auto& c : cases) {
    EXPECT_EQ(render_request(c["request"], EffortTable::v4_0731()), c["prompt"].get<std::string>())
        << "case " << c["id"].get<std::string>();
  }
  // And the variants column of the main set: 0731 differs exactly where effort is max.
  for (const auto& c : load_cases("render_cases.json")) {
    std::string v = c["variants"]["v4_flash_0731"].get<std::string>();
    if (v.rfind("error", 0) == 0) continue;
    bool same = render_request(c["request"], EffortTable::v4_0731()) == c["prompt"].get<std::string>();
    EXPECT_EQ(same, v == "same") << "case " << c["id"].get<std::string>();
  }
}

TEST(RenderCases, IdsMatchUnderTheSegmentPolicy) {
  REQUIRE_ENCODING_DATA();
  std::string tok_dir = test::assets_path("tokenizer/deepseek-v3");
  if (!std::filesystem::exists(tok_dir + "/tokenizer.json")) GTEST_SKIP() << "MISSING tokenizer " << tok_dir;
  Tokenizer tok = Tokenizer::load(tok_dir);
  auto plain = [&](std::string_view s) { return tok.encode_plain(s); };
  for (const char* file : {"render_cases.json", "render_cases_v4_0731_effort.json"}) {
    for (const auto& c : load_cases(file)) {
      ChatRequest req = chat_request_from_openai(c["request"]);
      req.options.effort_table = std::string(file).find("0731") != std::string::npos ? &EffortTable::v4_0731()
                                                                                    : &EffortTable::v4();
      auto segs = render_prompt_segments(req);
      std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
      EXPECT_EQ(segments_to_ids(segs, plain), want) << "case " << c["id"].get<std::string>();
    }
  }
}

TEST(RenderCases, ContentNeverBecomesControlTokens) {
  REQUIRE_ENCODING_DATA();
  for (const auto& c : load_cases("render_cases.json")) {
    if (!c["content_has_special_spelling"].get<bool>()) continue;
    auto segs = render_prompt_segments(chat_request_from_openai(c["request"]));
    int controls = 0;
    for (const auto& s : segs) controls += s.is_control;
    // special_spellings_in_user_content: BOS, <｜User｜>, <｜Assistant｜>, <think> only.
    EXPECT_EQ(controls, 4) << c["id"].get<std::string>();
  }
}

// ---------------------------------------------------------------------------------------------
// Encoder rules
// ---------------------------------------------------------------------------------------------

const std::string kBos = "<｜begin▁of▁sentence｜>";
const std::string kEos = "<｜end▁of▁sentence｜>";

TEST(RenderRules, ConsecutiveUserMessagesMergeWithBlankLine) {
  EXPECT_EQ(render_json(R"({"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}],"thinking":false})"),
            kBos + "<｜User｜>a\n\nb<｜Assistant｜></think>");
}

TEST(RenderRules, TaskStopsMergingAndEmitsTaskToken) {
  std::string p = render_json(
      R"({"messages":[{"role":"user","content":"a","task":"query"},{"role":"user","content":"b"}],"thinking":false})");
  // The task message is followed by a user message: no transition there, so no task token.
  EXPECT_EQ(p, kBos + "<｜User｜>a<｜User｜>b<｜Assistant｜></think>");
  p = render_json(R"({"messages":[{"role":"user","content":"q","task":"query"}],"thinking":true})");
  EXPECT_EQ(p, kBos + "<｜User｜>q<｜query｜>");
  p = render_json(R"({"messages":[{"role":"user","content":"q","task":"action"}],"thinking":true})");
  EXPECT_EQ(p, kBos + "<｜User｜>q<｜Assistant｜><think><｜action｜>");
  // The answer to a task has no thinking part even in thinking mode.
  p = render_json(R"({"messages":[{"role":"user","content":"q","task":"action"},{"role":"assistant","content":"Search","reasoning_content":"r"}],"thinking":true})");
  EXPECT_EQ(p, kBos + "<｜User｜>q<｜Assistant｜><think><｜action｜>Search" + kEos);
  EXPECT_THROW(render_json(R"({"messages":[{"role":"user","content":"q","task":"bogus"}]})"), Error);
}

TEST(RenderRules, ToolResultsFollowCallOrderStably) {
  std::string p = render_json(R"({"messages":[
    {"role":"user","content":"go"},
    {"role":"assistant","content":"","tool_calls":[
      {"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},
      {"id":"b","type":"function","function":{"name":"g","arguments":"{}"}},
      {"id":"c","type":"function","function":{"name":"h","arguments":"{}"}}]},
    {"role":"tool","tool_call_id":"c","content":"C"},
    {"role":"tool","tool_call_id":"zzz","content":"Z"},
    {"role":"tool","tool_call_id":"b","content":"B"},
    {"role":"tool","tool_call_id":"a","content":"A"},
    {"role":"user","content":"more"}],"thinking":false})");
  // Unknown ids sort as position 0 (stable: "Z" stays before "A", which also has key 0).
  EXPECT_NE(p.find("<｜User｜><tool_result>Z</tool_result>\n\n<tool_result>A</tool_result>\n\n"
                   "<tool_result>B</tool_result>\n\n<tool_result>C</tool_result>\n\nmore<｜Assistant｜></think>"),
            std::string::npos)
      << p;
}

TEST(RenderRules, ToolContentPartsAndUnsupportedParts) {
  std::string p = render_json(R"({"messages":[{"role":"user","content":"x"},
    {"role":"assistant","content":"","tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]},
    {"role":"tool","tool_call_id":"t","content":[{"type":"text","text":"one"},{"type":"image_url","image_url":{}},{"type":"text","text":"two"}]}],
    "thinking":false})");
  EXPECT_NE(p.find("<tool_result>one\n\n[Unsupported image_url]\n\ntwo</tool_result><｜Assistant｜></think>"),
            std::string::npos)
      << p;
}

TEST(RenderRules, DropThinkingRemovesOldReasoningAndDeveloperTurns) {
  const char* req = R"({"messages":[
    {"role":"developer","content":"dev"},
    {"role":"user","content":"u1"},
    {"role":"assistant","content":"a1","reasoning_content":"r1"},
    {"role":"user","content":"u2"},
    {"role":"assistant","content":"a2","reasoning_content":"r2","wo_eos":true}],"thinking":true})";
  EXPECT_EQ(render_json(req),
            kBos + "<｜User｜>u1<｜Assistant｜></think>a1" + kEos + "<｜User｜>u2<｜Assistant｜><think>r2</think>a2");
  // Chat mode keeps the developer turn and never renders reasoning.
  std::string chat = render_json(std::string(req).replace(std::string(req).find("\"thinking\":true"), 15, "\"thinking\":false"));
  EXPECT_EQ(chat, kBos + "<｜User｜>dev<｜User｜>u1<｜Assistant｜></think>a1" + kEos +
                      "<｜User｜>u2<｜Assistant｜></think>a2");
}

TEST(RenderRules, ToolsAnywhereKeepAllReasoning) {
  std::string p = render_json(R"({"messages":[
    {"role":"user","content":"u1"},
    {"role":"assistant","content":"a1","reasoning_content":"r1"},
    {"role":"user","content":"u2"}],
    "tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"thinking":true})");
  EXPECT_NE(p.find("<｜User｜>u1<｜Assistant｜><think>r1</think>a1" + kEos + "<｜User｜>u2<｜Assistant｜><think>"),
            std::string::npos)
      << p;
}

TEST(RenderRules, ReasoningEffortTables) {
  const char* req = R"({"messages":[{"role":"user","content":"q"}],"thinking":true,"reasoning_effort":"%s"})";
  auto with = [&](const char* effort, const EffortTable& t) {
    char buf[256];
    std::snprintf(buf, sizeof buf, req, effort);
    return render_request(parse_py_json(buf), t);
  };
  EXPECT_EQ(with("high", EffortTable::v4()), kBos + "<｜User｜>q<｜Assistant｜><think>");
  EXPECT_EQ(with("max", EffortTable::v4()).rfind(kBos + "Reasoning Effort: Absolute maximum", 0), 0u);
  EXPECT_EQ(with("low", EffortTable::v4_0731()), kBos + "<｜User｜>q<｜Assistant｜><think>");
  EXPECT_EQ(with("high", EffortTable::v4_0731()).rfind(kBos + "Reasoning Effort: Absolute maximum", 0), 0u);
  EXPECT_EQ(with("max", EffortTable::v4_0731()).rfind(kBos + "Reasoning Effort: Beyond maximum", 0), 0u);
  EXPECT_THROW(with("low", EffortTable::v4()), Error);
  EXPECT_THROW(with("medium", EffortTable::v4_0731()), Error);

  EXPECT_EQ(normalize_reasoning_effort("medium", EffortTable::v4()), std::optional<std::string>("high"));
  EXPECT_EQ(normalize_reasoning_effort("low", EffortTable::v4()), std::nullopt);
  EXPECT_EQ(normalize_reasoning_effort("minimal", EffortTable::v4_0731()), std::optional<std::string>("low"));
  EXPECT_EQ(normalize_reasoning_effort("ultra", EffortTable::v4()), std::optional<std::string>("max"));
  EXPECT_THROW(normalize_reasoning_effort("bogus", EffortTable::v4()), Error);
}

TEST(RenderRules, EffortTableFromModelDir) {
  std::string dir = test::make_temp_dir("effort");
  EXPECT_EQ(EffortTable::for_model_dir(dir).name, "v4");
  EXPECT_EQ(EffortTable::for_model_dir(dir + "/missing").name, "v4");
  std::filesystem::create_directories(dir + "/DeepSeek-V4-Flash-0731");
  EXPECT_EQ(EffortTable::for_model_dir(dir + "/DeepSeek-V4-Flash-0731").name, "v4-0731");
  std::filesystem::create_directories(dir + "/m/encoding");
  std::ofstream(dir + "/m/encoding/encoding_dsv4.py") << "X = 'Reasoning Effort: Beyond maximum'\n";
  EXPECT_EQ(EffortTable::for_model_dir(dir + "/m").name, "v4-0731");
  std::filesystem::remove_all(dir);
}

TEST(RenderRules, ArgumentsFallbacksAndExactNumbers) {
  auto args_of = [](const std::string& arguments_json_value) {
    Json a = parse_py_json(arguments_json_value);
    std::string out;
    for (const auto& p : dsml_parameters_from_arguments(a))
      out += p.name + "|" + (p.is_string ? "s" : "j") + "|" + p.value + ";";
    return out;
  };
  EXPECT_EQ(args_of(R"("{\"n\": 123456789012345678901234567890, \"f\": 1e3, \"s\": \"x\", \"b\": true}")"),
            "n|j|123456789012345678901234567890;f|j|1000.0;s|s|x;b|j|true;");
  EXPECT_EQ(args_of(R"("not json")"), "arguments|s|not json;");
  EXPECT_EQ(args_of(R"("[1,2]")"), "arguments|s|[1,2];");
  EXPECT_EQ(args_of(R"({"a": 1.5e300})"), R"(arguments|j|{"a": 1.5e+300};)");
  EXPECT_EQ(args_of("null"), "arguments|j|null;");
  EXPECT_EQ(args_of(R"("{}")"), "");
}

TEST(RenderRules, ResponseFormatAndSystemAttachments) {
  std::string p = render_json(R"({"messages":[{"role":"system","content":"S"},{"role":"user","content":"q"}],
    "response_format":{"type":"json_object"},"thinking":false})");
  EXPECT_EQ(p, kBos + "S\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n"
                      "{\"type\": \"json_object\"}<｜User｜>q<｜Assistant｜></think>");
  // An empty response_format is attached but renders nothing.
  EXPECT_EQ(render_json(R"({"messages":[{"role":"user","content":"q"}],"response_format":{},"thinking":false})"),
            kBos + "<｜User｜>q<｜Assistant｜></think>");
}

TEST(RenderRules, LatestReminderAndSystemTransitions) {
  EXPECT_EQ(render_json(R"({"messages":[{"role":"system","content":"S"},{"role":"latest_reminder","content":"date"},
    {"role":"user","content":"q"}],"thinking":true})"),
            kBos + "S<｜latest_reminder｜>date<｜User｜>q<｜Assistant｜><think>");
  EXPECT_EQ(render_json(R"({"messages":[{"role":"user","content":"q"},{"role":"latest_reminder","content":"d"}],"thinking":false})"),
            kBos + "<｜User｜>q<｜Assistant｜></think><｜latest_reminder｜>d");
  EXPECT_THROW(render_json(R"({"messages":[{"role":"developer","content":""}]})"), Error);
}

// Mid-conversation system messages (Claude Code and other agents send them): raw text between
// turns as the encoder renders a system turn, "\n\n" after a user/tool turn, and the assistant
// transition when the prompt ends there.
TEST(RenderRules, MidConversationSystemMessages) {
  EXPECT_EQ(render_json(R"({"messages":[{"role":"system","content":"S"},{"role":"user","content":"q"},
    {"role":"assistant","content":"A"},{"role":"system","content":"M"},{"role":"user","content":"r"}],"thinking":false})"),
            kBos + "S<｜User｜>q<｜Assistant｜></think>A" + kEos + "M<｜User｜>r<｜Assistant｜></think>");
  EXPECT_EQ(render_json(R"({"messages":[{"role":"user","content":"q"},{"role":"system","content":"M"}],"thinking":false})"),
            kBos + "<｜User｜>q\n\nM<｜Assistant｜></think>");
  EXPECT_EQ(render_json(R"({"messages":[{"role":"user","content":"q"},{"role":"system","content":"M"},
    {"role":"user","content":"r"}],"thinking":true})"),
            kBos + "<｜User｜>q\n\nM<｜User｜>r<｜Assistant｜><think>");
  // After a tool round, in thinking mode with tools: the generation prompt follows the system text.
  const std::string p = render_json(R"({"messages":[{"role":"user","content":"q"},
    {"role":"assistant","content":"","reasoning_content":"R","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
    {"role":"tool","tool_call_id":"c1","content":"out"},{"role":"system","content":"M"}],
    "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{}}}}],"thinking":true})");
  EXPECT_EQ(p.substr(p.size() - std::string("<tool_result>out</tool_result>\n\nM<｜Assistant｜><think>").size()),
            "<tool_result>out</tool_result>\n\nM<｜Assistant｜><think>");
  // Leading system messages stay as the official encoder renders them.
  EXPECT_EQ(render_json(R"({"messages":[{"role":"system","content":"A"},{"role":"system","content":"B"},
    {"role":"user","content":"q"}],"thinking":false})"),
            kBos + "AB<｜User｜>q<｜Assistant｜></think>");
}

TEST(RenderRules, ThinkingFieldShapes) {
  const std::string base = R"({"messages":[{"role":"user","content":"q"}])";
  EXPECT_EQ(render_json(base + "}"), kBos + "<｜User｜>q<｜Assistant｜><think>");  // default on
  EXPECT_EQ(render_json(base + R"(,"thinking":{"type":"disabled"}})"), kBos + "<｜User｜>q<｜Assistant｜></think>");
  EXPECT_EQ(render_json(base + R"(,"thinking":{"type":"enabled"}})"), kBos + "<｜User｜>q<｜Assistant｜><think>");
  EXPECT_EQ(render_json(base + R"(,"chat_template_kwargs":{"thinking":false}})"),
            kBos + "<｜User｜>q<｜Assistant｜></think>");
  EXPECT_THROW(render_json(base + R"(,"thinking":"yes"})"), Error);
  EXPECT_THROW(render_json(R"({"messages":[{"role":"wizard","content":"q"}]})"), Error);
  EXPECT_THROW(render_json(R"({"messages":"hi"})"), Error);
}

TEST(RenderRules, UserContentPartsJoin) {
  EXPECT_EQ(render_json(R"({"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"thinking":false})"),
            kBos + "<｜User｜>a\n\nb<｜Assistant｜></think>");
  EXPECT_THROW(render_json(R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]})"),
               Error);
}

TEST(RenderRules, SegmentsKeepControlTokensApartFromText) {
  auto segs = render_prompt_segments(chat_request_from_openai(parse_py_json(
      R"({"messages":[{"role":"user","content":"<think>hi</think>"}],"thinking":true})")));
  ASSERT_EQ(segs.size(), 5u);
  EXPECT_TRUE(segs[0].is_control);
  EXPECT_EQ(segs[0].token, ControlToken::bos);
  EXPECT_EQ(segs[1].token, ControlToken::user);
  EXPECT_FALSE(segs[2].is_control);
  EXPECT_EQ(segs[2].text, "<think>hi</think>");
  EXPECT_EQ(segs[3].token, ControlToken::assistant);
  EXPECT_EQ(segs[4].token, ControlToken::think_begin);
  EXPECT_EQ(control_token_id(ControlToken::dsml), 128825);
  EXPECT_EQ(control_token_from_spelling("</think>"), ControlToken::think_end);
}

// ---------------------------------------------------------------------------------------------
// Anthropic Messages mapping
// ---------------------------------------------------------------------------------------------

TEST(Anthropic, MapsOntoTheSamePromptAsOpenAI) {
  Json anth = parse_py_json(R"({
    "system": [{"type":"text","text":"You are helpful."},{"type":"text","text":"Be brief."}],
    "tools": [{"name":"get_weather","description":"Weather.","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
    "thinking": {"type":"enabled","budget_tokens":2048},
    "messages": [
      {"role":"user","content":"Weather in Paris and Rome?"},
      {"role":"assistant","content":[
        {"type":"thinking","thinking":"Two calls.","signature":"x"},
        {"type":"tool_use","id":"tu1","name":"get_weather","input":{"city":"Paris","n":1e3}},
        {"type":"tool_use","id":"tu2","name":"get_weather","input":{"city":"Rome"}}]},
      {"role":"user","content":[
        {"type":"tool_result","tool_use_id":"tu2","content":[{"type":"text","text":"20C"}]},
        {"type":"tool_result","tool_use_id":"tu1","content":"18C"},
        {"type":"text","text":"Thanks"}]}]})");
  Json oai = parse_py_json(R"({
    "messages": [
      {"role":"system","content":"You are helpful.\n\nBe brief."},
      {"role":"user","content":"Weather in Paris and Rome?"},
      {"role":"assistant","content":"","reasoning_content":"Two calls.","tool_calls":[
        {"id":"tu1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\", \"n\": 1000.0}"}},
        {"id":"tu2","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Rome\"}"}}]},
      {"role":"tool","tool_call_id":"tu2","content":"20C"},
      {"role":"tool","tool_call_id":"tu1","content":"18C"},
      {"role":"user","content":"Thanks"}],
    "tools": [{"type":"function","function":{"name":"get_weather","description":"Weather.","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
    "thinking": true})");
  ChatRequest a = chat_request_from_anthropic(anth);
  EXPECT_EQ(a.thinking_budget, std::optional<int64_t>(2048));
  EXPECT_EQ(a.options.thinking_mode, ThinkingMode::thinking);
  std::string pa = render_prompt(a);
  EXPECT_EQ(pa, render_prompt(chat_request_from_openai(oai)));
  EXPECT_NE(pa.find("<tool_result>18C</tool_result>\n\n<tool_result>20C</tool_result>\n\nThanks"), std::string::npos);
  EXPECT_NE(pa.find("string=\"false\">1000.0</"), std::string::npos);
}

TEST(Anthropic, PrefillDisabledThinkingAndEffort) {
  ChatRequest r = chat_request_from_anthropic(parse_py_json(R"({
    "system": "S", "thinking": {"type":"disabled"}, "output_config": {"effort":"max"},
    "messages": [{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                 {"role":"assistant","content":"Sure, "}]})"));
  EXPECT_EQ(r.options.thinking_mode, ThinkingMode::chat);
  EXPECT_EQ(r.options.reasoning_effort, std::optional<std::string>("max"));
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_TRUE(r.messages[2].wo_eos);
  EXPECT_EQ(render_prompt(r), kBos + "S<｜User｜>a\n\nb<｜Assistant｜></think>Sure, ");
}

TEST(Anthropic, RejectsWhatItCannotRender) {
  EXPECT_THROW(chat_request_from_anthropic(parse_py_json(
                   R"({"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]})")),
               Error);
  EXPECT_THROW(chat_request_from_anthropic(parse_py_json(R"({"messages":[{"role":"tool","content":"x"}]})")),
               Error);
  EXPECT_THROW(chat_request_from_anthropic(parse_py_json(
                   R"({"messages":[{"role":"user","content":"q"}],"thinking":{"type":"enabled","budget_tokens":0}})")),
               Error);
  EXPECT_THROW(chat_request_from_anthropic(parse_py_json(
                   R"({"messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search_20250305","name":"w"}]})")),
               Error);
  // Prefill with thinking closes the think block.
  ChatRequest r = chat_request_from_anthropic(parse_py_json(
      R"({"messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"text","text":"A"}]}],
          "thinking":{"type":"enabled","budget_tokens":1024}})"));
  EXPECT_EQ(render_prompt(r), kBos + "<｜User｜>q<｜Assistant｜><think></think>A");
  EXPECT_EQ(r.thinking_budget, std::optional<int64_t>(1024));
}

// Anthropic's default is no thinking: without `thinking` the prompt ends in </think>.
TEST(Anthropic, ThinkingOffUnlessAsked) {
  ChatRequest r = chat_request_from_anthropic(parse_py_json(R"({"messages":[{"role":"user","content":"q"}]})"));
  EXPECT_EQ(r.options.thinking_mode, ThinkingMode::chat);
  EXPECT_EQ(render_prompt(r), kBos + "<｜User｜>q<｜Assistant｜></think>");
  EXPECT_FALSE(r.thinking_budget.has_value());
  ChatRequest a = chat_request_from_anthropic(parse_py_json(R"({"messages":[{"role":"user","content":"q"}],"thinking":{"type":"adaptive"}})"));
  EXPECT_EQ(render_prompt(a), kBos + "<｜User｜>q<｜Assistant｜><think>");
  // A budget with thinking disabled is no budget.
  ChatRequest d = chat_request_from_anthropic(parse_py_json(
      R"({"messages":[{"role":"user","content":"q"}],"thinking":{"type":"disabled","budget_tokens":10}})"));
  EXPECT_FALSE(d.thinking_budget.has_value());
}

// Claude Code's mid-conversation system message: role "system" inside `messages` (string or text
// blocks) renders exactly like the OpenAI dialect's system message at that place.
TEST(Anthropic, MidConversationSystemMessage) {
  Json anth = parse_py_json(R"({"system":"S","thinking":{"type":"enabled"},
    "messages":[{"role":"user","content":"q"},{"role":"assistant","content":"A"},
                {"role":"system","content":[{"type":"text","text":"M1"},{"type":"text","text":"M2"}]},
                {"role":"user","content":[{"type":"text","text":"r"}]},
                {"role":"system","content":"late"}]})");
  Json oai = parse_py_json(R"({"thinking":true,"messages":[{"role":"system","content":"S"},{"role":"user","content":"q"},
    {"role":"assistant","content":"A"},{"role":"system","content":"M1\n\nM2"},{"role":"user","content":"r"},
    {"role":"system","content":"late"}]})");
  const std::string pa = render_prompt(chat_request_from_anthropic(anth));
  EXPECT_EQ(pa, render_prompt(chat_request_from_openai(oai)));
  EXPECT_EQ(pa, kBos + "S<｜User｜>q<｜Assistant｜></think>A" + kEos + "M1\n\nM2<｜User｜>r\n\nlate<｜Assistant｜><think>");
}

// ---------------------------------------------------------------------------------------------
// CLI: dsv4 render
// ---------------------------------------------------------------------------------------------

TEST(RenderCli, PrintsExactPromptBytesAndIds) {
  REQUIRE_ENCODING_DATA();
  if (!std::filesystem::exists(test::dsv4_binary())) GTEST_SKIP() << "no dsv4 binary";
  std::string model = testdata_path("oracle/case-a/ckpt");
  std::string dir = test::make_temp_dir("render");
  bool have_tok = std::filesystem::exists(model + "/tokenizer.json");
  for (const auto& c : load_cases("render_cases.json")) {
    std::string id = c["id"].get<std::string>();
    std::string req = dir + "/" + id + ".json";
    std::ofstream(req, std::ios::binary) << py_json_dumps(c["request"]);  // UTF-8, exact numbers
    std::string out;
    int rc = test::run_command_stdout(test::dsv4_binary() + " render --model " + model + " --request " + req, &out);
    EXPECT_EQ(rc, 0) << id;
    EXPECT_EQ(out, c["prompt"].get<std::string>()) << id;
    if (have_tok) {
      rc = test::run_command_stdout(test::dsv4_binary() + " render --ids --model " + model + " --request " + req, &out);
      EXPECT_EQ(rc, 0) << id;
      Json ids = Json::parse(out, nullptr, false);
      ASSERT_TRUE(ids.is_array()) << id << ": " << out;
      EXPECT_EQ(ids.get<std::vector<int32_t>>(), c["ids"].get<std::vector<int32_t>>()) << id;
    }
  }
  for (const auto& c : load_cases("render_cases_v4_0731_effort.json")) {
    std::string req = dir + "/effort.json";
    std::ofstream(req, std::ios::binary) << py_json_dumps(c["request"]);
    std::string out;
    int rc = test::run_command_stdout(test::dsv4_binary() + " render --effort-table v4-0731 --model " + model +
                                   " --request " + req,
                               &out);
    EXPECT_EQ(rc, 0);
    EXPECT_EQ(out, c["prompt"].get<std::string>()) << c["id"].get<std::string>();
  }
  std::ofstream(dir + "/bad.json") << R"({"messages": [{"role": "user"})";
  std::string out;
  EXPECT_NE(test::run_command(test::dsv4_binary() + " render --model " + model + " --request " + dir + "/bad.json", &out), 0);
  EXPECT_NE(out.find("invalid JSON"), std::string::npos) << out;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dsv4::text
