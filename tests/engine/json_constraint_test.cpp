// Grammar-constrained decoding: the JSON Schema compiler refuses what it cannot enforce (naming the
// keyword); every byte string the matcher accepts and completes parses and validates against its
// schema (random walks over 24 schemas, checked by an independent validator written here); the
// token mask over the real vocabulary equals a brute-force check of every token; JsonConstraint
// driven by random logits always yields a valid value within its token budget.
#include "engine/constraint.h"

#include <gtest/gtest.h>

#include <random>
#include <regex>
#include <string>
#include <vector>

#include "core/error.h"
#include "engine/default_model.h"
#include "engine/json_matcher.h"
#include "engine/token_mask.h"
#include "text/json_schema.h"
#include "text/tokenizer.h"

namespace dsv4::engine {
namespace {

using text::Json;

// ---------------------------------------------------------------------------------------------
// An independent validator for the subset (the e2e tests use ajv on the server's output).

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

bool valid(const Json& v, const Json& s, const Json& root, std::string* why);

const Json& deref(const Json& s, const Json& root) {
  if (!s.is_object() || !s.contains("$ref")) return s;
  const std::string r = s["$ref"];
  if (r == "#") return root;
  const std::string key = r.rfind("#/$defs/", 0) == 0 ? "$defs" : "definitions";
  return deref(root[key][r.substr(r.find_last_of('/') + 1)], root);
}

bool type_ok(const Json& v, const std::string& t) {
  if (t == "null") return v.is_null();
  if (t == "boolean") return v.is_boolean();
  if (t == "integer") return v.is_number_integer() || (v.is_number_float() && v.get<double>() == std::floor(v.get<double>()));
  if (t == "number") return v.is_number();
  if (t == "string") return v.is_string();
  if (t == "array") return v.is_array();
  if (t == "object") return v.is_object();
  return false;
}

bool format_ok(const std::string& s, const std::string& f) {
  std::smatch m;
  if (f == "date" || f == "date-time") {
    if (!std::regex_search(s, m, std::regex("^(\\d{4})-(\\d{2})-(\\d{2})"))) return false;
    const int mo = std::stoi(m[2]), d = std::stoi(m[3]);
    if (mo < 1 || mo > 12 || d < 1 || d > 28) return false;
    if (f == "date") return s.size() == 10;
    return std::regex_match(s.substr(10), std::regex("T([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(Z|[+-]\\d\\d:\\d\\d)"));
  }
  if (f == "time") return std::regex_match(s, std::regex("([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(Z|[+-]\\d\\d:\\d\\d)"));
  if (f == "uuid") return std::regex_match(s, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"));
  if (f == "email") return std::regex_match(s, std::regex("[a-z0-9._-]+@[a-z0-9-]+(\\.[a-z0-9-]+)+"));
  if (f == "ipv4") return std::regex_match(s, std::regex("(\\d{1,3}\\.){3}\\d{1,3}"));
  return false;
}

bool valid(const Json& v, const Json& s0, const Json& root, std::string* why) {
  const Json& s = deref(s0, root);
  auto no = [&](const std::string& w) {
    *why = w + " at " + v.dump() + " vs " + s.dump();
    return false;
  };
  if (s.is_boolean()) return s.get<bool>() || no("false schema");
  for (const char* k : {"anyOf", "oneOf"})
    if (s.contains(k)) {
      int ok = 0;
      std::string w;
      for (const auto& b : s[k]) ok += valid(v, b, root, &w);
      if (ok == 0 || (std::string(k) == "oneOf" && ok > 1)) return no(std::string(k) + " (" + w + ")");
      return true;
    }
  if (s.contains("enum")) {
    bool in = false;
    for (const auto& e : s["enum"]) in |= e == v;
    if (!in) return no("enum");
  }
  if (s.contains("const") && !(s["const"] == v)) return no("const");
  if (s.contains("type")) {
    bool ok = false;
    if (s["type"].is_string()) ok = type_ok(v, s["type"]);
    else for (const auto& t : s["type"]) ok |= type_ok(v, t);
    if (s.value("nullable", false) && v.is_null()) ok = true;
    if (!ok) return no("type");
  }
  if (v.is_object()) {
    const Json props = s.value("properties", Json::object());
    for (const auto& r : s.value("required", Json::array()))
      if (!v.contains(r.get<std::string>())) return no("required " + r.get<std::string>());
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (props.contains(it.key())) {
        if (!valid(it.value(), props[it.key()], root, why)) return false;
      } else if (s.contains("additionalProperties")) {
        const Json& ap = s["additionalProperties"];
        if (ap.is_boolean() && !ap.get<bool>()) return no("additional property " + it.key());
        if (!valid(it.value(), ap, root, why)) return false;
      }
    }
  }
  if (v.is_array()) {
    if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) return no("minItems");
    if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) return no("maxItems");
    if (s.contains("items"))
      for (const auto& x : v)
        if (!valid(x, s["items"], root, why)) return false;
  }
  if (v.is_string()) {
    const std::string str = v.get<std::string>();
    if (s.contains("minLength") && code_points(str) < s["minLength"].get<size_t>()) return no("minLength");
    if (s.contains("maxLength") && code_points(str) > s["maxLength"].get<size_t>()) return no("maxLength");
    if (s.contains("pattern") && !std::regex_search(str, std::regex(s["pattern"].get<std::string>()))) return no("pattern");
    if (s.contains("format") && !format_ok(str, s["format"])) return no("format");
  }
  if (v.is_number()) {
    const double x = v.get<double>();
    if (s.contains("minimum") && x < s["minimum"].get<double>()) return no("minimum");
    if (s.contains("maximum") && x > s["maximum"].get<double>()) return no("maximum");
    if (s.contains("exclusiveMinimum") && x <= s["exclusiveMinimum"].get<double>()) return no("exclusiveMinimum");
    if (s.contains("exclusiveMaximum") && x >= s["exclusiveMaximum"].get<double>()) return no("exclusiveMaximum");
  }
  return true;
}

