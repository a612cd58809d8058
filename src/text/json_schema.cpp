// dsv4 text: JSON Schema -> grammar (see json_schema.h for the subset and what is written).
#include "text/json_schema.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>

#include "core/error.h"

namespace dsv4::text {

unsigned char StringSegment::first() const {
  for (int c = 0; c < 128; ++c)
    if (has((unsigned char)c)) return (unsigned char)c;
  return 'a';
}

namespace {

constexpr int64_t kNumLimit = 999999999999999;  // 15 digits

// ---------------------------------------------------------------------------------------------
// String templates: a regex that is a sequence of character classes with counts.

void set_bit(StringSegment& s, unsigned char c) {
  if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') return;  // never needs a JSON escape
  s.cls[c >> 6] |= uint64_t(1) << (c & 63);
}
void set_range(StringSegment& s, unsigned char a, unsigned char b) {
  for (int c = a; c <= b; ++c) set_bit(s, (unsigned char)c);
}
bool disjoint(const StringSegment& a, const StringSegment& b) {
  return (a.cls[0] & b.cls[0]) == 0 && (a.cls[1] & b.cls[1]) == 0;
}

std::vector<StringSegment> parse_template(const std::string& re, const std::string& where) {
  auto bad = [&](const std::string& why) -> Error {
    return Error(where + ": pattern '" + re + "' is not supported (" + why +
                 "; supported: a sequence of literal characters, classes [..], \\d \\w \\s and ., each with ? * + {n} {n,} {n,m})");
  };
  std::vector<StringSegment> out;
  size_t i = 0, n = re.size();
  if (i < n && re[i] == '^') ++i;
  if (n > i && re[n - 1] == '$' && (n < 2 || re[n - 2] != '\\')) --n;
  auto escape_class = [&](char e, StringSegment& s) {
    switch (e) {
      case 'd': set_range(s, '0', '9'); return;
      case 'w': set_range(s, 'a', 'z'); set_range(s, 'A', 'Z'); set_range(s, '0', '9'); set_bit(s, '_'); return;
      case 's': set_bit(s, ' '); return;
      case 'n': case 't': case 'r': case 'f': case 'v': throw bad("control characters");
      default:
        if (std::isalnum((unsigned char)e)) throw bad(std::string("escape \\") + e);
        set_bit(s, (unsigned char)e);
    }
  };
  while (i < n) {
    StringSegment s;
    const char c = re[i];
    if (c == '(' || c == ')' || c == '|' || c == '^' || c == '$') throw bad(std::string("'") + c + "'");
    if (c == '.') {
      set_range(s, 0x20, 0x7e);
      ++i;
    } else if (c == '\\') {
      if (i + 1 >= n) throw bad("trailing backslash");
      escape_class(re[i + 1], s);
      i += 2;
    } else if (c == '[') {
      ++i;
      bool neg = false;
      if (i < n && re[i] == '^') {
        neg = true;
        ++i;
      }
      StringSegment cls;
      bool first = true;
      while (i < n && (re[i] != ']' || first)) {
        first = false;
        unsigned char a = (unsigned char)re[i];
        if (a == '\\') {
          if (i + 1 >= n) throw bad("trailing backslash");
          const char e = re[i + 1];
          i += 2;
          if (e == 'd' || e == 'w' || e == 's') {
            escape_class(e, cls);
            continue;
          }
          if (std::isalnum((unsigned char)e)) throw bad(std::string("escape \\") + e);
          a = (unsigned char)e;
        } else {
          ++i;
        }
        if (i + 1 < n && re[i] == '-' && re[i + 1] != ']') {
          unsigned char b = (unsigned char)re[i + 1];
          i += 2;
          if (b == '\\') {
            if (i >= n) throw bad("trailing backslash");
            b = (unsigned char)re[i++];
          }
          if (b < a) throw bad("reversed range");
          set_range(cls, a, b);
        } else {
          set_bit(cls, a);
        }
      }
      if (i >= n) throw bad("unterminated class");
      ++i;  // ']'
      if (neg) {
        set_range(s, 0x20, 0x7e);
        s.cls[0] &= ~cls.cls[0];
        s.cls[1] &= ~cls.cls[1];
      } else {
        s = cls;
      }
    } else {
      if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f) throw bad("non-ASCII or control characters");
      if (c == '"') throw bad("quote characters");
      if (c == '*' || c == '+' || c == '?' || c == '{') throw bad("a quantifier with nothing before it");
      set_bit(s, (unsigned char)c);
      ++i;
    }
    if (s.cls[0] == 0 && s.cls[1] == 0) throw bad("a class with no printable ASCII character");
    // Quantifier.
    if (i < n) {
      const char q = re[i];
      if (q == '?') { s.min = 0; s.max = 1; ++i; }
      else if (q == '*') { s.min = 0; s.max = -1; ++i; }
      else if (q == '+') { s.min = 1; s.max = -1; ++i; }
      else if (q == '{') {
        const size_t close = re.find('}', i);
        if (close == std::string::npos || close >= n) throw bad("unterminated {");
        const std::string body = re.substr(i + 1, close - i - 1);
        const size_t comma = body.find(',');
        try {
          if (comma == std::string::npos) {
            s.min = s.max = std::stoi(body);
          } else {
            s.min = std::stoi(body.substr(0, comma));
            const std::string hi = body.substr(comma + 1);
            s.max = hi.empty() ? -1 : std::stoi(hi);
          }
        } catch (const std::exception&) {
          throw bad("bad {n,m}");
        }
        if (s.min < 0 || (s.max >= 0 && s.max < s.min) || s.min > 4096) throw bad("bad {n,m}");
        i = close + 1;
      }
      if (i < n && (re[i] == '?' || re[i] == '*' || re[i] == '+')) throw bad("lazy or stacked quantifiers");
    }
    if (s.max != 0) out.push_back(s);
  }
  // Decoding reads the template greedily: a repeated class must not share a character with the
  // classes that may come next, or the choice between them would be ambiguous.
  for (size_t a = 0; a < out.size(); ++a) {
    if (out[a].min == out[a].max) continue;
    for (size_t b = a + 1; b < out.size(); ++b) {
      if (!disjoint(out[a], out[b])) throw bad("a repeated class overlaps what follows it");
      if (out[b].min > 0) break;
    }
  }
  return out;
}

std::vector<StringSegment> format_template(const std::string& fmt, const std::string& where) {
  // Templates whose every match is valid for the format (checked with ajv-formats in the tests).
  static const std::map<std::string, std::string> kFormats = {
      {"date", "[12]\\d{3}-0[1-9]-[0-2][1-8]"},
      {"time", "[01]\\d:[0-5]\\d:[0-5]\\dZ"},
      {"date-time", "[12]\\d{3}-0[1-9]-[0-2][1-8]T[01]\\d:[0-5]\\d:[0-5]\\dZ"},
      {"uuid", "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"},
      {"email", "[a-z]{1,16}@[a-z]{1,16}\\.[a-z]{2,6}"},
      {"ipv4", "[1-9]\\.\\d\\.\\d\\.\\d"},
      {"uri", "https://[a-z]{1,16}\\.[a-z]{2,6}"},
      {"hostname", "[a-z]{1,16}\\.[a-z]{2,6}"},
  };
  auto it = kFormats.find(fmt);
  if (it == kFormats.end()) {
    std::string known;
    for (const auto& [k, v] : kFormats) known += (known.empty() ? "" : ", ") + k;
    throw Error(where + ": format '" + fmt + "' is not supported (supported: " + known + ")");
  }
  return parse_template(it->second, where);
}

// ---------------------------------------------------------------------------------------------
// The compiler

const std::set<std::string>& annotation_keywords() {
  static const std::set<std::string> k = {"title", "description", "default", "examples", "$schema", "$id", "$comment",
                                          "deprecated", "readOnly", "writeOnly", "$defs", "definitions",
                                          "discriminator", "propertyOrdering", "$anchor", "example"};
  return k;
}

std::string type_name_list() { return "null, boolean, integer, number, string, array, object"; }

uint8_t type_bit(const std::string& t, const std::string& where) {
  if (t == "null") return kJsonNull;
  if (t == "boolean") return kJsonBool;
  if (t == "integer") return kJsonInteger;
  if (t == "number") return kJsonNumber | kJsonInteger;
  if (t == "string") return kJsonString;
  if (t == "array") return kJsonArray;
  if (t == "object") return kJsonObject;
  throw Error(where + ": type '" + t + "' is not one of " + type_name_list());
}

uint8_t type_of_value(const Json& v) {
  if (v.is_null()) return kJsonNull;
  if (v.is_boolean()) return kJsonBool;
  if (v.is_number_integer() || v.is_number_unsigned()) return kJsonInteger;
  if (v.is_number_float()) {
    const double d = v.get<double>();
    return d == std::floor(d) ? uint8_t(kJsonInteger | kJsonNumber) : uint8_t(kJsonNumber);
  }
  if (v.is_string()) return kJsonString;
  if (v.is_array()) return kJsonArray;
  return kJsonObject;
}

class Compiler {
 public:
  explicit Compiler(const Json& root) : root_(root) {}

