// `dsv4 tokenize` and `dsv4 detokenize`: the tokenizer from the command line.
//
//   dsv4 tokenize --model DIR (--text S | --text-file F | --jsonl F) [--specials]
//     prints one JSON array of ids per input (no BOS); --jsonl reads {"text": ...} lines and
//     prints one array per line, in order. Plain encoding unless --specials (added-token
//     spellings become their ids, like HF encode(add_special_tokens=False)).
//   dsv4 detokenize --model DIR --ids '[...]'
//     prints the decoded text exactly (a newline is added only when stdout is a terminal).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "text/tokenizer.h"

namespace dsv4::cli {

namespace {

struct TokenizeArgs {
  std::string model, text, text_file, jsonl;
  bool specials = false;
};

struct DetokenizeArgs {
  std::string model, ids;
};

void append_ids_line(const std::vector<int32_t>& ids, std::string* out) {
  out->push_back('[');
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out->push_back(',');
    out->append(std::to_string(ids[i]));
  }
  out->append("]\n");
}

void run_tokenize(const TokenizeArgs& a, const CLI::App& cmd) {
  const bool has_text = cmd.count("--text") > 0;
  const bool has_file = cmd.count("--text-file") > 0;
  const bool has_jsonl = cmd.count("--jsonl") > 0;
  if (int(has_text) + int(has_file) + int(has_jsonl) != 1)
    throw Error("tokenize: give exactly one of --text, --text-file, --jsonl");
  text::Tokenizer tok = text::Tokenizer::load(a.model);
  auto encode = [&](std::string_view s) {
    return a.specials ? tok.encode_with_specials(s) : tok.encode_plain(s);
  };
  std::string out;
  if (has_text) {
    append_ids_line(encode(a.text), &out);
  } else if (has_file) {
    append_ids_line(encode(read_whole_file(a.text_file)), &out);
  } else {
    std::ifstream f(a.jsonl, std::ios::binary);
    if (!f) throw Error(a.jsonl + ": cannot open file");
    std::string line;
    for (size_t lineno = 1; std::getline(f, line); ++lineno) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        throw Error(a.jsonl + ":" + std::to_string(lineno) + ": bad JSON: " + e.what());
      }
      if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
        throw Error(a.jsonl + ":" + std::to_string(lineno) + ": expected an object with a string \"text\"");
      append_ids_line(encode(j["text"].get_ref<const std::string&>()), &out);
      if (out.size() > (1u << 20)) {
        write_stdout(out);
        out.clear();
      }
    }
  }
  write_stdout(out);
}

void run_detokenize(const DetokenizeArgs& a) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(a.ids);
  } catch (const nlohmann::json::exception& e) {
    throw Error("detokenize: --ids is not JSON: " + std::string(e.what()));
  }
  if (!j.is_array()) throw Error("detokenize: --ids must be a JSON array of token ids");
  text::Tokenizer tok = text::Tokenizer::load(a.model);
  std::vector<int32_t> ids;
  for (const auto& v : j) {
    if (!v.is_number_integer()) throw Error("detokenize: token ids must be integers, got " + v.dump());
    int64_t x = v.get<int64_t>();
    if (x < 0 || x >= int64_t(tok.vocab_size()))
      throw Error("detokenize: token id " + std::to_string(x) + " is out of range [0, " +
                  std::to_string(tok.vocab_size()) + ") of " + tok.source());
    if (tok.token_piece(int32_t(x)).empty())
      throw Error("detokenize: token id " + std::to_string(x) + " has no token in " + tok.source());
    ids.push_back(int32_t(x));
  }
  std::string text = tok.decode(ids);
  if (isatty(fileno(stdout))) text.push_back('\n');
  write_stdout(text);
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto targs = std::make_shared<TokenizeArgs>();
  CLI::App* t = app.add_subcommand("tokenize", "Print token ids of text as a JSON array (no BOS)");
  t->add_option("--model", targs->model, "Model or tokenizer dir (with tokenizer.json)")->required();
  auto* o_text = t->add_option("--text", targs->text, "Text to encode");
  auto* o_file = t->add_option("--text-file", targs->text_file, "File whose whole content is encoded");
  auto* o_jsonl = t->add_option("--jsonl", targs->jsonl, "File of {\"text\": ...} lines; one array per line");
  o_text->excludes(o_file)->excludes(o_jsonl);
  o_file->excludes(o_jsonl);
  t->add_flag("--specials", targs->specials,
              "Turn added-token spellings (<｜User｜>, <think>, ...) into their ids (default: plain text)");
  t->callback([targs, t] { run_tokenize(*targs, *t); });

  auto dargs = std::make_shared<DetokenizeArgs>();
  CLI::App* d = app.add_subcommand("detokenize", "Print the text of a JSON array of token ids");
  d->add_option("--model", dargs->model, "Model or tokenizer dir (with tokenizer.json)")->required();
  d->add_option("--ids", dargs->ids, "JSON array of token ids, e.g. '[19923,2058]'")->required();
  d->callback([dargs] { run_detokenize(*dargs); });
}

}  // namespace dsv4::cli
