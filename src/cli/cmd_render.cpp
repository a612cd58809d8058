// `dsv4 render`: a chat request rendered into the DeepSeek-V4 prompt.
//
//   dsv4 render --model DIR --request REQ.json [--ids] [--effort-table auto|v4|v4-0731]
//     REQ.json is a chat-completions body (messages, tools, response_format, reasoning_effort,
//     thinking as a boolean or {"type": "enabled"|"disabled"}, optional drop_thinking); "-" reads
//     stdin. Prints the exact prompt bytes with no trailing newline, or with --ids the token ids
//     as one JSON array (control tokens by id, text runs through the tokenizer without added-token
//     matching: testdata/encoding/README.md "Token id policy").
//     The model dir picks the reasoning-effort table (EffortTable::for_model_dir) and, for --ids,
//     the tokenizer; the prompt string itself never depends on tokenizer files.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace dsv4::cli {
namespace {

struct RenderArgs {
  std::string model, request, effort_table = "auto";
  bool ids = false;
};

void run_render(const RenderArgs& a) {
  std::string body = read_whole_file(a.request);
  if (body.size() >= 3 && body.compare(0, 3, "\xEF\xBB\xBF") == 0) body.erase(0, 3);  // UTF-8 BOM
  text::Json req_json = text::parse_py_json(body, a.request);
  text::ChatRequest req = text::chat_request_from_openai(req_json);
  req.options.effort_table = &text::EffortTable::from_flag(a.effort_table, a.model);
  std::vector<text::PromptSegment> segs = text::render_prompt_segments(req);
  if (!a.ids) {
    write_stdout(text::segments_to_string(segs));
    return;
  }
  text::Tokenizer tok = text::Tokenizer::load(a.model);
  std::vector<int32_t> ids =
      text::segments_to_ids(segs, [&](std::string_view s) { return tok.encode_plain(s); });
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  out += "]\n";
  write_stdout(out);
}

}  // namespace

void register_render(CLI::App& app) {
  auto args = std::make_shared<RenderArgs>();
  CLI::App* cmd = app.add_subcommand("render", "Render a chat request into the DeepSeek-V4 prompt");
  cmd->add_option("--model", args->model, "Model dir (tokenizer for --ids, reasoning-effort table)")->required();
  cmd->add_option("--request", args->request, "Chat-completions request JSON file ('-' = stdin)")->required();
  cmd->add_flag("--ids", args->ids, "Print token ids (JSON array) instead of the prompt text");
  cmd->add_option("--encoder,--effort-table", args->effort_table, "prompt encoder (reasoning-effort table): auto (from the checkpoint), v4 or v4-0731")
      ->capture_default_str();
  cmd->callback([args] { run_render(*args); });
}

}  // namespace dsv4::cli