  std::shared_ptr<JsonGrammar> run() {
    g_ = std::make_shared<JsonGrammar>();
    g_->any = new_node();
    {
      SchemaNode& a = g_->nodes[size_t(g_->any)];
      a.types = kJsonAny;
      a.items = g_->any;
      a.additional = g_->any;
      a.lo = -kNumLimit;
      a.hi = kNumLimit;
    }
    g_->bool_lits = new_node();
    g_->nodes[size_t(g_->bool_lits)].literals = {"false", "true"};
    g_->null_lits = new_node();
    g_->nodes[size_t(g_->null_lits)].literals = {"null"};
    g_->root = compile(root_, "schema");
    shortest();
    return g_;
  }

 private:
  int new_node() {
    g_->nodes.emplace_back();
    return int(g_->nodes.size() - 1);
  }

  const Json& resolve_ref(const std::string& ref, const std::string& where) {
    if (ref == "#") return root_;
    for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
      const std::string p = prefix;
      if (ref.rfind(p, 0) == 0) {
        const std::string name = ref.substr(p.size());
        const std::string key = p.substr(2, p.size() - 3);
        const Json* defs = json_member(root_, key.c_str());
        if (defs && defs->is_object() && defs->contains(name)) return (*defs)[name];
        throw Error(where + ": $ref '" + ref + "' names no definition");
      }
    }
    throw Error(where + ": $ref '" + ref + "' is not supported (only \"#\", \"#/$defs/NAME\" and \"#/definitions/NAME\")");
  }

