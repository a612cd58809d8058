#include "server/request_limits.h"

#include <string>
#include <vector>

#include "server/api.h"

namespace dsv4::server {

void check_request_limits(std::string_view s, const RequestLimits& lim) {
  struct Level {
    bool object;
    size_t count = 0;
    std::string field;  // the top-level member this container belongs to ("" at the top)
  };
  std::vector<Level> stack;
  std::string last_key;     // the most recent object key at depth 1 (a top-level member name)
  bool expect_key = false;  // in an object, before ':'
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    switch (c) {
      case '"': {
        // Skip the string; remember it when it is a top-level key.
        const size_t start = ++i;
        while (i < s.size() && s[i] != '"') i += s[i] == '\\' ? 2 : 1;
        if (expect_key && stack.size() == 1) last_key.assign(s.substr(start, i - start));
        break;
      }
      case '{':
      case '[': {
        if (stack.size() >= lim.max_depth)
          throw bad_request("request body: JSON nested deeper than " + std::to_string(lim.max_depth) + " levels");
        Level l{c == '{', 0, stack.size() == 1 ? last_key : stack.empty() ? "" : stack.back().field};
        stack.push_back(std::move(l));
        expect_key = c == '{';
        break;
      }
      case '}':
      case ']':
        if (!stack.empty()) stack.pop_back();
        expect_key = false;
        break;
      case ':':
        expect_key = false;
        break;
      case ',':
        if (stack.empty()) break;
        {
          Level& l = stack.back();
          ++l.count;  // counts separators: members/items = count + 1
          const size_t n = l.count + 1;
          const bool top_member = stack.size() == 2;
          if (l.object) {
            if (top_member && l.field == "logit_bias" && n > lim.max_logit_bias)
              throw bad_request("logit_bias: at most " + std::to_string(lim.max_logit_bias) + " entries", "logit_bias");
            if (n > lim.max_object_keys)
              throw bad_request((l.field.empty() ? std::string("request body") : l.field) + ": an object with more than " +
                                    std::to_string(lim.max_object_keys) + " keys",
                                l.field);
            expect_key = true;
          } else {
            if (top_member && (l.field == "stop" || l.field == "stop_sequences") && n > lim.max_stop)
              throw bad_request(l.field + ": at most " + std::to_string(lim.max_stop) + " stop strings", l.field);
            if (n > lim.max_array_items)
              throw bad_request((l.field.empty() ? std::string("request body") : l.field) + ": an array with more than " +
                                    std::to_string(lim.max_array_items) + " items",
                                l.field);
          }
        }
        break;
      default:
        break;
    }
  }
}

}  // namespace dsv4::server
