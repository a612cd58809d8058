# Cross-compiling for 64-bit ARM Linux with Debian's toolchain (g++-aarch64-linux-gnu). Binaries
# run here under qemu-user (CMAKE_CROSSCOMPILING_EMULATOR), so ctest and gtest_discover_tests
# work unchanged. Used by scripts/test-arm64.sh:
#   cmake -S . -B build-arm64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#     -DDSV4_KERNELS_ONLY=ON
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(DSV4_CROSS_PREFIX aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${DSV4_CROSS_PREFIX}-gcc)
set(CMAKE_CXX_COMPILER ${DSV4_CROSS_PREFIX}-g++)

# Debian's multiarch-less cross sysroot: libc, libstdc++ and libgomp for arm64 live here.
set(DSV4_CROSS_SYSROOT /usr/${DSV4_CROSS_PREFIX})
set(CMAKE_FIND_ROOT_PATH ${DSV4_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# qemu-aarch64 (Debian's qemu-user) runs the test binaries; -L points its loader at the sysroot.
find_program(DSV4_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(DSV4_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${DSV4_QEMU_AARCH64} -L ${DSV4_CROSS_SYSROOT})
endif()
