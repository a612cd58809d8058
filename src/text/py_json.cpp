// dsv4 text: Python-compatible JSON parse and dump (see py_json.h for why this exists).
#include "text/py_json.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <unordered_map>
#include <vector>

#include "core/error.h"

namespace dsv4::text {

// ---------------------------------------------------------------------------------------------
// Parsing: a recursive-descent reader with the grammar of Python's json.scanner / json.decoder
// (strict mode, the default of json.loads).
// ---------------------------------------------------------------------------------------------
namespace {

// Python raises RecursionError somewhere below ~1000 levels; stop well before the C++ stack.
constexpr int kMaxDepth = 1000;

struct ParseFailure {
  size_t pos;
  const char* reason;
};

void append_utf8(std::string& out, uint32_t cp) {
  // Lone surrogates (allowed by Python's \u escapes) come out as 3-byte sequences (WTF-8).
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class PyJsonReader {
 public:
  explicit PyJsonReader(std::string_view s) : s_(s) {}

  Json read_document() {
    skip_ws();
    Json v = read_value(0);
    skip_ws();
    if (i_ != s_.size()) throw ParseFailure{i_, "extra data"};
    return v;
  }

 private:
  std::string_view s_;
  size_t i_ = 0;

  bool at_end() const { return i_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[i_]; }
  void skip_ws() {
    while (!at_end() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool consume_literal(std::string_view lit) {
    if (s_.substr(i_, lit.size()) != lit) return false;
    i_ += lit.size();
    return true;
  }

  Json read_value(int depth) {
    if (depth > kMaxDepth) throw ParseFailure{i_, "nesting too deep"};
    if (at_end()) throw ParseFailure{i_, "expecting value"};
    char c = s_[i_];
    switch (c) {
      case '{': return read_object(depth);
      case '[': return read_array(depth);
      case '"': return Json(read_string());
      default: break;
    }
    if (consume_literal("null")) return Json(nullptr);
    if (consume_literal("true")) return Json(true);
    if (consume_literal("false")) return Json(false);
    if (consume_literal("NaN")) return Json(std::numeric_limits<double>::quiet_NaN());
    if (consume_literal("Infinity")) return Json(std::numeric_limits<double>::infinity());
    if (consume_literal("-Infinity")) return Json(-std::numeric_limits<double>::infinity());
    if (c == '-' || (c >= '0' && c <= '9')) return read_number();
    throw ParseFailure{i_, "expecting value"};
  }

  Json read_object(int depth) {
    ++i_;  // '{'
    Json obj = Json::object();
    skip_ws();
    if (peek() == '}') {
      ++i_;
      return obj;
    }
    // ordered_json's operator[] looks a key up linearly: N keys cost O(N^2) (a 1 MiB body of
    // small keys took seconds). Members are appended directly; repeated keys are found through a
    // hash index once the object is larger than a few keys.
    auto& members = static_cast<std::vector<Json::object_t::value_type>&>(obj.get_ref<Json::object_t&>());
    std::unordered_map<std::string, size_t> index;
    constexpr size_t kLinear = 16;
    for (;;) {
      if (peek() != '"') throw ParseFailure{i_, "expecting property name enclosed in double quotes"};
      std::string key = read_string();
      skip_ws();
      if (peek() != ':') throw ParseFailure{i_, "expecting ':' delimiter"};
      ++i_;
      skip_ws();
      Json v = read_value(depth + 1);
      // dict semantics: a repeated key keeps its first position and takes the last value.
      size_t at = members.size();
      if (members.size() <= kLinear) {
        for (size_t k = 0; k < members.size(); ++k)
          if (members[k].first == key) {
            at = k;
            break;
          }
      } else {
        if (index.empty())
          for (size_t k = 0; k < members.size(); ++k) index.emplace(members[k].first, k);
        auto [it, fresh] = index.emplace(key, members.size());
        if (!fresh) at = it->second;
      }
      if (at < members.size()) members[at].second = std::move(v);
      else members.emplace_back(std::move(key), std::move(v));
      skip_ws();
      if (peek() == '}') {
        ++i_;
        return obj;
      }
      if (peek() != ',') throw ParseFailure{i_, "expecting ',' delimiter"};
      ++i_;
      skip_ws();
    }
  }

  Json read_array(int depth) {
    ++i_;  // '['
    Json arr = Json::array();
    skip_ws();
    if (peek() == ']') {
      ++i_;
      return arr;
    }
    for (;;) {
      arr.push_back(read_value(depth + 1));
      skip_ws();
      if (peek() == ']') {
        ++i_;
        return arr;
      }
      if (peek() != ',') throw ParseFailure{i_, "expecting ',' delimiter"};
      ++i_;
      skip_ws();
    }
  }

  int hex4(size_t at) const {
    if (at + 4 > s_.size()) return -1;
    int v = 0;
    for (size_t k = 0; k < 4; ++k) {
      char h = s_[at + k];
      int d;
      if (h >= '0' && h <= '9') d = h - '0';
      else if (h >= 'a' && h <= 'f') d = h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') d = h - 'A' + 10;
      else return -1;
      v = v * 16 + d;
    }
    return v;
  }

  std::string read_string() {
    ++i_;  // opening quote
    std::string out;
    for (;;) {
      if (at_end()) throw ParseFailure{i_, "unterminated string"};
      unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) throw ParseFailure{i_, "invalid control character in string"};
      if (c != '\\') {
        out += static_cast<char>(c);
        ++i_;
        continue;
      }
      ++i_;
      if (at_end()) throw ParseFailure{i_, "unterminated string"};
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          int u = hex4(i_);
          if (u < 0) throw ParseFailure{i_, "invalid \\uXXXX escape"};
          i_ += 4;
          uint32_t cp = static_cast<uint32_t>(u);
          if (cp >= 0xD800 && cp <= 0xDBFF && s_.substr(i_, 2) == "\\u") {
            int lo = hex4(i_ + 2);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (static_cast<uint32_t>(lo) - 0xDC00);
              i_ += 6;
            }
          }
          append_utf8(out, cp);
          break;
        }
        default: throw ParseFailure{i_ - 1, "invalid escape"};
      }
    }
  }

