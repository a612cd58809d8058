// The tokenizer compiled into dsv4 (the DeepSeek-V3 files of assets/tokenizer, .incbin at build
// time) and the V4 tokenizer written from it for random-weight checkpoints (`dsv4 tiny`, the
// embedded default model): V4's added tokens over V3's vocabulary (text/tokenizer.h
// write_v4_tokenizer).
#pragma once
#include <string>
#include <string_view>

namespace dsv4::text {

// The embedded DeepSeek-V3 tokenizer files; empty when the build had no assets.
std::string_view embedded_v3_tokenizer_json();
std::string_view embedded_v3_tokenizer_config_json();

// Writes tokenizer.json + tokenizer_config.json (V4 added tokens over the embedded V3 files) into
// out_dir, each renamed into place complete. Throws dsv4::Error naming the file.
void write_embedded_v4_tokenizer(const std::string& out_dir);

}  // namespace dsv4::text
