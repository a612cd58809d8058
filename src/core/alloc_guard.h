// dsv4 core: a guard that traps heap allocation during a decode step (issue 11; ds4 has the same
// check). The forward pass keeps every buffer it needs between steps (model/batch.h PassScratch,
// the CPU backend's per-thread scratch), so once a sequence is warm a decode step must not call
// the allocator; a regression would show up as allocator time and page faults in every step.
//
// The library replaces the global operator new (not under sanitizers); while a NoAllocScope is
// active on a thread (and the guard is enabled), an allocation on that thread, or on a pool thread
// running a job it started, aborts with a message naming the size. AllowAllocScope lifts it for
// allocations that are part of the work (the sequence state growing by a page). Enabled in debug
// builds and whenever DSV4_ALLOC_GUARD=1; otherwise a scope costs one relaxed atomic load.
#pragma once
#include <algorithm>
#include <cstddef>
#include <vector>

namespace dsv4 {

bool alloc_guard_enabled();
void set_alloc_guard_enabled(bool on);  // tests
// The calling thread's guard depth (> 0: allocation traps); the pool hands it to its workers.
int alloc_guard_depth();
void set_alloc_guard_depth(int depth);
void* guarded_allocate(std::size_t n, std::size_t align);
// Heap allocations made by the calling thread so far (through operator new; tests that check a
// path allocates nothing without aborting).
size_t thread_allocations();

class NoAllocScope {
 public:
  NoAllocScope();
  ~NoAllocScope();
  NoAllocScope(const NoAllocScope&) = delete;
  NoAllocScope& operator=(const NoAllocScope&) = delete;

 private:
  bool active_;
};

class AllowAllocScope {
 public:
  AllowAllocScope();
  ~AllowAllocScope();
  AllowAllocScope(const AllowAllocScope&) = delete;
  AllowAllocScope& operator=(const AllowAllocScope&) = delete;

 private:
  bool active_;
};

// Resizes a buffer whose size follows the context (keys a row sees, decoded cache rows): the
// capacity at least doubles when it must grow, and that growth is allowed inside a decode step,
// like the sequence state's new pages; so it happens O(log context) times.
template <class T, class A>
void resize_with_context(std::vector<T, A>& v, size_t n) {
  if (n > v.capacity()) {
    AllowAllocScope growth;
    v.reserve(std::max(n, 2 * v.capacity()));
  }
  v.resize(n);
}

}  // namespace dsv4