  int compile(const Json& s, const std::string& where) {
    // Request schemas are untrusted: bounded nesting (the compiler recurses per level).
    struct Depth {
      int& d;
      explicit Depth(int& x) : d(x) { ++d; }
      ~Depth() { --d; }
    } guard(depth_);
    if (depth_ > kMaxSchemaDepth) throw Error(where + ": schema nested deeper than " + std::to_string(kMaxSchemaDepth) + " levels");
    if (s.is_boolean()) {
      if (s.get<bool>()) return g_->any;
      throw Error(where + ": the schema false allows no value");
    }
    if (!s.is_object()) throw Error(where + ": expected a schema object");
    for (auto it = s.begin(); it != s.end(); ++it) {
      const std::string& k = it.key();
      if (annotation_keywords().count(k) || k.rfind("x-", 0) == 0) continue;
      static const std::set<std::string> known = {
          "type", "enum", "const", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
          "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
          "anyOf", "oneOf", "allOf", "$ref", "nullable"};
      if (!known.count(k))
        throw Error(where + ": keyword '" + k + "' is not supported by constrained decoding");
    }
    if (const Json* r = json_member(s, "$ref")) {
      if (!r->is_string()) throw Error(where + ": $ref: expected a string");
      for (auto it = s.begin(); it != s.end(); ++it)
        if (it.key() != "$ref" && !annotation_keywords().count(it.key()) && it.key().rfind("x-", 0) != 0)
          throw Error(where + ": keyword '" + it.key() + "' next to $ref is not supported");
      const std::string ref = r->get<std::string>();
      if (auto f = refs_.find(ref); f != refs_.end()) return f->second;
      // A placeholder first, so that a recursive reference finds it.
      const int id = new_node();
      refs_[ref] = id;
      const int body = compile(resolve_ref(ref, where), ref);
      g_->nodes[size_t(id)].any_of = {body};
      return id;
    }
    if (const Json* a = json_member(s, "allOf")) {
      if (!a->is_array() || a->size() != 1 || s.size() != 1 + count_annotations(s))
        throw Error(where + ": allOf is supported only with exactly one schema and no other keywords");
      return compile((*a)[0], where + ".allOf[0]");
    }
    const bool nullable = json_member(s, "nullable") && (*json_member(s, "nullable")).is_boolean() &&
                          json_member(s, "nullable")->get<bool>();
    for (const char* key : {"anyOf", "oneOf"}) {
      if (const Json* a = json_member(s, key)) {
        if (!a->is_array() || a->empty()) throw Error(where + ": " + key + ": expected a non-empty list of schemas");
        for (auto it = s.begin(); it != s.end(); ++it)
          if (it.key() != key && it.key() != "nullable" && !annotation_keywords().count(it.key()) && it.key().rfind("x-", 0) != 0)
            throw Error(where + ": keyword '" + it.key() + "' next to " + key + " is not supported");
        std::vector<int> branches;
        for (size_t i = 0; i < a->size(); ++i)
          branches.push_back(compile((*a)[i], where + "." + key + "[" + std::to_string(i) + "]"));
        // oneOf means exactly one: decoding follows any branch, so the branches must be provably
        // disjoint (different types, different literals, or a required property whose literal
        // values differ, as in discriminated unions).
        if (std::string(key) == "oneOf")
          for (size_t x = 0; x < branches.size(); ++x)
            for (size_t y = x + 1; y < branches.size(); ++y)
              if (!disjoint_nodes(branches[x], branches[y]))
                throw Error(where + ": oneOf branches " + std::to_string(x) + " and " + std::to_string(y) +
                            " may both match, which constrained decoding cannot rule out (use anyOf, or a const discriminator)");
        if (nullable) branches.push_back(g_->null_lits);
        const int id = new_node();
        g_->nodes[size_t(id)].any_of = std::move(branches);
        return id;
      }
    }

    SchemaNode n;
    // type
    if (const Json* t = json_member(s, "type")) {
      if (t->is_string()) {
        n.types = type_bit(t->get<std::string>(), where);
      } else if (t->is_array() && !t->empty()) {
        for (const auto& x : *t) {
          if (!x.is_string()) throw Error(where + ": type: expected a name or a list of names");
          n.types |= type_bit(x.get<std::string>(), where);
        }
      } else {
        throw Error(where + ": type: expected a name or a list of names");
      }
    } else if (s.contains("properties") || s.contains("required") || s.contains("additionalProperties")) {
      n.types = kJsonObject;
    } else if (s.contains("items") || s.contains("minItems") || s.contains("maxItems")) {
      n.types = kJsonArray;
    } else if (s.contains("minLength") || s.contains("maxLength") || s.contains("pattern") || s.contains("format")) {
      n.types = kJsonString;
    } else if (s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") || s.contains("exclusiveMaximum")) {
      n.types = kJsonNumber | kJsonInteger;
    } else {
      n.types = kJsonAny;
    }
    if (nullable) n.types |= kJsonNull;

    // enum / const: the value is one of these texts (those of an allowed type).
    const Json* en = json_member(s, "enum");
    const bool has_const = s.contains("const");
    if (en || has_const) {
      std::vector<Json> values;
      if (has_const) values.push_back(s["const"]);
      else if (en->is_array() && !en->empty()) values.assign(en->begin(), en->end());
      else throw Error(where + ": enum: expected a non-empty list");
      for (const auto& v : values) {
        if (!(type_of_value(v) & n.types)) continue;
        n.literals.push_back(v.dump(-1, ' ', false, Json::error_handler_t::replace));
      }
      if (n.literals.empty()) throw Error(where + ": " + (has_const ? "const" : "enum") + ": no value of the allowed type");
      std::sort(n.literals.begin(), n.literals.end());
      n.literals.erase(std::unique(n.literals.begin(), n.literals.end()), n.literals.end());
      for (const auto& l : n.literals)
        if (l.size() > 4096) throw Error(where + ": enum: a value longer than 4096 bytes is not supported");
      const int id = new_node();
      g_->nodes[size_t(id)] = std::move(n);
      return id;
    }

    // numbers
    n.lo = -kNumLimit;
    n.hi = kNumLimit;
    auto num = [&](const char* k) -> std::optional<double> {
      const Json* v = json_member(s, k);
      if (!v) return std::nullopt;
      if (v->is_boolean()) return std::nullopt;  // draft-4 exclusive flags, read below
      if (!v->is_number()) throw Error(where + ": " + k + ": expected a number");
      return v->get<double>();
    };
    auto flag = [&](const char* k) {
      const Json* v = json_member(s, k);
      return v && v->is_boolean() && v->get<bool>();
    };
    std::optional<double> mn = num("minimum"), mx = num("maximum"), xmn = num("exclusiveMinimum"), xmx = num("exclusiveMaximum");
    if (flag("exclusiveMinimum") && mn) {
      xmn = mn;
      mn.reset();
    }
    if (flag("exclusiveMaximum") && mx) {
      xmx = mx;
      mx.reset();
    }
    auto clamp = [](double d) { return std::max<double>(-kNumLimit, std::min<double>(kNumLimit, d)); };
    if (mn) n.lo = std::max<int64_t>(n.lo, int64_t(std::ceil(clamp(*mn))));
    if (xmn) n.lo = std::max<int64_t>(n.lo, int64_t(std::floor(clamp(*xmn))) + 1);
    if (mx) n.hi = std::min<int64_t>(n.hi, int64_t(std::floor(clamp(*mx))));
    if (xmx) n.hi = std::min<int64_t>(n.hi, int64_t(std::ceil(clamp(*xmx))) - 1);
    n.bounded = mn || mx || xmn || xmx;
    if (n.bounded && n.lo > n.hi && (n.types & (kJsonInteger | kJsonNumber)))
      throw Error(where + ": minimum/maximum: the range holds no integer (ranges without an integer are not supported)");

    // strings
    auto count = [&](const char* k) -> int {
      const Json* v = json_member(s, k);
      if (!v) return -1;
      if (!v->is_number_integer() || v->get<int64_t>() < 0 || v->get<int64_t>() > (1 << 20))
        throw Error(where + ": " + k + ": expected a non-negative integer");
      return int(v->get<int64_t>());
    };
    if (int v = count("minLength"); v >= 0) n.min_length = v;
    n.max_length = count("maxLength");
    if (n.max_length >= 0 && n.max_length < n.min_length) throw Error(where + ": maxLength is below minLength");
    const Json* pat = json_member(s, "pattern");
    const Json* fmt = json_member(s, "format");
    if (pat && fmt) throw Error(where + ": pattern together with format is not supported");
    if (pat) {
      if (!pat->is_string()) throw Error(where + ": pattern: expected a string");
      n.segments = parse_template(pat->get<std::string>(), where);
    } else if (fmt) {
      if (!fmt->is_string()) throw Error(where + ": format: expected a string");
      if (n.types & kJsonString) n.segments = format_template(fmt->get<std::string>(), where);
    }
    if (!n.segments.empty() && (n.min_length > 0 || n.max_length >= 0)) {
      int64_t tmin = 0, tmax = 0;
      for (const auto& sg : n.segments) {
        tmin += sg.min;
        tmax = (tmax < 0 || sg.max < 0) ? -1 : tmax + sg.max;
      }
      if (tmin < n.min_length || (n.max_length >= 0 && (tmax < 0 || tmax > n.max_length)))
        throw Error(where + ": minLength/maxLength together with a pattern or format of other lengths is not supported");
    }

    // arrays
    if (const Json* it = s.contains("items") ? &s["items"] : nullptr) {
      if (it->is_array()) throw Error(where + ": items as a list (tuple validation) is not supported");
      n.items = compile(*it, where + ".items");
    } else {
      n.items = g_->any;
    }
    if (int v = count("minItems"); v >= 0) n.min_items = v;
    n.max_items = count("maxItems");
    if (n.max_items >= 0 && n.max_items < n.min_items) throw Error(where + ": maxItems is below minItems");
    if (n.min_items > 256) throw Error(where + ": minItems above 256 is not supported");

    // objects
    std::vector<std::string> required;
    if (const Json* r = json_member(s, "required")) {
      if (!r->is_array()) throw Error(where + ": required: expected a list of names");
      for (const auto& x : *r) {
        if (!x.is_string()) throw Error(where + ": required: expected a list of names");
        required.push_back(x.get<std::string>());
      }
    }
    if (s.contains("additionalProperties")) {
      const Json& ap = s["additionalProperties"];
      if (ap.is_boolean()) n.additional = ap.get<bool>() ? g_->any : -1;
      else n.additional = compile(ap, where + ".additionalProperties");
    } else {
      n.additional = g_->any;  // JSON Schema's default: any other property is allowed
    }
    if (const Json* p = json_member(s, "properties")) {
      if (!p->is_object()) throw Error(where + ": properties: expected an object");
      for (auto it = p->begin(); it != p->end(); ++it) {
        SchemaNode::Property prop;
        const std::string quoted = Json(it.key()).dump(-1, ' ', false, Json::error_handler_t::replace);
        prop.name = quoted.substr(1, quoted.size() - 2);
        prop.node = compile(it.value(), where + ".properties." + it.key());
        prop.required = std::find(required.begin(), required.end(), it.key()) != required.end();
        n.properties.push_back(std::move(prop));
      }
    }
    for (const auto& r : required) {
      bool found = false;
      for (const auto& prop : n.properties) found |= Json(r).dump().substr(1, Json(r).dump().size() - 2) == prop.name;
      if (found) continue;
      if (n.additional < 0)
        throw Error(where + ": required names '" + r + "', which is not in properties and additionalProperties is false");
      SchemaNode::Property prop;
      const std::string quoted = Json(r).dump(-1, ' ', false, Json::error_handler_t::replace);
      prop.name = quoted.substr(1, quoted.size() - 2);
      prop.node = n.additional;
      prop.required = true;
      n.properties.push_back(std::move(prop));
    }
    if (n.properties.size() > 64) throw Error(where + ": properties: more than 64 properties are not supported");

    const int id = new_node();
    g_->nodes[size_t(id)] = std::move(n);
    return id;
  }

