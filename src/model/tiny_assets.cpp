// The DeepSeek-V3 tokenizer files, compiled into the library so that `dsv4 tiny` and the
// embedded default model never read ../shared at run time. The assembler pulls the bytes in
// with .incbin; CMake passes the directory (DSV4_EMBED_TOKENIZER_DIR) and makes this object
// depend on the two files. Without the assets the accessors return empty views.
#include <string_view>

#include "model/tiny_checkpoint.h"

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

namespace dsv4::model {

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

}  // namespace dsv4::model
