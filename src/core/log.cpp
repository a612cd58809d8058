#include "core/log.h"

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <mutex>

namespace dsv4::log {

namespace {
std::atomic<Level> g_level{Level::info};
std::mutex g_mu;  // guards the prefix and keeps lines whole
std::string g_prefix = "dsv4";
}  // namespace

void set_level(Level l) { g_level = l; }
Level level() { return g_level; }
bool enabled(Level l) { return l != Level::off && l >= g_level.load(); }

bool level_from_string(const std::string& s, Level* out) {
  static const std::pair<const char*, Level> names[] = {
      {"debug", Level::debug}, {"info", Level::info}, {"warn", Level::warn}, {"error", Level::error}, {"off", Level::off}};
  for (const auto& [n, l] : names)
    if (s == n) {
      *out = l;
      return true;
    }
  return false;
}

void set_prefix(std::string prefix) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_prefix = std::move(prefix);
}

namespace {
void vwrite(Level l, const char* fmt, va_list ap) {
  if (!enabled(l)) return;
  char buf[4096];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  const char* mark = l == Level::warn ? "warning: " : l == Level::error ? "error: " : "";
  std::lock_guard<std::mutex> lk(g_mu);
  std::fprintf(stderr, "%s: %s%s\n", g_prefix.c_str(), mark, buf);
  std::fflush(stderr);
}
}  // namespace

void write(Level l, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vwrite(l, fmt, ap);
  va_end(ap);
}

#define DSV4_LOG_FN(name, lvl)          \
  void name(const char* fmt, ...) {     \
    va_list ap;                         \
    va_start(ap, fmt);                  \
    vwrite(lvl, fmt, ap);               \
    va_end(ap);                         \
  }
DSV4_LOG_FN(debug, Level::debug)
DSV4_LOG_FN(info, Level::info)
DSV4_LOG_FN(warn, Level::warn)
DSV4_LOG_FN(error, Level::error)
#undef DSV4_LOG_FN

}  // namespace dsv4::log