  // Follows single-branch anyOf links ($ref placeholders).
  int resolve(int id) const {
    for (int k = 0; k < 64 && g_->nodes[size_t(id)].any_of.size() == 1; ++k) id = g_->nodes[size_t(id)].any_of[0];
    return id;
  }
  // The JSON types a node's values may have (integer and number merged); 0: not known yet.
  uint8_t type_set(int id, int depth = 0) const {
    id = resolve(id);
    const SchemaNode& n = g_->nodes[size_t(id)];
    auto norm = [](uint8_t t) { return uint8_t((t & kJsonInteger) ? (t | kJsonNumber) & ~kJsonInteger : t); };
    if (!n.literals.empty()) {
      uint8_t t = 0;
      for (const auto& l : n.literals) {
        const char c = l[0];
        t |= c == '{' ? kJsonObject : c == '[' ? kJsonArray : c == '"' ? kJsonString : c == 'n' ? kJsonNull
           : (c == 't' || c == 'f') ? kJsonBool : kJsonNumber;
      }
      return t;
    }
    if (!n.any_of.empty()) {
      uint8_t t = 0;
      if (depth > 16) return kJsonAny;
      for (int b : n.any_of) t |= type_set(b, depth + 1);
      return t;
    }
    return norm(n.types);
  }
  bool disjoint_nodes(int a, int b) const {
    a = resolve(a);
    b = resolve(b);
    const uint8_t ta = type_set(a), tb = type_set(b);
    if (ta == 0 || tb == 0) return false;
    if ((ta & tb) == 0) return true;
    const SchemaNode &na = g_->nodes[size_t(a)], &nb = g_->nodes[size_t(b)];
    if (!na.literals.empty() && !nb.literals.empty()) {
      for (const auto& l : na.literals)
        if (std::binary_search(nb.literals.begin(), nb.literals.end(), l)) return false;
      return true;
    }
    if (na.any_of.empty() && nb.any_of.empty() && na.literals.empty() && nb.literals.empty() && na.types == kJsonObject &&
        nb.types == kJsonObject) {
      for (const auto& pa : na.properties)
        for (const auto& pb : nb.properties)
          if (pa.required && pb.required && pa.name == pb.name) {
            const SchemaNode &la = g_->nodes[size_t(resolve(pa.node))], &lb = g_->nodes[size_t(resolve(pb.node))];
            if (la.literals.empty() || lb.literals.empty()) continue;
            bool overlap = false;
            for (const auto& l : la.literals) overlap |= std::binary_search(lb.literals.begin(), lb.literals.end(), l);
            if (!overlap) return true;
          }
    }
    return false;
  }