// The 24 schemas of the property tests (the e2e test uses the same kinds through the server).
std::vector<Json> schemas() {
  std::vector<std::string> src = {
      R"({"type":"object"})",
      R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false})",
      R"({"type":"object","properties":{"color":{"enum":["red","green","blue"]},"n":{"enum":[1,12,123,-4]}},"required":["color","n"]})",
      R"({"type":"object","properties":{"a":{"type":"object","properties":{"b":{"type":"object","properties":{"c":{"const":"deep"}},"required":["c"],"additionalProperties":false}},"required":["b"],"additionalProperties":false}},"required":["a"],"additionalProperties":false})",
      R"({"type":"array","items":{"type":"integer","minimum":-5,"maximum":5},"minItems":2,"maxItems":4})",
      R"({"type":"object","properties":{"s":{"type":"string","minLength":3,"maxLength":5}},"required":["s"],"additionalProperties":false})",
      R"({"type":"object","properties":{"x":{"type":"number","minimum":0,"maximum":1},"y":{"type":"number","exclusiveMinimum":-10,"exclusiveMaximum":10}},"required":["x","y"],"additionalProperties":false})",
      R"({"type":"object","properties":{"v":{"anyOf":[{"type":"string","maxLength":4},{"type":"null"},{"type":"integer"}]}},"required":["v"],"additionalProperties":false})",
      R"({"type":"object","properties":{"v":{"type":["string","null"],"maxLength":3}},"required":["v"],"additionalProperties":false})",
      R"({"$defs":{"node":{"type":"object","properties":{"val":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["val","next"],"additionalProperties":false}},"$ref":"#/$defs/node"})",
      R"({"type":"object","properties":{"when":{"type":"string","format":"date"},"at":{"type":"string","format":"date-time"},"id":{"type":"string","format":"uuid"},"mail":{"type":"string","format":"email"}},"required":["when","at","id","mail"],"additionalProperties":false})",
      R"({"type":"object","properties":{"code":{"type":"string","pattern":"^[A-Z]{3}-\\d{2,4}$"}},"required":["code"],"additionalProperties":false})",
      R"({"type":"object","properties":{"opt1":{"type":"boolean"},"opt2":{"type":"integer"},"req":{"type":"boolean"}},"required":["req"],"additionalProperties":false})",
      R"({"type":"object","properties":{"k":{"type":"integer"}},"required":["k"],"additionalProperties":{"type":"integer","minimum":0,"maximum":9}})",
      R"({"anyOf":[{"type":"object","properties":{"kind":{"const":"a"},"x":{"type":"integer"}},"required":["kind","x"],"additionalProperties":false},{"type":"object","properties":{"kind":{"const":"b"},"y":{"type":"string","maxLength":3}},"required":["kind","y"],"additionalProperties":false}]})",
      R"({"type":"array","items":{"type":"object","properties":{"id":{"type":"integer","minimum":1},"tags":{"type":"array","items":{"type":"string","maxLength":5},"maxItems":2}},"required":["id","tags"],"additionalProperties":false},"maxItems":3})",
      R"({"type":"string","maxLength":8})",
      R"({"type":"integer","minimum":100,"maximum":250})",
      R"({"enum":["x",2,true,null,{"a":1},[1,2]]})",
      R"({"type":"object","properties":{"score":{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":10},"ratio":{"type":"number"}},"required":["score","ratio"],"additionalProperties":false})",
      R"({"type":"object","properties":{"name":{"type":"string","nullable":true}},"required":["name"],"additionalProperties":false})",
      R"({"definitions":{"pt":{"type":"object","properties":{"x":{"type":"integer"},"y":{"type":"integer"}},"required":["x","y"],"additionalProperties":false}},"type":"object","properties":{"a":{"$ref":"#/definitions/pt"},"b":{"$ref":"#/definitions/pt"}},"required":["a","b"],"additionalProperties":false})",
      R"({"type":"object","properties":{"quote \"q\"":{"type":"string","maxLength":2},"ünï":{"type":"boolean"}},"required":["quote \"q\"","ünï"],"additionalProperties":false})",
      R"({"type":"object","properties":{"list":{"type":"array","items":{"enum":["a","b"]},"minItems":1}},"required":["list"],"additionalProperties":false,"title":"T","description":"d"})",
  };
  std::vector<Json> out;
  for (const auto& s : src) out.push_back(Json::parse(s));
  return out;
}

