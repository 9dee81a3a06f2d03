// Sparse k-reciprocal Jaccard distance (Zhong et al., CVPR 2017, as SpCL computes it).
//
// For unit feature vectors x_i with squared distances d(i,j) = 2 - 2<x_i, x_j>:
//   N(i,k)  = the first min(k+1, K) entries of i's kNN list (K = list width; the list
//             includes i itself, as SpCL's faiss search does)
//   R(i,k)  = { j in N(i,k) : i in N(j,k) }                      (k-reciprocal set)
//   E(i)    = R(i,k1) ∪ R(c,k1h) for every c in R(i,k1) with
//             |R(c,k1h) ∩ R(i,k1)| > 2/3 |R(c,k1h)|,  k1h = round-half-even(k1/2)
//   V[i,j]  = softmax_{j in E(i)}(-d(i,j))                           (rows sum to 1)
//   Vq[i]   = mean of V[j] over the first k2 entries j of i's kNN list (query expansion)
//   s(i,j)  = sum_c min(Vq[i,c], Vq[j,c]),  dist(i,j) = max(0, 1 - s/(2 - s))
// (1 - s/(2 - s) equals 1 - sum min / sum max because every row of Vq sums to 1.)
// Pairs that share no column are at distance exactly 1 and are never emitted.
//
// Exactness: s(i,j) is summed over shared columns in ascending column order, so the
// graph is bitwise symmetric (dist(i,j) == dist(j,i)), independent of thread count.
//
// Args:
//   x         (n, d) float32 row-major unit vectors (for expansion members that are not
//             in i's kNN list; in-list distances come from knn_dist)
//   knn_idx   (n, K) int64 neighbour lists sorted by distance (ties: smaller index)
//   knn_dist  (n, K) float32 squared distances 2 - 2<x_i, x_j> of those lists
//   k1, k2    1 <= k2 <= K, 1 <= k1
//   max_dist  emit pairs with dist <= max_dist (the diagonal, at 0, always)
// Returns: CSR graph, every row sorted by (distance, index) ascending, self first.
#pragma once

#include "common.h"

namespace smcr {

// round(k1 / 2) with numpy's round-half-to-even, as SpCL's np.around does.
inline int jaccard_half_k(int k1) {
  const int h = k1 / 2;
  if (k1 % 2 == 0) return h;
  return (h % 2 == 0) ? h : h + 1;  // k1/2 = h + 0.5: round to the even neighbour
}

Status kreciprocal_jaccard_cpu(const float* x, index_t n, index_t d, const index_t* knn_idx,
                               const float* knn_dist, index_t K, int k1, int k2,
                               float max_dist, index_t* indptr_out,
                               const CsrOutputAlloc& alloc_out);

Status kreciprocal_jaccard_cuda(const float* x, index_t n, index_t d, const index_t* knn_idx,
                                const float* knn_dist, index_t K, int k1, int k2,
                                float max_dist, index_t* indptr_out,
                                const CsrOutputAlloc& alloc_out, Allocator& scratch,
                                cudaStream_t stream);

}  // namespace smcr
