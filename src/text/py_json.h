// dsv4 text: JSON read and written the way Python's `json` module does it.
//
// The official V4 encoder (`encoding_dsv4.py`) serialises tool schemas, `response_format` and
// tool-call arguments with `json.dumps(value, ensure_ascii=False)` after the request went through
// `json.loads`. The rendered prompt must match it byte for byte (KV-prefix reuse between turns and
// the golden prompts depend on it), so this file reproduces both halves:
//   * parse_py_json: Python's `json.loads`: integers of any size stay exact, floats are doubles,
//     `NaN` / `Infinity` / `-Infinity` literals are accepted, a repeated key keeps its first
//     position and its last value.
//   * py_json_dumps: `json.dumps(ensure_ascii=False)` with the default separators `", "` and
//     `": "`, non-ASCII written raw, control characters as `\u00XX` (lowercase hex), floats in
//     Python `repr` form (`1000.0`, `1e-07`, `1.5e+300`, `-0.0`).
// nlohmann's own parser turns integers beyond 64 bits into doubles, so those are stored here as a
// binary value tagged kBigIntSubtype holding the decimal digits (see make_py_big_int).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace dsv4::text {

using Json = nlohmann::ordered_json;

// The member `key` of a JSON object: nullptr when obj is not an object or the key is absent or
// null (JSON null and a missing key mean the same to every request field we read).
inline const Json* json_member(const Json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

// Binary subtype that marks an integer too large for int64/uint64 (its decimal text as bytes).
inline constexpr std::uint64_t kBigIntSubtype = 0x7079;  // "py"

// Python `json.loads`. Throws dsv4::Error "<what>: invalid JSON at byte N: <reason>".
Json parse_py_json(std::string_view text, std::string_view what = "JSON");
// Same, without throwing: false when `text` is not JSON Python would accept.
bool try_parse_py_json(std::string_view text, Json* out);

// Python `json.dumps(value, ensure_ascii=False)`.
std::string py_json_dumps(const Json& value);
void py_json_dump_to(std::string& out, const Json& value);
// `json.dumps(s, ensure_ascii=False)` of one string: quotes included.
std::string py_json_quote(std::string_view s);
// The escaped body of a JSON string, without the quotes (usable on any slice of UTF-8 bytes:
// only ASCII bytes are ever escaped).
void py_json_escape_to(std::string& out, std::string_view s);

// Python `repr(float)` (shortest round-trip digits, Python's layout); `NaN`, `Infinity` and
// `-Infinity` as `json.dumps` writes them.
std::string py_float_repr(double d);

// Big integers (beyond 64 bits) as parse_py_json stores them.
Json make_py_big_int(std::string_view decimal_digits);
bool is_py_big_int(const Json& v);
std::string py_big_int_text(const Json& v);

}  // namespace dsv4::text