// A random walk through the matcher: a random accepted byte each step (ending when it may, with
// probability 1/4), the shortest completion once past `limit` bytes.
std::string random_walk(const JsonMatcher& m, std::mt19937& rng, size_t limit) {
  JsonState s = m.initial(), next;
  std::string out;
  while (out.size() < limit) {
    if (m.finished(s)) return out;
    if (m.can_finish(s) && rng() % 4 == 0) return out;
    std::vector<unsigned char> ok;
    for (int c = 0; c < 256; ++c)
      if (m.feed(s, (unsigned char)c, next)) ok.push_back((unsigned char)c);
    if (ok.empty()) {  // only the end may follow (a number at its bound)
      EXPECT_TRUE(m.can_finish(s)) << "dead end after " << out;
      return out;
    }
    // Prefer ASCII: the walk then reaches closing brackets in reasonable time.
    unsigned char c = ok[rng() % ok.size()];
    if (c >= 0x80 && rng() % 4) {
      std::vector<unsigned char> ascii;
      for (unsigned char x : ok)
        if (x < 0x80) ascii.push_back(x);
      if (!ascii.empty()) c = ascii[rng() % ascii.size()];
    }
    EXPECT_TRUE(m.feed(s, c, next));
    std::swap(s, next);
    out += char(c);
  }
  const std::string rest = m.completion(s);
  for (unsigned char c : rest) {
    EXPECT_TRUE(m.feed(s, c, next)) << "completion '" << rest << "' rejected after " << out;
    std::swap(s, next);
  }
  EXPECT_TRUE(m.can_finish(s)) << out << rest;
  return out + rest;
}