  size_t count_annotations(const Json& s) const {
    size_t k = 0;
    for (auto it = s.begin(); it != s.end(); ++it)
      if (annotation_keywords().count(it.key()) || it.key().rfind("x-", 0) == 0) ++k;
    return k;
  }

  // Shortest instances by fixpoint; a node left without one has no finite instance (a required
  // recursion), and decoding could enter it and never finish: refused.
  void shortest() {
    const size_t N = g_->nodes.size();
    std::vector<std::optional<std::string>> best(N);
    auto better = [](const std::optional<std::string>& a, const std::string& b) {
      return !a || b.size() < a->size() || (b.size() == a->size() && b < *a);
    };
    bool changed = true;
    while (changed) {
      changed = false;
      for (size_t i = 0; i < N; ++i) {
        const SchemaNode& n = g_->nodes[i];
        std::optional<std::string> cand;
        auto offer = [&](const std::string& s) {
          if (better(cand, s)) cand = s;
        };
        if (!n.literals.empty()) {
          for (const auto& l : n.literals) offer(l);
        } else if (!n.any_of.empty()) {
          for (int b : n.any_of)
            if (best[size_t(b)]) offer(*best[size_t(b)]);
        } else {
          if (n.types & kJsonNull) offer("null");
          if (n.types & kJsonBool) offer("true");
          if (n.types & (kJsonInteger | kJsonNumber)) {
            const int64_t v = n.lo > 0 ? n.lo : (n.hi < 0 ? n.hi : 0);
            offer(std::to_string(v));
          }
          if (n.types & kJsonString) {
            std::string s = "\"";
            if (!n.segments.empty()) {
              for (const auto& sg : n.segments) s.append(size_t(sg.min), char(sg.first()));
            } else {
              s.append(size_t(n.min_length), 'a');
            }
            offer(s + "\"");
          }
          if (n.types & kJsonArray) {
            if (n.min_items == 0) {
              offer("[]");
            } else if (best[size_t(n.items)]) {
              std::string s = "[";
              for (int k = 0; k < n.min_items; ++k) s += (k ? "," : "") + *best[size_t(n.items)];
              offer(s + "]");
            }
          }
          if (n.types & kJsonObject) {
            std::string s = "{";
            bool ok = true, first = true;
            for (const auto& p : n.properties) {
              if (!p.required) continue;
              if (!best[size_t(p.node)]) {
                ok = false;
                break;
              }
              s += (first ? "\"" : ",\"") + p.name + "\":" + *best[size_t(p.node)];
              first = false;
            }
            if (ok) offer(s + "}");
          }
        }
        if (cand && cand->size() > kMaxShortest)
          throw Error("schema: the shortest valid instance is longer than " + std::to_string(kMaxShortest) +
                      " bytes (minItems / minLength too large)");
        if (cand && better(best[i], *cand)) {
          best[i] = cand;
          changed = true;
        }
      }
    }
    for (size_t i = 0; i < N; ++i) {
      if (!best[i]) throw Error("schema: a recursive $ref leaves the schema without any finite instance");
      g_->nodes[i].shortest = *best[i];
    }
  }

