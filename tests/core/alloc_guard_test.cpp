// core/alloc_guard.h: an allocation inside a NoAllocScope aborts (also on a pool thread running a
// job the scope's thread started), none outside it or inside an AllowAllocScope.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/alloc_guard.h"
#include "core/thread_pool.h"

namespace dsv4 {
namespace {

// A direct call of the replaceable operator new (a new-expression may be elided by the optimizer).
void* volatile g_sink = nullptr;
void allocate_some() {
  g_sink = ::operator new(64);
  ::operator delete(g_sink);
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
TEST(AllocGuardDeathTest, AllocationInsideTheScopeAborts) {
  EXPECT_DEATH(
      {
        set_alloc_guard_enabled(true);
        NoAllocScope guard;
        allocate_some();
      },
      "heap allocation of .* bytes inside a decode step");
}

TEST(AllocGuardDeathTest, PoolThreadsInheritTheScope) {
  EXPECT_DEATH(
      {
        set_alloc_guard_enabled(true);
        ThreadPool pool(2);
        NoAllocScope guard;
        pool.run([](int t, int) {
          if (t == 1) allocate_some();
        });
      },
      "heap allocation of .* bytes inside a decode step");
}
#endif

TEST(AllocGuard, OutsideOrAllowedAllocationsPass) {
  set_alloc_guard_enabled(true);
  {
    auto p = std::make_unique<std::vector<int>>(1000);
    EXPECT_EQ(p->size(), 1000u);
  }
  {
    NoAllocScope guard;
    AllowAllocScope allow;
    auto p = std::make_unique<int>(3);
    EXPECT_EQ(*p, 3);
  }
  set_alloc_guard_enabled(false);
  {
    NoAllocScope guard;  // disabled: no effect
    auto p = std::make_unique<int>(4);
    EXPECT_EQ(*p, 4);
  }
}

}  // namespace
}  // namespace dsv4
