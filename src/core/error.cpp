#include "core/error.h"

namespace dsv4 {

void fail_check(const char* expr, const char* file, int line, const std::string& msg) {
  throw Error(msg + " (check '" + expr + "' failed at " + file + ":" + std::to_string(line) + ")");
}

}  // namespace dsv4
