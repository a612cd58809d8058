// The embedded default model and the cached preset checkpoints: complete random-weight
// checkpoints (model/tiny_checkpoint.h weights and configs + text/embedded_tokenizer.h tokenizer)
// generated on first use, so `dsv4 serve`, `dsv4 run` and `dsv4 bench` work without --model.
#pragma once
#include <cstdint>
#include <string>

namespace dsv4::engine {

// Makes `dir` hold the checkpoint of (preset, seed), tokenizer included, unless it already does:
// generated into a temporary sibling directory and renamed into place, so the directory only ever
// appears complete and concurrent callers are safe (the loser of the rename discards its copy).
// Returns dir.
std::string ensure_preset_checkpoint(const std::string& dir, const std::string& preset, uint64_t seed);

// "The embedded default model": the tiny preset, seed 0, generated on first use into
// $DSV4_HOME, else $XDG_CACHE_HOME/dsv4, else ~/.cache/dsv4, as default-tiny-v1/. Returns the
// directory path.
std::string default_model_dir();

// The checkpoint of `preset` (seed 0) in the same cache directory, as <preset>-v1/, generated on
// first use the same way. Throws dsv4::Error for an unknown preset.
std::string preset_model_dir(const std::string& preset);

}  // namespace dsv4::engine
