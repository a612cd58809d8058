// MappedFile: the mapping's bytes, and populate() leaving every page of the file in the page cache
// (mincore) after the cache was told to drop them.
#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_util.h"

using namespace dsv4;

namespace {
// Pages of [p, p + n) in the page cache.
size_t resident_pages(const uint8_t* p, size_t n) {
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> v((n + page - 1) / page);
  if (::mincore(const_cast<uint8_t*>(p), n, v.data()) != 0) return size_t(-1);
  size_t r = 0;
  for (unsigned char c : v) r += c & 1;
  return r;
}
}  // namespace

TEST(MappedFile, PopulateReadsEveryPage) {
  const std::string path = test::make_temp_dir("dsv4mapped") + "/f.bin";
  const size_t n = size_t(8) << 20;
  {
    std::vector<uint8_t> bytes(n);
    for (size_t i = 0; i < n; ++i) bytes[i] = uint8_t(i * 131 + 7);
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(bytes.data(), 1, n, f), n);
    ASSERT_EQ(std::fflush(f), 0);
    ::fsync(fileno(f));
    std::fclose(f);
  }
  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // clean pages leave the cache (best effort)
  ::close(fd);
  MappedFile m(path);
  ASSERT_EQ(m.size(), n);
  const size_t pages = (n + size_t(::sysconf(_SC_PAGESIZE)) - 1) / size_t(::sysconf(_SC_PAGESIZE));
  const size_t before = resident_pages(m.data(), n);
  EXPECT_GE(m.populate(), 0.0);
  EXPECT_EQ(resident_pages(m.data(), n), pages) << "before populate: " << before << " of " << pages;
  for (size_t i = 0; i < n; i += 4093) ASSERT_EQ(m.data()[i], uint8_t(i * 131 + 7)) << i;
  EXPECT_THROW(MappedFile("/nonexistent/dsv4-file"), Error);
}
