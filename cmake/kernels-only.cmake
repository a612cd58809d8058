# DSV4_KERNELS_ONLY=ON: only the CPU kernels and their gtest binary, test_kernels (the same
# sources as tests/CMakeLists.txt's test_kernels_<isa> variants). Needs nothing but a C++ compiler
# and GoogleTest, so a cross build (cmake/aarch64-linux-gnu.cmake, scripts/test-arm64.sh)
# needs no target-architecture -dev packages: GoogleTest is compiled from Debian's source package
# (googletest, /usr/src/googletest) when no GTest for the target is installed.
find_package(GTest QUIET)
if(NOT GTest_FOUND)
  set(DSV4_GTEST_SOURCE_DIR /usr/src/googletest CACHE PATH "GoogleTest sources (Debian's googletest package)")
  if(NOT EXISTS ${DSV4_GTEST_SOURCE_DIR}/CMakeLists.txt)
    message(FATAL_ERROR "no GoogleTest for the target and no sources in ${DSV4_GTEST_SOURCE_DIR} (apt-get install googletest)")
  endif()
  set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
  set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
  add_subdirectory(${DSV4_GTEST_SOURCE_DIR} ${CMAKE_BINARY_DIR}/googletest EXCLUDE_FROM_ALL)
  target_compile_options(gtest PRIVATE -w)  # GCC 12 -Wrestrict false positives in gtest.cc
  if(NOT TARGET GTest::gtest_main)
    add_library(GTest::gtest ALIAS gtest)
    add_library(GTest::gtest_main ALIAS gtest_main)
  endif()
endif()
include(GoogleTest)
enable_testing()

file(GLOB kernel_tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/kernels/*_test.cpp)
file(GLOB kernel_sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/kernels/*.cpp ${CMAKE_SOURCE_DIR}/src/kernels/cpu/*.cpp)
add_executable(test_kernels ${kernel_tests} ${kernel_sources}
  ${CMAKE_SOURCE_DIR}/src/core/dtype.cpp ${CMAKE_SOURCE_DIR}/src/core/error.cpp ${CMAKE_SOURCE_DIR}/src/core/tensor.cpp
  ${CMAKE_SOURCE_DIR}/src/core/thread_pool.cpp ${CMAKE_SOURCE_DIR}/src/core/alloc_guard.cpp)
target_include_directories(test_kernels PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_compile_options(test_kernels PRIVATE -Wall -Wextra -Wno-unused-parameter)
if(NOT DSV4_KERNEL_ISA STREQUAL "dispatch")
  string(TOUPPER ${DSV4_KERNEL_ISA} isa_upper)
  target_compile_definitions(test_kernels PRIVATE DSV4_KERNEL_ISA_${isa_upper})
endif()
target_link_libraries(test_kernels PRIVATE Threads::Threads GTest::gtest GTest::gtest_main)
# Cross builds run this (and the discovery) through CMAKE_CROSSCOMPILING_EMULATOR (qemu-user).
gtest_discover_tests(test_kernels DISCOVERY_TIMEOUT 120 PROPERTIES ENVIRONMENT "DSV4_THREADS=1")
