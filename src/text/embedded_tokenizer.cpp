// The DeepSeek-V3 tokenizer files, compiled into the library so that `dsv4 tiny` and the
// embedded default model never read ../shared at run time (see embedded_tokenizer.h). The assembler pulls the bytes in
// with .incbin; CMake passes the directory (DSV4_EMBED_TOKENIZER_DIR) and makes this object
// depend on the two files. Without the assets the accessors return empty views.
#include "text/embedded_tokenizer.h"

#include <filesystem>
#include <fstream>
#include <string_view>

#include "core/error.h"
#include "core/temp_name.h"
#include "text/tokenizer.h"

#ifdef DSV4_EMBED_TOKENIZER_DIR
// Each blob is followed by its end label; sizes are end - start. .previous restores the section.
__asm__(
    ".pushsection .rodata.dsv4_assets,\"a\",@progbits\n"
    ".balign 16\n"
    "dsv4_v3_tokenizer_json_begin:\n"
    ".incbin \"" DSV4_EMBED_TOKENIZER_DIR "/tokenizer.json\"\n"
    "dsv4_v3_tokenizer_json_end:\n"
    ".balign 16\n"
    "dsv4_v3_tokenizer_config_begin:\n"
    ".incbin \"" DSV4_EMBED_TOKENIZER_DIR "/tokenizer_config.json\"\n"
    "dsv4_v3_tokenizer_config_end:\n"
    ".popsection\n");

extern "C" {
// Hidden: the labels are local to this object, so the compiler must address them directly.
#define DSV4_ASSET extern __attribute__((visibility("hidden"))) const char
DSV4_ASSET dsv4_v3_tokenizer_json_begin[] __asm__("dsv4_v3_tokenizer_json_begin");
DSV4_ASSET dsv4_v3_tokenizer_json_end[] __asm__("dsv4_v3_tokenizer_json_end");
DSV4_ASSET dsv4_v3_tokenizer_config_begin[] __asm__("dsv4_v3_tokenizer_config_begin");
DSV4_ASSET dsv4_v3_tokenizer_config_end[] __asm__("dsv4_v3_tokenizer_config_end");
#undef DSV4_ASSET
}
#endif

namespace dsv4::text {

std::string_view embedded_v3_tokenizer_json() {
#ifdef DSV4_EMBED_TOKENIZER_DIR
  return {dsv4_v3_tokenizer_json_begin, size_t(dsv4_v3_tokenizer_json_end - dsv4_v3_tokenizer_json_begin)};
#else
  return {};
#endif
}

std::string_view embedded_v3_tokenizer_config_json() {
#ifdef DSV4_EMBED_TOKENIZER_DIR
  return {dsv4_v3_tokenizer_config_begin, size_t(dsv4_v3_tokenizer_config_end - dsv4_v3_tokenizer_config_begin)};
#else
  return {};
#endif
}

void write_embedded_v4_tokenizer(const std::string& out_dir) {
  namespace fs = std::filesystem;
  const std::string_view tj = embedded_v3_tokenizer_json(), tc = embedded_v3_tokenizer_config_json();
  if (tj.empty())
    throw Error(out_dir + ": cannot write tokenizer.json: this dsv4 was built without the tokenizer assets "
                "(assets/tokenizer/deepseek-v3)");
  // write_v4_tokenizer reads a V3 directory and writes a V4 one; both live in a scratch directory
  // inside out_dir, and the results are renamed into place (each file appears complete).
  const fs::path scratch = fs::path(out_dir) / (".tokenizer" + tmp_suffix());
  std::error_code ec;
  fs::create_directories(scratch / "v3", ec);
  if (ec) throw Error(scratch.string() + ": cannot create directory: " + ec.message());
  auto put = [&](const fs::path& p, std::string_view bytes) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), std::streamsize(bytes.size()));
    if (!f) throw Error(p.string() + ": write failed");
  };
  try {
    put(scratch / "v3" / "tokenizer.json", tj);
    if (!tc.empty()) put(scratch / "v3" / "tokenizer_config.json", tc);
    write_v4_tokenizer((scratch / "v3").string(), (scratch / "v4").string());
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      fs::rename(scratch / "v4" / f, fs::path(out_dir) / f, ec);
      if (ec) throw Error((fs::path(out_dir) / f).string() + ": cannot rename into place: " + ec.message());
    }
  } catch (...) {
    fs::remove_all(scratch, ec);
    throw;
  }
  fs::remove_all(scratch, ec);
}

}  // namespace dsv4::text
