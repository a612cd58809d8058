// dsv4 core: read-only memory mapping of a whole file. Move-only owner of the mapping.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace dsv4 {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `path` read-only; throws dsv4::Error naming the path on failure.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return static_cast<const uint8_t*>(data_); }
  // Reads the whole file into the page cache and maps every page now (MADV_POPULATE_READ; on a
  // kernel without it, one read per page), so that later reads take no page faults. Returns the
  // seconds it took.
  double populate() const;
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace dsv4
