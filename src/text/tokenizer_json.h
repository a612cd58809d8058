// dsv4 text: reading tokenizer.json in one streaming pass.
//
// The file is ~8 MB, almost all of it model.vocab (128k entries) and model.merges (128k pairs).
// Building a full nlohmann DOM for those costs ~6x the CPU of the SAX pass itself (measured:
// 0.25 s vs 0.04 s), which every `dsv4 tokenize` call would pay. So vocab and merges go straight
// into flat vectors, and only the small rest of the file becomes a DOM.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv4::text {

struct TokenizerJson {
  // The whole file except the contents of model.vocab and model.merges, which are left as an
  // empty object / array (so `doc["model"].contains("vocab")` still tells whether they exist).
  nlohmann::json doc;
  std::vector<std::pair<std::string, int64_t>> vocab;  // model.vocab in file order
  // model.merges in rank order; a "a b" string entry is split at its first space after the
  // first character, an ["a", "b"] entry is taken as is.
  std::vector<std::pair<std::string, std::string>> merges;
};

// Throws dsv4::Error naming `path` when it cannot be read, is not JSON, or has a vocab value that
// is not an integer or a merges entry that is neither form.
TokenizerJson read_tokenizer_json(const std::string& path);

}  // namespace dsv4::text
