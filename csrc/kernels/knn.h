// Exact k-nearest-neighbour selection for L2-normalised features.
//
// The caller computes similarity blocks S = Q · Cᵀ (any GEMM: BLAS, cuBLAS, or the
// plain tiled product knn_cpu uses) and streams them through knn_merge_block_*, which
// keeps, for every query row, its k most similar candidates. Memory is O(rows·k) for
// the running lists plus one similarity block: never N×N.
//
// Order of every list: similarity descending, ties broken by the smaller candidate
// index, so the result does not depend on the block sizes or the thread count.
//
// Args (merge):
//   sims      (rows, cols) float32, row-major with leading dimension ld >= cols;
//             sims[r*ld + c] is the similarity of query r to candidate col0 + c.
//   best_sim  (rows, k) float32, running lists, initialised by knn_init_*.
//   best_idx  (rows, k) int64,  running lists (-1 = empty slot).
// Returns Status (empty message = ok).
//
// knn_finalize_* turns similarities into squared Euclidean distances of unit vectors,
// d = max(0, 2 - 2 s), in place (same order: ascending distance).
#pragma once

#include "common.h"

namespace smcr {

// Largest k the CUDA selection kernel supports (the CPU one has no limit).
constexpr int kKnnMaxKCuda = 128;

Status knn_init_cpu(index_t rows, int k, float* best_sim, index_t* best_idx);
Status knn_merge_block_cpu(const float* sims, index_t rows, index_t cols, index_t ld,
                           index_t col0, int k, float* best_sim, index_t* best_idx);
Status knn_finalize_cpu(index_t rows, int k, float* best_sim);

// The gathered merge, for searches over subsets (inverted lists): row r of `sims` belongs
// to query row_ids[r] (distinct within a call), column c is candidate col_ids[c]; each
// candidate must reach a query at most once over all calls.
//   sims (rows, cols) row-major, leading dimension ld; best_* (num_queries, k) indexed by
//   the row ids.
Status knn_merge_gather_cpu(const float* sims, index_t rows, index_t cols, index_t ld,
                            const index_t* row_ids, const index_t* col_ids, int k,
                            float* best_sim, index_t* best_idx);

// The transposed merge, for the self-join's symmetric blocks: candidate row r of `sims`
// (global index row0 + r) is merged into the lists of the block's columns c (the lists
// best_sim[c * k ...] of query col0 + c). With it, X·Xᵀ is computed for the upper block
// triangle only: each off-diagonal block serves both its rows and its columns.
//   sims (rows, cols) row-major with leading dimension ld; best_* (cols, k).
Status knn_merge_block_transposed_cpu(const float* sims, index_t rows, index_t cols, index_t ld,
                                      index_t row0, int k, float* best_sim, index_t* best_idx);

// Self-contained exact kNN of x (n, d) against itself with a built-in tiled product
// (for C++ users without a BLAS). out_idx (n, k) int64, out_dist (n, k) float32.
Status knn_cpu(const float* x, index_t n, index_t d, int k, index_t block,
               index_t* out_idx, float* out_dist);

Status knn_init_cuda(index_t rows, int k, float* best_sim, index_t* best_idx,
                     cudaStream_t stream);
Status knn_merge_block_cuda(const float* sims, index_t rows, index_t cols, index_t ld,
                            index_t col0, int k, float* best_sim, index_t* best_idx,
                            cudaStream_t stream);
Status knn_finalize_cuda(index_t rows, int k, float* best_sim, cudaStream_t stream);

}  // namespace smcr
