// dsv4 text: JSON Schema -> the grammar that grammar-constrained decoding follows
// (engine/json_matcher.h walks it byte by byte, engine/constraint.h turns it into token masks).
//
// The subset compiled (everything else is a dsv4::Error naming the keyword, which the server
// answers with 400: a schema is never silently loosened):
//   type (one name or a list; "nullable": true adds null), enum, const,
//   objects: properties, required, additionalProperties (false / true / a schema),
//   arrays: items, minItems, maxItems,
//   strings: minLength, maxLength (code points), format (date, time, date-time, uuid, email,
//     ipv4, uri, hostname) and pattern when the pattern is a sequence of character classes with
//     counts (`^[A-Z]{3}-\d{4}$`, `^[a-z0-9_]+$`),
//   numbers / integers: minimum, maximum, exclusiveMinimum, exclusiveMaximum (a number's range
//     must hold an integer),
//   anyOf, oneOf whose branches are provably disjoint (types, literals, or a required property with
//   different const / enum values: discriminated unions), allOf of one schema, $ref to "#", "#/$defs/X",
//   "#/definitions/X", and the annotations (title, description, default, examples, ...).
// What decoding writes is one valid instance in compact JSON: properties in schema order (optional
// ones may be left out, additional ones after the declared ones), at most one space after ':'
// and ',', no exponents, strings without \u escapes, at most kMaxFreeDepth levels of free JSON.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "text/py_json.h"

namespace dsv4::text {

// Allowed JSON types of a node (a bit set).
enum JsonTypeBit : uint8_t {
  kJsonNull = 1, kJsonBool = 2, kJsonInteger = 4, kJsonNumber = 8, kJsonString = 16, kJsonArray = 32, kJsonObject = 64,
  kJsonAny = 127,
};

// One step of a string template (format / pattern): a character class repeated min..max times.
struct StringSegment {
  uint64_t cls[2] = {0, 0};  // ASCII bit set (never '"', '\\' or a control character)
  int min = 1, max = 1;      // max -1: unbounded
  bool has(unsigned char c) const { return c < 128 && ((cls[c >> 6] >> (c & 63)) & 1); }
  unsigned char first() const;
};

struct SchemaNode {
  uint8_t types = 0;                  // kJson* bits (kJsonInteger alone: integers only)
  std::vector<std::string> literals;  // enum / const: compact JSON texts, sorted; non-empty wins
  std::vector<int> any_of;            // non-empty: one of these nodes (the rest unused)
  // string
  int min_length = 0, max_length = -1;  // code points; -1: none
  std::vector<StringSegment> segments;  // non-empty: the string follows this template
  // integer / number: the value (integer part for numbers) lies in [lo, hi]
  int64_t lo = 0, hi = 0;
  bool bounded = false;
  // array
  int items = -1;                     // node of every item
  int min_items = 0, max_items = -1;  // -1: none
  // object
  struct Property {
    std::string name;  // the key as written between the quotes (JSON-escaped)
    int node = -1;
    bool required = false;
  };
  std::vector<Property> properties;   // schema order
  int additional = -1;                // node of additional properties; -1: none allowed
  std::string shortest;               // a shortest valid instance (compact JSON)
};

struct JsonGrammar {
  static constexpr int kMaxFreeDepth = 8;       // nesting of free JSON (json_object, `{}` schemas)
  static constexpr int kMaxFreeKeyLength = 32;  // bytes of an additional property's name
  static constexpr int kMaxAdditional = 16;     // additional properties per object
  static constexpr int kMaxNumberDigits = 15;   // integer digits (exact in a double)
  static constexpr int kMaxFractionDigits = 6;
  std::vector<SchemaNode> nodes;
  int root = 0;
  int any = -1;          // "any JSON value" (free JSON)
  int bool_lits = -1;    // literal nodes the matcher uses for true/false and null
  int null_lits = -1;
  std::string source;    // the schema text it was compiled from
};

// Compiles (or returns from the process-wide cache, keyed by the schema's compact text) the
// grammar of `schema`. Throws dsv4::Error "<where>: <keyword> ..." for what it cannot enforce.
std::shared_ptr<const JsonGrammar> compile_json_schema(const Json& schema);
// Any JSON object (response_format json_object).
std::shared_ptr<const JsonGrammar> json_object_grammar();

}  // namespace dsv4::text