TEST(JsonSchema, UnsupportedKeywordsAreRefusedByName) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"type":"array","uniqueItems":true})", "uniqueItems"},
      {R"({"type":"object","minProperties":1})", "minProperties"},
      {R"({"type":"object","patternProperties":{"^a":{}}})", "patternProperties"},
      {R"({"type":"array","prefixItems":[{"type":"string"}]})", "prefixItems"},
      {R"({"not":{"type":"string"}})", "not"},
      {R"({"if":{"type":"string"},"then":{}})", "if"},
      {R"({"type":"integer","multipleOf":3})", "multipleOf"},
      {R"({"type":"object","propertyNames":{"maxLength":3}})", "propertyNames"},
      {R"({"type":"string","format":"ipv6"})", "format 'ipv6'"},
      {R"({"type":"string","pattern":"^(a|b)$"})", "pattern"},
      {R"({"type":"string","pattern":"^[a-z]*[a-c]$"})", "pattern"},
      {R"({"$ref":"https://example.com/s.json"})", "$ref"},
      {R"({"type":"number","minimum":0.1,"maximum":0.9})", "minimum/maximum"},
      {R"({"type":"objekt"})", "type 'objekt'"},
      {R"({"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"})", "finite instance"},
      {R"({"type":"object","properties":{"n":{"$ref":"#"}},"required":["n"]})", "finite instance"},
      {R"({"oneOf":[{"type":"string"},{"type":"string","maxLength":3}]})", "oneOf branches 0 and 1"},
      {R"({"oneOf":[{"type":"object","properties":{"k":{"const":"a"}},"required":["k"]},{"type":"object","properties":{"k":{"enum":["a","b"]}},"required":["k"]}]})",
       "oneOf branches 0 and 1"},
      {R"({"type":"array","minItems":200,"items":{"type":"array","minItems":200,"items":{"type":"string","minLength":50}}})",
       "shortest valid instance"},
  };
  for (const auto& [schema, word] : cases) {
    try {
      text::compile_json_schema(Json::parse(schema));
      ADD_FAILURE() << "accepted " << schema;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << schema << " -> " << e.what();
    }
  }
}

TEST(JsonSchema, OneOfWithDisjointBranchesIsAccepted) {
  for (const char* src : {R"({"oneOf":[{"type":"string"},{"type":"null"},{"type":"integer"}]})",
                          R"({"oneOf":[{"enum":["a","b"]},{"const":"c"}]})",
                          R"({"oneOf":[{"type":"object","properties":{"kind":{"const":"x"},"v":{"type":"integer"}},"required":["kind","v"]},)"
                          R"({"type":"object","properties":{"kind":{"const":"y"}},"required":["kind"]}]})"}) {
    const Json schema = Json::parse(src);
    const JsonMatcher m(text::compile_json_schema(schema));
    std::mt19937 rng(5);
    for (int k = 0; k < 50; ++k) {
      const std::string out = random_walk(m, rng, 60);
      Json v;
      ASSERT_TRUE(text::try_parse_py_json(out, &v)) << out;
      std::string why;
      EXPECT_TRUE(valid(v, schema, schema, &why)) << out << ": " << why;
    }
  }
}

TEST(JsonSchema, DeepNestingIsRefusedNotOverflowed) {
  Json s = Json{{"type", "string"}};
  for (int i = 0; i < 200; ++i) s = Json{{"type", "array"}, {"items", s}};
  try {
    text::compile_json_schema(s);
    ADD_FAILURE() << "accepted 200 levels";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nested deeper than 64"), std::string::npos) << e.what();
  }
}

TEST(JsonSchema, CompiledOncePerSchemaText) {
  const Json s = Json::parse(R"({"type":"object","properties":{"a":{"type":"integer"}}})");
  EXPECT_EQ(text::compile_json_schema(s).get(), text::compile_json_schema(Json::parse(s.dump())).get());
  EXPECT_EQ(text::compile_json_schema(s)->nodes[size_t(text::compile_json_schema(s)->root)].shortest, "{}");
}

TEST(JsonMatcher, EveryAcceptedWalkParsesAndValidates) {
  std::mt19937 rng(1234);
  int n = 0;
  for (const Json& schema : schemas()) {
    const JsonMatcher m(text::compile_json_schema(schema));
    for (int k = 0; k < 150; ++k) {
      const std::string out = random_walk(m, rng, size_t(5 + rng() % 120));
      Json v;
      ASSERT_TRUE(text::try_parse_py_json(out, &v)) << "not JSON: " << out << "\nschema " << schema.dump();
      std::string why;
      EXPECT_TRUE(valid(v, schema, schema, &why)) << out << ": " << why;
      ++n;
    }
  }
  EXPECT_EQ(n, 24 * 150);
}

