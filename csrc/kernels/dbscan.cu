// CUDA DBSCAN over a sparse symmetric graph, several eps at once, with the same labels
// as dbscan_cpu.cpp (scikit-learn's numbering):
//   1. core flags and per-row eps prefixes (rows are sorted by distance)
//   2. union-find over core-core edges: lock-free hooking of the larger root under the
//      smaller with atomicCAS, so every component's root is its smallest index whatever
//      the order the atomics land in (the result is deterministic)
//   3. clusters numbered in the order of their roots (an exclusive scan over root flags)
//   4. border points take the smallest cluster number among their core neighbours.
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>

#include <vector>

#include "cuda_common.cuh"
#include "dbscan.h"

namespace smcr {
namespace {

__global__ void core_kernel(const index_t* __restrict__ indptr, const index_t* __restrict__ indices,
                            const float* __restrict__ dist, index_t n, float eps,
                            index_t min_samples, index_t* __restrict__ row_end,
                            unsigned char* __restrict__ core, index_t* __restrict__ parent) {
  const index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  index_t a = indptr[i];
  const index_t a1 = indptr[i + 1];
  index_t count = 1;  // i itself
  while (a < a1 && dist[a] <= eps) {
    count += (indices[a] != i);
    ++a;
  }
  row_end[i] = a;
  core[i] = count >= min_samples;
  parent[i] = i;
}

__device__ index_t find_root(index_t* parent, index_t a) {
  index_t p = parent[a];
  while (p != a) {
    const index_t gp = parent[p];
    if (gp != p) parent[a] = gp;  // benign race: only ever moves toward the root
    a = p;
    p = gp;
  }
  return a;
}

__global__ void union_kernel(const index_t* __restrict__ indptr, const index_t* __restrict__ indices,
                             const index_t* __restrict__ row_end,
                             const unsigned char* __restrict__ core, index_t n,
                             index_t* __restrict__ parent) {
  const index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (i >= n || !core[i]) return;
  for (index_t e = indptr[i]; e < row_end[i]; ++e) {
    const index_t j = indices[e];
    if (j == i || !core[j]) continue;
    while (true) {
      index_t a = find_root(parent, i);
      index_t b = find_root(parent, j);
      if (a == b) break;
      if (a > b) {
        const index_t t = a;
        a = b;
        b = t;
      }
      // hook root b (larger) under a (smaller) if b is still a root
      const unsigned long long old = atomicCAS(reinterpret_cast<unsigned long long*>(parent + b),
                                               static_cast<unsigned long long>(b),
                                               static_cast<unsigned long long>(a));
      if (old == static_cast<unsigned long long>(b)) break;
    }
  }
}

__global__ void flatten_kernel(index_t n, index_t* __restrict__ parent,
                               const unsigned char* __restrict__ core, index_t* __restrict__ is_root) {
  const index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const index_t r = find_root(parent, i);
  is_root[i] = (core[i] && r == i) ? 1 : 0;
}

__global__ void label_kernel(const index_t* __restrict__ indptr, const index_t* __restrict__ indices,
                             const index_t* __restrict__ row_end,
                             const unsigned char* __restrict__ core, index_t* __restrict__ parent,
                             const index_t* __restrict__ cluster_of_root, index_t n,
                             index_t* __restrict__ labels) {
  const index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  if (core[i]) {
    labels[i] = cluster_of_root[find_root(parent, i)];
    return;
  }
  index_t best = -1;
  for (index_t e = indptr[i]; e < row_end[i]; ++e) {
    const index_t j = indices[e];
    if (j == i || !core[j]) continue;
    const index_t c = cluster_of_root[find_root(parent, j)];
    if (best < 0 || c < best) best = c;
  }
  labels[i] = best;
}

}  // namespace

Status dbscan_cuda(const CsrGraphView& g, const float* eps_host, int m, index_t min_samples,
                   index_t* labels_out, Allocator& alloc, cudaStream_t stream) {
  const index_t n = g.n;
  if (n < 0) return Status::Error("dbscan: n must be >= 0");
  if (m < 1) return Status::Error("dbscan: need at least one eps");
  if (min_samples < 1) return Status::Error("dbscan: min_samples must be >= 1");
  for (int e = 0; e < m; ++e)
    if (!(eps_host[e] > 0.f)) return Status::Error("dbscan: every eps must be > 0");
  if (n == 0) return Status::Ok();
  index_t* row_end = scratch_alloc<index_t>(alloc, n);
  unsigned char* core = scratch_alloc<unsigned char>(alloc, n);
  index_t* parent = scratch_alloc<index_t>(alloc, n);
  index_t* is_root = scratch_alloc<index_t>(alloc, n);
  index_t* cluster_of_root = scratch_alloc<index_t>(alloc, n);
  if (!row_end || !core || !parent || !is_root || !cluster_of_root)
    return Status::Error("dbscan (CUDA): out of memory");
  std::size_t bytes = 0;
  SMCR_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, is_root, cluster_of_root, n, stream),
                  "scan size");
  void* tmp = alloc.allocate(bytes);
  if (!tmp) return Status::Error("dbscan (CUDA): out of memory");
  const unsigned grid = grid_for(n, 256);
  for (int e = 0; e < m; ++e) {
    core_kernel<<<grid, 256, 0, stream>>>(g.indptr, g.indices, g.distances, n, eps_host[e],
                                          min_samples, row_end, core, parent);
    SMCR_RETURN_IF_ERROR(launch_status("dbscan core_kernel"));
    union_kernel<<<grid, 256, 0, stream>>>(g.indptr, g.indices, row_end, core, n, parent);
    SMCR_RETURN_IF_ERROR(launch_status("dbscan union_kernel"));
    flatten_kernel<<<grid, 256, 0, stream>>>(n, parent, core, is_root);
    SMCR_RETURN_IF_ERROR(launch_status("dbscan flatten_kernel"));
    SMCR_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(tmp, bytes, is_root, cluster_of_root, n, stream),
                    "dbscan scan");
    label_kernel<<<grid, 256, 0, stream>>>(g.indptr, g.indices, row_end, core, parent,
                                           cluster_of_root, n, labels_out + e * n);
    SMCR_RETURN_IF_ERROR(launch_status("dbscan label_kernel"));
  }
  return Status::Ok();
}

}  // namespace smcr
