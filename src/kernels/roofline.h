// dsv4 kernels: the machine's rooflines, measured (not assumed) so that every speed figure can be
// reported as a ratio measured in the same run (README "Benchmarks"). Used by `dsv4 bench` and
// bench/matmul_bench.
#pragma once
#include <cstddef>

namespace dsv4::kernels {

// Read bandwidth in bytes/s: a `bytes`-sized buffer (far larger than the last-level cache) summed
// by `threads` threads (0 = ThreadPool::default_threads()), each its own contiguous part; best of `passes`.
double measure_read_bandwidth(int threads = 0, size_t bytes = size_t(1) << 30, int passes = 5);

// Multiply-adds per second on all threads: 12 independent vector chains per thread in the vector
// width the kernels run at (vector_floats()); best of 3.
double measure_fma_peak();

}  // namespace dsv4::kernels
