#!/usr/bin/env bash
# ARM64 check: cross-compiles the CPU kernels and their gtest binary for aarch64 with Debian's
# toolchain (cmake/aarch64-linux-gnu.cmake, -DDSV4_KERNELS_ONLY=ON) into ./build-arm64 and runs
# them under qemu-aarch64 through ctest. On ARM64 the kernels take the portable path
# (src/kernels/cpu/dispatch.h: GCC vector extensions, 4 floats = NEON width), which no x86 build
# compiles for its real target. Called by scripts/test.sh; DSV4_ARM64=0 skips it. Needs
# g++-aarch64-linux-gnu, qemu-user and googletest (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${DSV4_ARM64:-1}" = "0" ]; then
  echo "test-arm64: skipped (DSV4_ARM64=0)"
  exit 0
fi
if [ "$(uname -m)" = "aarch64" ]; then
  echo "test-arm64: this machine is aarch64; the main build's test_kernels already runs natively"
  exit 0
fi
BUILD_DIR=${ARM64_BUILD_DIR:-build-arm64}
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" -DDSV4_KERNELS_ONLY=ON >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
aarch64-linux-gnu-readelf -h "$BUILD_DIR/test_kernels" | grep -q "Machine:.*AArch64" ||
  { echo "test-arm64: $BUILD_DIR/test_kernels is not an aarch64 binary" >&2; exit 1; }
echo "test-arm64: running test_kernels (aarch64) under qemu-aarch64"
(cd "$BUILD_DIR" && ctest --output-on-failure -j"$(nproc)" --timeout 600)
echo "test-arm64: done in $(( $(date +%s) - start )) s"
