// `dsv4 parse`: one raw assistant completion -> the parsed message.
//
//   dsv4 parse --model DIR (--thinking | --chat) [--stop S]... < COMPLETION
//     Prints {"role","content","reasoning_content","tool_calls":[{"type","function":{"name",
//     "arguments"}}]} as JSON and exits 0. For text the official parser rejects, prints the
//     best-effort message plus "error": {"type", "message"} and exits 2. The text goes through the
//     streaming parser (the same code the server runs), fed in one piece; --stop applies stop
//     strings to the answer text. --model is accepted for symmetry with the other commands; the
//     parser needs no model files.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "text/output_parser.h"

namespace dsv4::cli {
namespace {

struct ParseArgs {
  std::string model;
  bool thinking = false, chat = false;
  std::vector<std::string> stop;
};

void run_parse(const ParseArgs& a) {
  if (a.thinking && a.chat) throw Error("parse: give only one of --thinking and --chat");
  std::string completion(std::istreambuf_iterator<char>(std::cin), {});

  text::OutputParserOptions opt;
  opt.thinking = !a.chat;
  opt.stop = a.stop;
  text::OutputParser parser(opt);
  std::vector<text::ParseEvent> events;
  parser.push(completion, false, events);
  parser.finish(events);

  text::Json out = text::parsed_message_to_json(parser.message());
  if (parser.error()) {
    out["error"] = {{"type", parser.error()->type}, {"message", parser.error()->message}};
    exit_code() = 2;
  }
  std::string s = out.dump(1, ' ', false, text::Json::error_handler_t::replace);
  s += '\n';
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) throw Error("cannot write to stdout");
}

}  // namespace

void register_parse(CLI::App& app) {
  auto args = std::make_shared<ParseArgs>();
  CLI::App* cmd = app.add_subcommand("parse", "Parse a raw completion (stdin) into reasoning, content and tool calls");
  cmd->add_option("--model", args->model, "Model dir");
  auto* th = cmd->add_flag("--thinking", args->thinking, "Completion of a thinking-mode prompt (default)");
  auto* ch = cmd->add_flag("--chat", args->chat, "Completion of a chat-mode prompt");
  th->excludes(ch);
  cmd->add_option("--stop", args->stop, "Stop string applied to the answer text (repeatable)");
  cmd->callback([args] { run_parse(*args); });
}

}  // namespace dsv4::cli
