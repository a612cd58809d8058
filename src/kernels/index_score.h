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

// ---- Integer scoring (reference numerics) ------------------------------------------------------
// Under reference numerics both the index query and the index keys are FP4-simulated: every
// 32-dim block is (small integers) x (a power of two). So each block's dot product is an exact
// integer sum S_b (|S_b| <= 4608), computed with 8-bit multiplies (AVX2 vpmaddubsw: 32 products
// per instruction against 8 per fp32 multiply-add; measured ~2x the fp32 kernel's speed on Zen 3;
// ARM64 with the dot-product extension: sdot, 16 per instruction into 32-bit sums) or, in the
// scalar twin (every other CPU), with int32 arithmetic: the same integers.
// The score of a (row, key) is then, in this order on every ISA,
//   dot_h = (((0 + T_0) + T_1) + ...) with T_b = float(S_b) * (qscale[h][b] * kscale[b][key])
//   (each T_b exact), score = fma(w[h], max(dot_h, 0), score) over h = 0.. in order,
// which is the fp32 path's value whenever its running sums are exact (blocks whose scales differ
// by less than ~2^10, i.e. practically always).

// A query row [Hi][Di] as integers: q8[h * Di + d] = q / qscale[h * nb + b] in [-12, 12] (nb = Di/32,
// qscale a power of two) and corr[h * nb + b] = 12 x the block's sum of q8 (the integer keys carry
// +12, see below). False if some block is not of that form (not FP4-simulated, NaN, infinite):
// then the row takes the fp32 path.
bool index_query_i8(const float* q, int64_t Hi, int64_t Di, int8_t* q8, float* qscale, int32_t* corr);

// kIndexTile keys (stored as for decode_fp4_keys_transposed; n <= kIndexTile, Di a multiple of 32) as
// one integer tile: the 4 dims 32b + 4g .. 32b + 4g + 3 of key l as the unsigned bytes
// 2 x e2m1 + 12 (0..24) at dst[((b * 8 + g) * kIndexTile + l) * 4 + 0..3], and the key's block scale
// e8m0 / 2 at kscale[b * kIndexTile + l]. Lanes n.. hold zeros (codes 12, scale 0).
void decode_fp4_keys_i8(const uint8_t* const* keys, int64_t n, int64_t Di, uint8_t* dst, float* kscale);
inline constexpr int64_t index_tile_i8_bytes(int64_t Di) { return Di * kIndexTile; }

// index_scores_tiles on integer tiles (kt: n_tiles tiles of index_tile_i8_bytes(Di), ks: their
// scales, Di / 32 * kIndexTile floats each) for n_rows rows of index_query_i8 output (row r at
// q8 + r * Hi * Di, qscale / corr + r * Hi * Di / 32) and head weights w (stride w_stride).
void index_scores_tiles_i8(const uint8_t* kt, const float* ks, int64_t n_tiles, int64_t Di, int64_t Hi,
                           const int8_t* q8, const float* qscale, const int32_t* corr, const float* w,
                           int64_t w_stride, int64_t n_rows, float* out, int64_t out_stride, bool round_bf16);

}  // namespace dsv4::kernels
