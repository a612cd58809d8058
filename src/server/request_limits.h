// dsv4 server: hard limits on a request body's JSON shape, checked in one linear pass before it is
// parsed (parse_request_json calls it). A crafted body — a million keys, a million stop strings,
// a logit_bias with every token — gets a 400 naming the field instead of unbounded work.
#pragma once
#include <cstddef>
#include <string_view>

namespace dsv4::server {

struct RequestLimits {
  size_t max_depth = 128;               // nesting of objects and arrays
  size_t max_object_keys = 4096;        // members of any one object
  size_t max_array_items = 1 << 20;     // elements of any one array (token-id prompts fit)
  size_t max_logit_bias = 1024;         // entries of `logit_bias`
  size_t max_stop = 64;                 // strings in `stop` / `stop_sequences`
};

// Throws ApiError 400 (param = the field) when the body breaks a limit. Malformed JSON is left
// to the parser (its message is better); this pass only counts.
void check_request_limits(std::string_view body, const RequestLimits& lim = RequestLimits());

}  // namespace dsv4::server
