#include "core/temp_name.h"

#include <unistd.h>

#include <atomic>
#include <cstdint>

namespace dsv4 {

std::string tmp_suffix() {
  static std::atomic<uint64_t> counter{0};
  return ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

}  // namespace dsv4
