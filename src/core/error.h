// dsv4 core: the one error type and the always-on checks (STYLE.md "Errors").
#pragma once
#include <stdexcept>
#include <string>

namespace dsv4 {

// Cold paths (config, loader, tokenizer files, request parsing) throw Error naming the file,
// tensor or key, and expected versus got. Front ends catch it at the boundary.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

[[noreturn]] void fail_check(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace dsv4

// Always on: guards shapes and dtypes at op entry. Throws dsv4::Error (never aborts).
#define DSV4_CHECK(cond, msg)                                                   \
  do {                                                                          \
    if (!(cond)) ::dsv4::fail_check(#cond, __FILE__, __LINE__, (msg));          \
  } while (0)

#ifndef NDEBUG
#define DSV4_DCHECK(cond, msg) DSV4_CHECK(cond, msg)
#else
#define DSV4_DCHECK(cond, msg) \
  do {                         \
  } while (0)
#endif