TEST(JsonMatcher, RejectsWhatTheSchemaForbids) {
  const Json schema = schemas()[1];  // {name: string, age: integer}, strict
  const JsonMatcher m(text::compile_json_schema(schema));
  auto accepts = [&](const std::string& s) {
    JsonState st = m.initial(), nx;
    for (unsigned char c : s) {
      if (!m.feed(st, c, nx)) return false;
      std::swap(st, nx);
    }
    return m.can_finish(st);
  };
  EXPECT_TRUE(accepts(R"({"name":"a","age":3})"));
  EXPECT_TRUE(accepts(R"({"name": "a", "age": -3})"));
  EXPECT_FALSE(accepts(R"({"age":3,"name":"a"})"));      // schema order
  EXPECT_FALSE(accepts(R"({"name":"a"})"));              // required
  EXPECT_FALSE(accepts(R"({"name":"a","age":3,"x":1})")); // additionalProperties false
  EXPECT_FALSE(accepts(R"({"name":"a","age":3.5})"));    // integer
  EXPECT_FALSE(accepts(R"({"name":"a","age":03})"));     // leading zero
  EXPECT_FALSE(accepts(R"({"name":"a\x","age":3})"));   // bad escape
  const JsonMatcher e(text::compile_json_schema(schemas()[2]));  // enums
  JsonState st = e.initial(), nx;
  for (unsigned char c : std::string(R"({"color":"r)")) {
    ASSERT_TRUE(e.feed(st, c, nx));
    std::swap(st, nx);
  }
  EXPECT_FALSE(e.feed(st, 'o', nx));
  EXPECT_TRUE(e.feed(st, 'e', nx));
  EXPECT_EQ(e.completion(st), R"(ed","n":1})");  // the shortest enum value
}

// ---------------------------------------------------------------------------------------------
// Token level, on the real vocabulary

// Random logits like a random-weight model's (uniform in [0, 8)), cheap to draw over 129,280 ids.
void random_logits(std::vector<float>& logits, uint64_t& x) {
  for (float& l : logits) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    l = float(x >> 40) * (8.0f / 16777216.0f);
  }
}

const text::Tokenizer& tokenizer() {
  static const text::Tokenizer t = text::Tokenizer::load(default_model_dir());
  return t;
}
const std::shared_ptr<const ConstraintVocab>& vocab() {
  static const auto v = ConstraintVocab::build(tokenizer(), 129280);
  return v;
}

TEST(TokenMask, EqualsABruteForceCheckOfEveryToken) {
  const auto& ix = *vocab()->index;
  TokenMasker masker(vocab()->index);
  std::mt19937 rng(7);
  int states = 0;
  for (int si : {0, 2, 5, 7, 10, 13, 16}) {
    const JsonMatcher m(text::compile_json_schema(schemas()[size_t(si)]));
    // States along one random walk: the start, then every few bytes.
    const std::string walk = random_walk(m, rng, 40);
    JsonState s = m.initial(), nx;
    for (size_t i = 0; i <= walk.size(); ++i) {
      if (i % 5 == 0 && !m.finished(s)) {
        std::vector<uint8_t> allow;
        const size_t n = masker.compute(m, s, allow);
        size_t brute = 0;
        for (int32_t id = 0; id < ix.vocab; ++id) {
          const std::string& b = ix.bytes[size_t(id)];
          bool ok = !b.empty();
          JsonState a = s, t;
          for (unsigned char c : b) {
            if (!ok) break;
            ok = m.feed(a, c, t);
            std::swap(a, t);
          }
          brute += ok;
          ASSERT_EQ(allow[size_t(id)], ok ? 1 : 0) << "token " << id << " '" << b << "' after '" << walk.substr(0, i) << "'";
        }
        EXPECT_EQ(n, brute);
        ++states;
      }
      if (i == walk.size()) break;
      ASSERT_TRUE(m.feed(s, (unsigned char)walk[i], nx));
      std::swap(s, nx);
    }
  }
  EXPECT_GT(states, 20);
}

// JsonConstraint with random logits (what the random-weight model gives): every output parses and
// validates, within the budget when the shortest instance fits.
TEST(JsonConstraint, RandomLogitsAlwaysGiveAValidValueWithinBudget) {
  uint64_t rs = 99;
  std::vector<float> logits(129280);
  int runs = 0;
  for (const Json& schema : schemas()) {
    auto g = text::compile_json_schema(schema);
    for (int budget : {12, 40}) {
      JsonConstraint c(g, vocab(), budget, false, 0);
      std::vector<int32_t> toks;
      for (int guard = 0; guard < 400 && !c.done(); ++guard) {
        random_logits(logits, rs);
        int32_t t = c.next(logits);
        if (t < 0) t = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
        c.accept(t);
        toks.push_back(t);
      }
      ASSERT_TRUE(c.done());
      ASSERT_EQ(toks.back(), vocab()->eos);
      toks.pop_back();
      const std::string out = tokenizer().decode(toks);
      Json v;
      ASSERT_TRUE(text::try_parse_py_json(out, &v)) << out;
      std::string why;
      EXPECT_TRUE(valid(v, schema, schema, &why)) << out << ": " << why;
      if (g->nodes[size_t(g->root)].shortest.size() + 1 < size_t(budget))
        EXPECT_LE(int(toks.size()) + 1, budget) << out;
      ++runs;
    }
  }
  EXPECT_EQ(runs, 48);
}

