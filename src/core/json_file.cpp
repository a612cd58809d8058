#include "core/json_file.h"

#include <fstream>

#include "core/error.h"

namespace dsv4 {

nlohmann::json read_json_file(const std::string& path, const std::string& what) {
  std::ifstream f(path);
  if (!f) throw Error(path + ": cannot open " + what);
  try {
    return nlohmann::json::parse(f);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(path + ": invalid JSON: " + e.what());
  }
}

}  // namespace dsv4
