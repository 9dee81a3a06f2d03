// DBSCAN over a sparse neighbour graph, for several eps in one pass.
//
// Semantics are scikit-learn's DBSCAN(metric="precomputed") on the same distances:
//   * the neighbourhood of i is {i} ∪ {j : (i, j) stored in row i with dist <= eps}
//     (the boundary is inclusive, i counts itself once whether or not row i stores it);
//   * i is a core point iff its neighbourhood has >= min_samples points;
//   * clusters are the connected components of core points (core-core edges within eps);
//   * a border point (non-core with a core neighbour) joins the cluster that scikit-learn's
//     scan reaches first: clusters are numbered 0, 1, ... in the order of their smallest
//     core point, and a border point takes the smallest-numbered cluster among its core
//     neighbours; everything else is noise (-1).
// The graph must be symmetric (dist(i, j) stored in row i iff stored, equal, in row j), as
// every distance is; the Jaccard kernel produces bitwise-symmetric graphs. Rows must be
// sorted by distance ascending. Results do not depend on the thread count, and the CUDA
// version (union-find with atomic hooking of the larger root under the smaller) returns
// exactly the same labels.
//
// Args:
//   g            CSR graph view (n points)
//   eps          (m) float32, each > 0
//   min_samples  >= 1
//   labels_out   (m, n) int64, labels for eps[0], then eps[1], ...
#pragma once

#include "common.h"

namespace smcr {

Status dbscan_cpu(const CsrGraphView& g, const float* eps, int m, index_t min_samples,
                  index_t* labels_out);

Status dbscan_cuda(const CsrGraphView& g, const float* eps_host, int m, index_t min_samples,
                   index_t* labels_out, Allocator& scratch, cudaStream_t stream);

}  // namespace smcr
