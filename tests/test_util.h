// Shared helpers for tests: where golden data and the dsv4 binary are.
#pragma once
#include <string>

namespace dsv4::test {

// ../shared/testdata (overridable with DSV4_TESTDATA). Golden data is read in place.
std::string testdata_path(const std::string& rel = "");
// ../shared/assets (overridable with DSV4_ASSETS).
std::string assets_path(const std::string& rel = "");
// Path of the built dsv4 CLI (overridable with DSV4_BINARY).
std::string dsv4_binary();
// Runs a shell command, returns exit status; stdout+stderr captured into *out when given.
int run_command(const std::string& cmd, std::string* out = nullptr);
// The same with stdout alone captured (stderr, e.g. log lines, dropped): for output that is parsed.
int run_command_stdout(const std::string& cmd, std::string* out);
// A fresh temporary directory (removed by the OS / caller).
std::string make_temp_dir(const std::string& prefix = "dsv4test");
std::string read_file(const std::string& path);

}  // namespace dsv4::test
