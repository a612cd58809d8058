// dsv4 CLI: every subcommand lives in its own cmd_<name>.cpp and registers itself here.
// A command's callback does its work and sets the process exit code through exit_code().
#pragma once
#include <CLI/CLI.hpp>

namespace dsv4::cli {

// Exit code the current subcommand wants (0 unless set).
int& exit_code();

void register_logits(CLI::App& app);
void register_inspect(CLI::App& app);
void register_tiny(CLI::App& app);
void register_tokenize(CLI::App& app);   // tokenize + detokenize
void register_render(CLI::App& app);
void register_parse(CLI::App& app);
void register_run(CLI::App& app);
void register_kv(CLI::App& app);
void register_serve(CLI::App& app);
void register_bench(CLI::App& app);

}  // namespace dsv4::cli