  // NUMBER_RE of json.scanner: (-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?
  Json read_number() {
    size_t start = i_;
    if (peek() == '-') ++i_;
    if (peek() == '0') {
      ++i_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++i_;
    } else {
      throw ParseFailure{start, "expecting value"};
    }
    bool is_float = false;
    if (peek() == '.' && i_ + 1 < s_.size() && s_[i_ + 1] >= '0' && s_[i_ + 1] <= '9') {
      is_float = true;
      ++i_;
      while (peek() >= '0' && peek() <= '9') ++i_;
    }
    if (peek() == 'e' || peek() == 'E') {
      size_t save = i_;
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      if (peek() >= '0' && peek() <= '9') {
        is_float = true;
        while (peek() >= '0' && peek() <= '9') ++i_;
      } else {
        i_ = save;  // not part of the number; the caller will reject what follows
      }
    }
    std::string_view lex = s_.substr(start, i_ - start);
    if (is_float) {
      double d = 0;
      auto r = std::from_chars(lex.data(), lex.data() + lex.size(), d);
      if (r.ec == std::errc::result_out_of_range) {
        std::string tmp(lex);
        d = std::strtod(tmp.c_str(), nullptr);  // +-HUGE_VAL (= inf) or the correctly rounded tiny value
      }
      return Json(d);
    }
    int64_t iv = 0;
    auto r = std::from_chars(lex.data(), lex.data() + lex.size(), iv);
    if (r.ec == std::errc() && r.ptr == lex.data() + lex.size()) return Json(iv);
    if (lex[0] != '-') {
      uint64_t uv = 0;
      auto ru = std::from_chars(lex.data(), lex.data() + lex.size(), uv);
      if (ru.ec == std::errc() && ru.ptr == lex.data() + lex.size()) return Json(uv);
    }
    return make_py_big_int(lex);
  }
};

}  // namespace

Json parse_py_json(std::string_view text, std::string_view what) {
  try {
    return PyJsonReader(text).read_document();
  } catch (const ParseFailure& f) {
    throw Error(std::string(what) + ": invalid JSON at byte " + std::to_string(f.pos) + ": " + f.reason);
  }
}

