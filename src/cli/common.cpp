// Helpers shared by CLI commands (declared in cli/common.h).
#include "cli/common.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "core/error.h"

namespace dsv4::cli {

std::string read_whole_file(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open file");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_stdout(const std::string& s) {
  if (!s.empty() && std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) throw Error("cannot write to stdout");
}

model::Numerics parse_numerics(const std::string& s) {
  model::Numerics n;
  if (!model::numerics_from_string(s, &n)) throw Error("--numerics must be reference or f32, got '" + s + "'");
  return n;
}

}  // namespace dsv4::cli
