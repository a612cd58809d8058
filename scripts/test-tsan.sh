#!/usr/bin/env bash
# ThreadSanitizer build of the server and engine tests (the layers with threads: the HTTP I/O
# thread, the worker pool, the scheduler thread) into ./build-tsan, then runs them. The kernels
# are pinned to one ISA level there (CMakeLists.txt: DSV4_TSAN). Extra args go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-tsan}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSV4_TSAN=ON -DDSV4_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target dsv4 test_server test_engine
cd "$BUILD_DIR"
# halt_on_error: a report fails the test.
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
  ctest -R '^(HttpServer|Scheduler)\.' --output-on-failure "$@"
