// Checkpoint files: safetensors (single file or sharded with model.safetensors.index.json),
// mmap'd; tensors are exposed as TensorViews over the mapped bytes, never copied (V4-ARCH §4.1).
#pragma once
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace dsv4::model {

struct TensorEntry {
  TensorView view;
  std::string file;  // shard path, for error messages
};

class SafetensorsFile {
 public:
  // Maps and validates the header (JSON, dtypes, offsets inside the file, sizes match shapes).
  explicit SafetensorsFile(const std::string& path);
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::string& path() const { return file_.path(); }
  size_t size() const { return file_.size(); }
  // Start of the mapping (file offset 0).
  const uint8_t* base() const { return file_.data(); }
  // The whole file read and mapped now (MappedFile::populate); seconds taken.
  double populate() const { return file_.populate(); }
  // The file offset of a tensor's data p (a view's data from this file); false if p is not one.
  bool file_offset(const void* p, uint64_t* off) const;

 private:
  MappedFile file_;
  std::map<std::string, TensorView> tensors_;
  // Tensors whose data is not aligned to their element size (the safetensors library writes
  // them aligned, other writers need not) are used from an aligned copy: typed loads of
  // misaligned data are undefined behaviour.
  struct AlignedCopy {
    std::unique_ptr<uint8_t[]> bytes;  // new[]: aligned for every element type
    uint64_t file_offset;
  };
  std::vector<AlignedCopy> copies_;
};

// All shards of a checkpoint directory.
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);
  const std::string& dir() const { return dir_; }
  // nullptr if absent.
  const TensorEntry* find(const std::string& name) const;
  const std::map<std::string, TensorEntry>& entries() const { return entries_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorEntry> entries_;
};

// The safetensors library's data order: wider dtypes first (stable), so that with the header
// padded to 8 bytes every tensor is aligned to its element size. T: anything with a `dtype`.
template <class T>
void order_wider_dtypes_first(std::vector<const T*>& tensors) {
  std::stable_sort(tensors.begin(), tensors.end(),
                   [](const T* a, const T* b) { return dtype_size(a->dtype) > dtype_size(b->dtype); });
}

// Writing (used by `dsv4 tiny` and by tests that make broken checkpoints), in that order.
struct TensorToWrite {
  std::string name;
  Dtype dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
void write_safetensors(const std::string& path, const std::vector<const TensorToWrite*>& tensors);

}  // namespace dsv4::model
