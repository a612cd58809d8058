// dsv4 core: reading a JSON file with errors that name the file (config.json, the shard index,
// expert maps, token files).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace dsv4 {

// The parsed contents of `path`. Throws Error "<path>: cannot open <what>" or
// "<path>: invalid JSON: <parser message>".
nlohmann::json read_json_file(const std::string& path, const std::string& what);

}  // namespace dsv4
