// model::SafetensorsFile and write_safetensors: tensors come out aligned to their element size
// (typed loads of misaligned data are undefined behaviour), whether the file put them there (our
// writer, like the safetensors library, writes wider dtypes first) or the loader had to copy them.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/safetensors.h"
#include "test_util.h"

using namespace dsv4;

namespace {

bool aligned_for(const TensorView& v) { return reinterpret_cast<uintptr_t>(v.data) % dtype_size(v.dtype) == 0; }

model::TensorToWrite tensor(const std::string& name, Dtype d, std::vector<int64_t> shape, uint8_t first) {
  model::TensorToWrite t{name, d, shape, {}};
  size_t n = dtype_size(d);
  for (int64_t s : shape) n *= size_t(s);
  for (size_t i = 0; i < n; ++i) t.bytes.push_back(uint8_t(first + i));
  return t;
}

}  // namespace

TEST(Safetensors, WriterPutsEveryTensorOnItsElementSize) {
  const std::string dir = test::make_temp_dir("dsv4st");
  const std::string path = dir + "/a.safetensors";
  // odd-sized byte tensors first, as a naive writer would lay them out
  const auto a = tensor("a", Dtype::u8, {3}, 1), b = tensor("b", Dtype::bf16, {3}, 20), c = tensor("c", Dtype::f32, {2}, 40),
             d = tensor("d", Dtype::e4m3, {5}, 60), e = tensor("e", Dtype::i64, {1}, 80);
  model::write_safetensors(path, {&a, &b, &c, &d, &e});
  model::SafetensorsFile f(path);
  for (const model::TensorToWrite* t : {&a, &b, &c, &d, &e}) {
    const TensorView& v = f.tensors().at(t->name);
    EXPECT_TRUE(aligned_for(v)) << t->name;
    ASSERT_EQ(v.nbytes(), t->bytes.size());
    EXPECT_EQ(std::memcmp(v.data, t->bytes.data(), v.nbytes()), 0) << t->name;
    uint64_t off = 0;
    ASSERT_TRUE(f.file_offset(v.data, &off));
    EXPECT_EQ(static_cast<const uint8_t*>(v.data), f.base() + off) << t->name << ": read in place, not copied";
  }
}

TEST(Safetensors, MisalignedTensorsAreReadFromAlignedCopies) {
  const std::string dir = test::make_temp_dir("dsv4st");
  const std::string path = dir + "/m.safetensors";
  // a file another writer could produce: u8[3], then bf16[2] at data offset 3, f32[1] at 7
  std::string h = R"({"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
                  R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[3,7]},)"
                  R"("c":{"dtype":"F32","shape":[1],"data_offsets":[7,11]}})";
  while ((h.size() + 8) % 8) h.push_back(' ');
  const uint8_t data[11] = {1, 2, 3, 0x80, 0x3f, 0x00, 0x40, 0x00, 0x00, 0x40, 0x40};  // b = {1, 2}, c = {3}
  {
    std::ofstream o(path, std::ios::binary);
    const uint64_t n = h.size();
    o.write(reinterpret_cast<const char*>(&n), 8);
    o.write(h.data(), std::streamsize(h.size()));
    o.write(reinterpret_cast<const char*>(data), sizeof data);
  }
  model::SafetensorsFile f(path);
  const uint64_t data_start = 8 + h.size();
  const TensorView& b = f.tensors().at("b");
  const TensorView& c = f.tensors().at("c");
  ASSERT_TRUE(aligned_for(b));
  ASSERT_TRUE(aligned_for(c));
  EXPECT_EQ(bf16_to_f32(b.as<uint16_t>()[0]), 1.f);
  EXPECT_EQ(bf16_to_f32(b.as<uint16_t>()[1]), 2.f);
  EXPECT_EQ(c.as<float>()[0], 3.f);
  uint64_t off = 0;
  ASSERT_TRUE(f.file_offset(b.data, &off));
  EXPECT_EQ(off, data_start + 3);  // where the bytes are in the file (the expert store reads from there)
  ASSERT_TRUE(f.file_offset(c.data, &off));
  EXPECT_EQ(off, data_start + 7);
  ASSERT_TRUE(f.file_offset(f.tensors().at("a").data, &off));
  EXPECT_EQ(off, data_start);
  const int unrelated = 0;
  EXPECT_FALSE(f.file_offset(&unrelated, &off));
}
