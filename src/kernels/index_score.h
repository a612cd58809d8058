// dsv4 kernels: lightning-indexer scoring (V4-ARCH §2.3.6) on tiles of compressed-entry keys.
// The keys of a tile are stored transposed ([Di][kIndexTile]) so one query is scored against
// kIndexTile keys with vector multiply-adds across keys; a few key tiles stay in L1 while every
// query row of a block is scored against them.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dsv4::kernels {

inline constexpr int kIndexTile = 16;

// For each of n_rows query rows r (q + r*q_stride = [Hi][Di], w + r*w_stride = [Hi] head weights,
// already scaled) and each key l of n_tiles consecutive tiles (tile t at kt + t*Di*kIndexTile,
// each [Di][kIndexTile]):
//   out[r*out_stride + t*kIndexTile + l] = sum over h in order of  w[h] * max(q_h . k_{t,l}, 0)
// where each dot product accumulates over d = 0..Di-1 in order (fp32; the AVX2/AVX-512 builds
// fuse multiply-adds), so on one machine the score of a (query, key) pair does not depend on the
// tile, on how many tiles or rows are scored together, or where they sit. With FP4-simulated q and
// k (reference numerics) the dot product of each 32-dim block is exact whatever the ISA.
// With round_bf16 every score is rounded to bf16 (reference numerics).
// Index keys as the sequence state stores them (cache::RowCodec::index_key: Di/2 bytes of e2m1
// codes, low nibble first, then Di/32 e8m0 scales; Di a multiple of 32) decoded into one
// transposed tile: for n <= kIndexTile keys, dim d of key l goes to dst[d * ld + l] (ld >=
// kIndexTile) and lanes n..kIndexTile-1 are set to 0. Exact (an e2m1 code times an e8m0 scale is
// an fp32 value), so the values are RowCodec::decode's. The codes of one dim for every key of the
// tile are decoded in one vector (bit arithmetic, as the FP4 matmul kernels do), a key's scale
// beyond 2^1 (not a finite 2^126 x scale factor) by the scalar formula.
void decode_fp4_keys_transposed(const uint8_t* const* keys, int64_t n, int64_t Di, float* dst, int64_t ld);

void index_scores_tiles(const float* kt, int64_t n_tiles, int64_t Di, int64_t Hi, const float* q, int64_t q_stride,
                        const float* w, int64_t w_stride, int64_t n_rows, float* out, int64_t out_stride,
                        bool round_bf16);

}  // namespace dsv4::kernels