TEST(JsonConstraint, ThinkingStaysFreeUntilThinkEnd) {
  auto g = text::compile_json_schema(schemas()[1]);
  JsonConstraint c(g, vocab(), 40, true, 5);
  std::vector<float> logits(129280, 0.0f);
  for (int i = 0; i < 5; ++i) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    EXPECT_EQ(c.next(logits), -1);
    EXPECT_EQ(logits[size_t(vocab()->eos)], -std::numeric_limits<float>::infinity());
    EXPECT_EQ(logits[100], 0.0f);  // free: not masked
    c.accept(100);
  }
  EXPECT_EQ(c.next(logits), vocab()->think_end);  // the reasoning budget is spent
  c.accept(vocab()->think_end);
  std::fill(logits.begin(), logits.end(), 0.0f);
  EXPECT_EQ(c.next(logits), -1);
  const int32_t brace = tokenizer().token_id("{");
  EXPECT_EQ(logits[size_t(brace)], 0.0f);
  EXPECT_EQ(logits[100], -std::numeric_limits<float>::infinity());
}

}  // namespace
}  // namespace dsv4::engine

namespace dsv4::engine {
namespace {

// A forced tool call whose parameters follow their schema (enum, bounded integer, nested object
// with required keys) and, with parallel calls, that may hold several calls: random logits give
// every value valid and, over 12 runs, more than one call.
TEST(ToolCallConstraint, SchemaTypedParametersAndParallelCalls) {
  const Json params = Json::parse(R"({"type":"object","properties":{
      "city":{"enum":["Rome","Paris"]},"days":{"type":"integer","minimum":1,"maximum":7},
      "opts":{"type":"object","properties":{"metric":{"type":"boolean"},"lang":{"enum":["en","it"]}},"required":["metric","lang"],"additionalProperties":false},
      "note":{"type":"string"}},"required":["city","days","opts","note"],"additionalProperties":false})");
  auto g = text::compile_json_schema(params);
  ForcedToolCall spec;
  spec.parallel = true;
  ForcedTool tool{"w", {}};
  const auto& props = g->nodes[size_t(g->root)].properties;
  for (const auto& p : props) {
    ForcedParam fp;
    fp.name = p.name;
    fp.grammar = g;
    fp.node = p.node;
    tool.params.push_back(fp);
  }
  spec.tools.push_back(tool);
  uint64_t rs = 3;
  std::vector<float> logits(129280);
  size_t most = 0;
  const std::regex value("parameter name=\"(\\w+)\" string=\"(true|false)\">([^<]*)</");
  for (int run = 0; run < 12; ++run) {
    ToolCallConstraint c(spec, vocab());
    std::vector<int32_t> toks;
    for (int guard = 0; guard < 2000 && !c.done(); ++guard) {
      random_logits(logits, rs);
      int32_t t = c.next(logits);
      if (t < 0) t = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
      c.accept(t);
      toks.push_back(t);
    }
    ASSERT_TRUE(c.done());
    EXPECT_EQ(c.done_reason(), FinishReason::tool_calls);
    const std::string text = tokenizer().decode(toks);
    size_t calls = 0;
    for (size_t at = 0; (at = text.find("invoke name=\"w\"", at)) != std::string::npos; ++at) ++calls;
    EXPECT_GE(calls, 1u);
    EXPECT_LE(calls, size_t(spec.max_calls));
    most = std::max(most, calls);
    EXPECT_NE(text.find("</｜DSML｜tool_calls><｜end▁of▁sentence｜>"), std::string::npos) << text;
    size_t values = 0;
    for (std::sregex_iterator it(text.begin(), text.end(), value), end; it != end; ++it, ++values) {
      const std::string name = (*it)[1], raw = (*it)[3];
      if ((*it)[2] == "true") {  // the plain string: raw text
        EXPECT_EQ(name, "note");
        continue;
      }
      Json v;
      ASSERT_TRUE(text::try_parse_py_json(raw, &v)) << name << ": " << raw;
      std::string why;
      EXPECT_TRUE(valid(v, params["properties"][name], params, &why)) << name << ": " << raw << " " << why;
    }
    EXPECT_EQ(values, 4 * calls) << text;
  }
  EXPECT_GE(most, 2u);
}

}  // namespace
}  // namespace dsv4::engine

