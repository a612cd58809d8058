// parse_py_json on big objects: linear in the key count (ordered_json's operator[] made it
// quadratic: a 1 MiB body of small keys took seconds), with Python's dict semantics kept for
// repeated keys (first position, last value) in small and large objects alike.
#include "text/py_json.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace dsv4::text {
namespace {

std::string object_of(int n, const std::string& extra = "") {
  std::string s = "{";
  for (int i = 0; i < n; ++i) s += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
  return s + extra + "}";
}

TEST(PyJson, ManyKeysParseInLinearTime) {
  const std::string body = object_of(400000);  // ~5.5 MiB; quadratic: 8e10 key comparisons
  const auto t0 = std::chrono::steady_clock::now();
  const Json j = parse_py_json(body);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(j.size(), 400000u);
  EXPECT_EQ(j.begin().key(), "k0");
  EXPECT_EQ((--j.end()).key(), "k399999");
  EXPECT_EQ(j["k123456"], 123456);
  EXPECT_LT(s, 5.0);
}

TEST(PyJson, RepeatedKeysKeepFirstPositionAndLastValue) {
  for (int n : {3, 40}) {  // below and above the size where a hash index takes over
    const Json j = parse_py_json(object_of(n, ",\"k1\":\"last\",\"k0\":null"));
    ASSERT_EQ(j.size(), size_t(n));
    auto it = j.begin();
    EXPECT_EQ(it.key(), "k0");
    EXPECT_TRUE(it->is_null());
    ++it;
    EXPECT_EQ(it.key(), "k1");
    EXPECT_EQ(*it, "last");
    EXPECT_EQ(py_json_dumps(parse_py_json(R"({"a": 1, "b": 2, "a": 3})")), R"({"a": 3, "b": 2})");
  }
}

}  // namespace
}  // namespace dsv4::text
