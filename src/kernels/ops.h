// dsv4 kernels: small element-wise / row ops used by the model (RMSNorm, RoPE rotation,
// Hadamard, softmax helpers). Portable C++; hot ones are auto-vectorised.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace dsv4::kernels {

// y = w * x * rsqrt(mean(x^2) + eps), w bf16 [n] (null = no weight). In place allowed.
void rms_norm(const float* x, const TensorView* w, float eps, int64_t n, float* y);

// Interleaved-pair rotation of x[0..2*npairs) by angles with cos/sin tables (V4-ARCH §2.3.1):
// a' = a cos - b sin, b' = a sin + b cos; inverse uses -sin.
void rope_rotate(float* x, const float* cos_t, const float* sin_t, int npairs, bool inverse);

// Orthonormal Sylvester Walsh-Hadamard transform of x[0..n), n a power of two (V4-ARCH §2.3.6).
void hadamard_orthonormal(float* x, int n);

// Rounds n floats to bf16 in place.
void round_bf16_inplace(float* x, int64_t n);

// mHC SinkhornSplit (V4-ARCH §2.2, exact order): row softmax + eps, column normalisation, then
// (iters-1) x (row, column). In place on C [hc, hc].
void sinkhorn_split(float* C, int hc, int iters, float eps);

// Numerically stable softplus.
float softplus(float z);
float sigmoid(float z);
float silu(float z);

}  // namespace dsv4::kernels