namespace dsv4::engine {
namespace {

// tool_choice auto with strict tools: decoding stays free (nothing masked, EOS allowed) until the
// model writes "\n\n<｜DSML｜"; then the rest of the block is forced and the arguments follow the
// schema. DSML elsewhere (not after "\n\n<") does not open it.
TEST(ToolCallConstraint, StrictToolsUnderAutoOnceTheModelOpensABlock) {
  const Json params = Json::parse(R"({"type":"object","properties":{"unit":{"enum":["C","F"]}},"required":["unit"],"additionalProperties":false})");
  auto g = text::compile_json_schema(params);
  ForcedToolCall spec;
  spec.on_open = true;
  ForcedParam p;
  p.name = "unit";
  p.grammar = g;
  p.node = g->nodes[size_t(g->root)].properties[0].node;
  spec.tools.push_back({"temp", {p}});
  ToolCallConstraint c(spec, vocab());
  std::vector<float> logits(129280, 1.0f);
  std::vector<int32_t> toks = tokenizer().encode_plain("Sure <");
  toks.push_back(vocab()->dsml);  // not after "\n\n<": no block
  for (int32_t t : tokenizer().encode_plain("ok.\n\n<")) toks.push_back(t);
  for (int32_t t : toks) {
    EXPECT_EQ(c.next(logits), -1);
    EXPECT_EQ(logits[size_t(vocab()->eos)], 1.0f);  // free: EOS allowed, nothing masked
    EXPECT_FALSE(c.in_block());
    c.accept(t);
  }
  EXPECT_EQ(c.next(logits), -1);
  c.accept(vocab()->dsml);
  EXPECT_TRUE(c.in_block());
  std::vector<int32_t> out = {vocab()->dsml};
  uint64_t rs = 11;
  for (int guard = 0; guard < 200 && !c.done(); ++guard) {
    random_logits(logits, rs);
    int32_t t = c.next(logits);
    if (t < 0) t = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    c.accept(t);
    out.push_back(t);
  }
  ASSERT_TRUE(c.done());
  const std::string text = tokenizer().decode(out);
  EXPECT_TRUE(std::regex_match(text, std::regex(
      "｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"temp\">\n<｜DSML｜parameter name=\"unit\" string=\"false\">\"[CF]\""
      "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>"))) << text;
}

}  // namespace
}  // namespace dsv4::engine

namespace dsv4::engine {
namespace {

// The budget can run out right after a token that ended inside a UTF-8 character: the forced
// completion starts with the missing continuation bytes (single-byte tokens), then closes.
TEST(JsonConstraint, ForcedCompletionFinishesAPartialCharacter) {
  const auto& ix = *vocab()->index;
  for (int b = 0; b < 256; ++b) ASSERT_GE(ix.byte_token[b], 0) << "no token for byte " << b;
  auto g = text::compile_json_schema(Json::parse(R"({"type":"array","items":{"type":"string"},"minItems":1})"));
  JsonConstraint c(g, vocab(), 6, false, 0);
  std::vector<float> logits(129280, 0.0f);
  std::vector<int32_t> toks;
  for (int32_t t : {ix.byte_token['['], ix.byte_token['"'], ix.byte_token[0xe4]}) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    EXPECT_EQ(c.next(logits), -1);
    EXPECT_EQ(logits[size_t(t)], 0.0f) << "token " << t << " '" << ix.bytes[size_t(t)] << "'";  // allowed
    c.accept(t);
    toks.push_back(t);
  }
  // 3 tokens left: the completion "\x80\x80\"]" (4 bytes) no longer fits: forced from here.
  for (int guard = 0; guard < 10 && !c.done(); ++guard) {
    const int32_t t = c.next(logits);
    ASSERT_GE(t, 0);
    c.accept(t);
    toks.push_back(t);
  }
  ASSERT_TRUE(c.done());
  EXPECT_EQ(toks.back(), vocab()->eos);
  toks.pop_back();
  EXPECT_EQ(tokenizer().decode(toks), "[\"\xe4\x80\x80\"]");
}

}  // namespace
}  // namespace dsv4::engine
