// dsv4 engine: a byte-level pushdown automaton over a JSON grammar (text/json_schema.h). It
// reads the bytes of one JSON value and says, byte by byte, whether they can still become a valid
// instance; when the value may end here; and the shortest bytes that complete it. The token-mask
// engine (engine/token_mask.h) walks candidate tokens through it.
//
// A state is a set of threads (normally one; anyOf branches that the bytes so far do not tell
// apart run side by side, at most kMaxThreads), each a stack of frames: the value being read at
// every nesting level. Every state a thread can reach has a completion (the grammar compiler
// refuses schemas without finite instances), so decoding never walks into a dead end.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "text/json_schema.h"

namespace dsv4::engine {

// One nesting level. Plain data, so a state copies with one memcpy per thread.
struct JsonFrame {
  enum Kind : uint8_t { root, value, object, array, string, number, literal };
  Kind kind = root;
  uint8_t phase = 0;
  uint8_t space = 0;     // object / array: the one optional space was used
  uint8_t esc = 0;       // string: after a backslash
  uint8_t pending = 0;   // string: UTF-8 continuation bytes still due
  uint8_t lo2 = 0x80, hi2 = 0xbf;  // string: range of the next continuation byte
  uint8_t neg = 0;       // number
  uint8_t free = 0;      // object key: an additional property's name is still possible
  int32_t node = -1;
  int32_t a = 0;         // string: code points; array: items; object: next property; literal: lo
  int32_t b = 0;         // literal: hi; object: key bytes; number: digits; string: template segment
  int32_t c = 0;         // literal: pos; object: value node; number: fraction digits; string: segment count
  int32_t d = 0;         // object: additional properties so far
  int64_t m = 0;         // number: magnitude of the integer part
  uint64_t cand = 0;     // object key: declared properties the key still matches (window)
  uint64_t all = 0;      // object key: declared properties the key still matches (any)
  bool operator==(const JsonFrame&) const = default;
};

struct JsonState {
  std::vector<JsonFrame> frames;   // the threads' stacks, one after another
  std::vector<uint32_t> ends;      // end of each thread in frames
  bool empty() const { return ends.empty(); }
};

class JsonMatcher {
 public:
  static constexpr size_t kMaxThreads = 8;
  explicit JsonMatcher(std::shared_ptr<const text::JsonGrammar> g);

  // The state before the first byte of a value of `node` (-1: the grammar's root).
  JsonState initial(int node = -1) const;
  // out = in after byte c; false (out empty) when no thread accepts c. `out` must not be `in`.
  bool feed(const JsonState& in, unsigned char c, JsonState& out) const;
  // The value is complete (or, for a trailing number or literal, may end here).
  bool can_finish(const JsonState& s) const;
  bool finished(const JsonState& s) const;  // complete, nothing more may follow
  // Shortest bytes that complete the value from s (empty when s can finish).
  std::string completion(const JsonState& s) const;
  // The single thread's top frame when it is inside a free string: the code points it may still
  // take (-1: unbounded); -2 otherwise. (The mask engine allows plain string tokens in bulk.)
  int free_string_room(const JsonState& s) const;
  // Likewise inside an additional property's name: bytes it may still take, or -2.
  int free_key_room(const JsonState& s) const;

  const text::JsonGrammar& grammar() const { return *g_; }

 private:
  using Thread = std::vector<JsonFrame>;
  void step(Thread& t, unsigned char c, JsonState& out, int depth_guard) const;
  void child_done(Thread& t) const;
  bool ends_here(const JsonFrame& f) const;  // a number / literal that may end without a byte
  bool number_viable(const text::SchemaNode& n, bool neg, int64_t m, int nd) const;
  bool key_start(JsonFrame& f) const;
  std::string frame_completion(const Thread& t, size_t i, bool top) const;
  std::string object_rest(const JsonFrame& f, bool comma_first) const;
  static void push_thread(const Thread& t, JsonState& out);

  std::shared_ptr<const text::JsonGrammar> g_;
};

}  // namespace dsv4::engine
