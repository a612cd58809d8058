#include "core/alloc_guard.h"

#include <execinfo.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>

namespace dsv4 {

namespace {
std::atomic<bool> g_enabled{[] {
#ifndef NDEBUG
  return true;
#else
  const char* v = std::getenv("DSV4_ALLOC_GUARD");
  return v && v[0] == '1';
#endif
}()};
// This thread's active NoAllocScopes minus its AllowAllocScopes (> 0: allocation traps). Pool
// workers take the depth of the thread that started the run (core/thread_pool.cpp).
thread_local int t_depth = 0;
thread_local size_t t_allocations = 0;
}  // namespace

size_t thread_allocations() { return t_allocations; }

void* guarded_allocate(std::size_t n, std::size_t align) {
  if (t_depth > 0) [[unlikely]] {
    t_depth = -(1 << 20);  // the report itself may allocate
    std::fprintf(stderr, "dsv4: heap allocation of %zu bytes inside a decode step (alloc guard, issue 11); stack:\n", n);
    void* frames[48];
    backtrace_symbols_fd(frames, backtrace(frames, 48), 2);  // (no allocation)
    std::abort();
  }
  ++t_allocations;
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (n + align - 1) / align * align)
                                               : std::malloc(n);
  if (!p) throw std::bad_alloc();
  return p;
}

bool alloc_guard_enabled() { return g_enabled.load(std::memory_order_relaxed); }
void set_alloc_guard_enabled(bool on) { g_enabled.store(on, std::memory_order_relaxed); }
int alloc_guard_depth() { return t_depth; }
void set_alloc_guard_depth(int d) { t_depth = d; }

NoAllocScope::NoAllocScope() : active_(alloc_guard_enabled()) {
  if (active_) ++t_depth;
}
NoAllocScope::~NoAllocScope() {
  if (active_) --t_depth;
}
AllowAllocScope::AllowAllocScope() : active_(t_depth > 0) {
  if (active_) --t_depth;
}
AllowAllocScope::~AllowAllocScope() {
  if (active_) ++t_depth;
}

}  // namespace dsv4

// The replaceable global allocation functions (the other forms forward to these). Not under the
// sanitizers, whose runtimes replace them themselves.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define DSV4_NO_NEW_REPLACEMENT
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define DSV4_NO_NEW_REPLACEMENT
#endif
#ifndef DSV4_NO_NEW_REPLACEMENT
void* operator new(std::size_t n) { return dsv4::guarded_allocate(n, 0); }
void* operator new[](std::size_t n) { return dsv4::guarded_allocate(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return dsv4::guarded_allocate(n, std::size_t(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return dsv4::guarded_allocate(n, std::size_t(a)); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
#endif