  static constexpr int kMaxSchemaDepth = 64;
  static constexpr size_t kMaxShortest = 65536;  // bytes of a shortest instance (minItems nests multiply)
  const Json& root_;
  std::shared_ptr<JsonGrammar> g_;
  std::unordered_map<std::string, int> refs_;
  int depth_ = 0;
};

std::mutex g_cache_mu;  // compile_json_schema runs on the HTTP threads
std::unordered_map<std::string, std::shared_ptr<const JsonGrammar>> g_cache;

}  // namespace

std::shared_ptr<const JsonGrammar> compile_json_schema(const Json& schema) {
  const std::string key = schema.dump(-1, ' ', false, Json::error_handler_t::replace);
  {
    std::lock_guard<std::mutex> lk(g_cache_mu);
    if (auto it = g_cache.find(key); it != g_cache.end()) return it->second;
  }
  auto g = Compiler(schema).run();
  g->source = key;
  std::lock_guard<std::mutex> lk(g_cache_mu);
  if (g_cache.size() >= 256) g_cache.clear();
  g_cache[key] = g;
  return g;
}

std::shared_ptr<const JsonGrammar> json_object_grammar() {
  static const std::shared_ptr<const JsonGrammar> g = compile_json_schema(Json{{"type", "object"}});
  return g;
}

}  // namespace dsv4::text