bool try_parse_py_json(std::string_view text, Json* out) {
  try {
    Json v = PyJsonReader(text).read_document();
    if (out) *out = std::move(v);
    return true;
  } catch (const ParseFailure&) {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Big integers
// ---------------------------------------------------------------------------------------------

Json make_py_big_int(std::string_view decimal_digits) {
  std::vector<std::uint8_t> bytes(decimal_digits.begin(), decimal_digits.end());
  return Json::binary(std::move(bytes), kBigIntSubtype);
}

bool is_py_big_int(const Json& v) {
  return v.is_binary() && v.get_binary().has_subtype() && v.get_binary().subtype() == kBigIntSubtype;
}

std::string py_big_int_text(const Json& v) {
  const auto& b = v.get_binary();
  return std::string(b.begin(), b.end());
}

// ---------------------------------------------------------------------------------------------
// Dumping: json.dumps(ensure_ascii=False)
// ---------------------------------------------------------------------------------------------

std::string py_float_repr(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  // Shortest round-trip digits (ties resolved toward the closest value, as Python's dtoa mode 0).
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(r.ptr - buf));  // "-d.ddde+XX"
  std::string out;
  size_t k = 0;
  if (sci[k] == '-') {
    out += '-';
    ++k;
  }
  std::string digits;
  while (k < sci.size() && sci[k] != 'e') {
    if (sci[k] != '.') digits += sci[k];
    ++k;
  }
  int exp10 = 0;
  std::from_chars(sci.data() + k + 1 + (sci[k + 1] == '+' ? 1 : 0), sci.data() + sci.size(), exp10);
  int decpt = exp10 + 1;  // value = 0.DIGITS * 10^decpt
  int nd = static_cast<int>(digits.size());
  if (decpt <= -4 || decpt > 16) {
    // Python: d[.ddd]e[+-]XX, exponent with at least two digits.
    out += digits[0];
    if (nd > 1) {
      out += '.';
      out.append(digits, 1, std::string::npos);
    }
    out += 'e';
    int e = decpt - 1;
    out += e < 0 ? '-' : '+';
    int ae = e < 0 ? -e : e;
    if (ae < 10) out += '0';
    out += std::to_string(ae);
  } else if (decpt <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-decpt), '0');
    out += digits;
  } else if (decpt < nd) {
    out.append(digits, 0, static_cast<size_t>(decpt));
    out += '.';
    out.append(digits, static_cast<size_t>(decpt), std::string::npos);
  } else {
    out += digits;
    out.append(static_cast<size_t>(decpt - nd), '0');
    out += ".0";
  }
  return out;
}

void py_json_escape_to(std::string& out, std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += ch;
        }
    }
  }
}

std::string py_json_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  py_json_escape_to(out, s);
  out += '"';
  return out;
}

void py_json_dump_to(std::string& out, const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: out += "null"; return;
    case Json::value_t::boolean: out += v.get<bool>() ? "true" : "false"; return;
    case Json::value_t::number_integer: out += std::to_string(v.get<int64_t>()); return;
    case Json::value_t::number_unsigned: out += std::to_string(v.get<uint64_t>()); return;
    case Json::value_t::number_float: out += py_float_repr(v.get<double>()); return;
    case Json::value_t::string: {
      out += '"';
      py_json_escape_to(out, v.get_ref<const std::string&>());
      out += '"';
      return;
    }
    case Json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ", ";
        first = false;
        py_json_dump_to(out, e);
      }
      out += ']';
      return;
    }
    case Json::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.items()) {
        if (!first) out += ", ";
        first = false;
        out += '"';
        py_json_escape_to(out, k);
        out += "\": ";
        py_json_dump_to(out, e);
      }
      out += '}';
      return;
    }
    case Json::value_t::binary:
      if (is_py_big_int(v)) {
        out += py_big_int_text(v);
        return;
      }
      throw Error("py_json_dumps: binary JSON values have no Python form");
    case Json::value_t::discarded: throw Error("py_json_dumps: discarded JSON value");
  }
}

std::string py_json_dumps(const Json& v) {
  std::string out;
  py_json_dump_to(out, v);
  return out;
}

}  // namespace dsv4::text
