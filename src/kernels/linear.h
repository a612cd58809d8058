// dsv4 kernels: the one matmul interface. Weights stay in their stored format (bf16, f32,
// e4m3 + e8m0 128x128 block scales, e2m1 packed two per byte + e8m0 1x32 scales); decoding
// happens inside the kernel (V4-ARCH §4.3). Model code never touches SIMD; it calls these through
// kernels::Backend (backend.h).
#pragma once
#include <atomic>
#include <cstdint>

#include "core/tensor.h"

namespace dsv4::kernels {

enum class WeightFormat : uint8_t { f32, bf16, fp8_block128, fp4_block32 };
const char* weight_format_name(WeightFormat f);

// A linear layer y = W x with W logically [out, in] (row-major), in its stored format.
// `row0` offsets the rows inside the stored tensor (for grouped projections such as wo_a),
// `col0` the columns; the scale lookup uses absolute rows/cols so block scales stay correct.
struct Linear {
  WeightFormat fmt = WeightFormat::f32;
  TensorView w;      // f32/bf16/e4m3: [rows, cols]; fp4: i8 [rows, cols/2]
  TensorView scale;  // fp8: e8m0 [ceil(rows/128), ceil(cols/128)]; fp4: e8m0 [rows, cols/32]
  int64_t out = 0, in = 0;  // logical size of this (sub)matrix
  int64_t row0 = 0, col0 = 0;
  int64_t ld = 0;           // logical columns of the stored tensor
  // FP8 only: whether the whole stored tensor holds e4m3 NaN codes (0x7f, 0xff), filled in by the
  // first matmul on it: -1 not known yet, 0 none, 1 some. Owned by whoever bound the weight (the
  // Model); null: the kernels look for NaN codes in the rows on every call.
  std::atomic<int8_t>* nan_codes = nullptr;

  Linear rows(int64_t r0, int64_t n) const;            // sub-block of rows
  Linear cols(int64_t c0, int64_t n) const;            // sub-block of columns
  // Decodes logical row r (in [0,out)) into dst[0..in) as fp32.
  void decode_row(int64_t r, float* dst) const;
};

struct MatmulOpts {
  bool act_fp8 = false;     // fake-quantise the input to e4m3, 1x128 blocks along K (V4-ARCH §2.7)
  bool out_bf16 = false;    // round the output to bf16
  bool weight_bf16 = false; // round decoded weights to bf16 (wo_a in the reference)
};

// y[n, out] = x[n, in] . W^T (fp32 accumulation). x rows have stride ldx, y rows stride ldy.
// Parallel over output rows. Every (token, row) dot product uses the same reduction order
// whatever n is, so chunked and one-shot prefill agree bit for bit.
void matmul(const Linear& W, const float* x, int64_t n, int64_t ldx, float* y, int64_t ldy,
            const MatmulOpts& opts = {});

// FP8 activation fake-quantisation of one row of length k in 1x128 blocks (last block partial).
void act_quant_fp8_row(float* x, int64_t k);

// Dot product with a fixed reduction order (runtime-dispatched SIMD).
float dot_f32(const float* a, const float* b, int64_t n);
// y[i] += a * x[i]
void axpy_f32(float a, const float* x, float* y, int64_t n);
// Attention scores: out[i] = dot_f32(q, keys[i], n) * scale for i < nk, bit for bit (four keys per
// pass share the loads of q, and their sums are reduced together).
void dot_keys_f32(const float* q, const float* const* keys, int64_t nk, int64_t n, float scale, float* out);
// Attention output: axpy_f32(p[i], x[i], y, n) for i = 0 .. nk - 1 in turn, bit for bit, with 64
// elements of y held in registers across all the keys (not loaded and stored per key).
void axpy_keys_f32(const float* p, const float* const* x, int64_t nk, float* y, int64_t n);

}  // namespace dsv4::kernels
