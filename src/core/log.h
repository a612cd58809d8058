// dsv4 core: the one levelled logger. Library code says what happened (log::info("...")); the
// front end names the program once (set_prefix("dsv4 serve")) and picks the level. Each call
// writes one whole line to stderr: "<prefix>: message", warnings and errors marked
// "<prefix>: warning: ..." / "<prefix>: error: ...".
#pragma once
#include <string>

namespace dsv4::log {

enum class Level { debug, info, warn, error, off };

void set_level(Level l);
Level level();
// Parses debug | info | warn | error | off; false for anything else.
bool level_from_string(const std::string& s, Level* out);
void set_prefix(std::string prefix);  // default "dsv4"
bool enabled(Level l);

#define DSV4_PRINTF(i) __attribute__((format(printf, i, i + 1)))
void write(Level l, const char* fmt, ...) DSV4_PRINTF(2);
void debug(const char* fmt, ...) DSV4_PRINTF(1);
void info(const char* fmt, ...) DSV4_PRINTF(1);
void warn(const char* fmt, ...) DSV4_PRINTF(1);
void error(const char* fmt, ...) DSV4_PRINTF(1);
#undef DSV4_PRINTF

}  // namespace dsv4::log
