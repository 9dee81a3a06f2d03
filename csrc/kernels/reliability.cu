// CUDA cluster IoU in O(n): cluster sizes by atomic counting, contingency counts of the
// (label, other) pairs in an open-addressing hash table (atomicCAS on 64-bit keys, integer
// atomicAdd counts: the counts, and so the result, do not depend on the order of atomics).
#include <cuda_runtime.h>

#include "cuda_common.cuh"
#include "reliability.h"

namespace smcr {
namespace {

constexpr unsigned long long kEmpty = ~0ull;

__device__ __forceinline__ unsigned long long mix(unsigned long long k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

__global__ void check_kernel(const index_t* a, const index_t* b, index_t n, int* bad) {
  const index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (i < n && (a[i] < -1 || a[i] >= n || b[i] < -1 || b[i] >= n)) atomicExch(bad, 1);
}

__global__ void count_kernel(const index_t* __restrict__ a, const index_t* __restrict__ b, index_t n,
                             unsigned long long mask, int* __restrict__ size_a,
                             int* __restrict__ size_b, unsigned long long* __restrict__ keys,
                             int* __restrict__ counts) {
  const index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const index_t la = a[i], lb = b[i];
  if (la >= 0) atomicAdd(&size_a[la], 1);
  if (lb >= 0) atomicAdd(&size_b[lb], 1);
  if (la < 0 || lb < 0) return;
  const unsigned long long key = static_cast<unsigned long long>(la) * n + lb;
  unsigned long long slot = mix(key) & mask;
  while (true) {
    const unsigned long long prev = atomicCAS(&keys[slot], kEmpty, key);
    if (prev == kEmpty || prev == key) {
      atomicAdd(&counts[slot], 1);
      return;
    }
    slot = (slot + 1) & mask;
  }
}

__global__ void iou_kernel(const index_t* __restrict__ a, const index_t* __restrict__ b, index_t n,
                           unsigned long long mask, const int* __restrict__ size_a,
                           const int* __restrict__ size_b,
                           const unsigned long long* __restrict__ keys,
                           const int* __restrict__ counts, float* __restrict__ iou) {
  const index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const index_t la = a[i], lb = b[i];
  long long inter = 1;
  if (la >= 0 && lb >= 0) {
    const unsigned long long key = static_cast<unsigned long long>(la) * n + lb;
    unsigned long long slot = mix(key) & mask;
    while (keys[slot] != key) slot = (slot + 1) & mask;
    inter = counts[slot];
  }
  const long long sa = la >= 0 ? size_a[la] : 1;
  const long long sb = lb >= 0 ? size_b[lb] : 1;
  iou[i] = static_cast<float>(static_cast<double>(inter) / static_cast<double>(sa + sb - inter));
}

}  // namespace

Status cluster_iou_cuda(const index_t* labels, const index_t* other, index_t n, float* iou_out,
                        Allocator& alloc, cudaStream_t stream) {
  if (n < 0) return Status::Error("cluster_iou: n must be >= 0");
  if (n == 0) return Status::Ok();
  if (n >= (index_t(1) << 31)) return Status::Error("cluster_iou (CUDA): n must be < 2^31");
  unsigned long long cap = 1;
  while (cap < 2ull * static_cast<unsigned long long>(n)) cap <<= 1;
  int* bad = scratch_alloc<int>(alloc, 1);
  int* size_a = scratch_alloc<int>(alloc, n);
  int* size_b = scratch_alloc<int>(alloc, n);
  unsigned long long* keys = scratch_alloc<unsigned long long>(alloc, static_cast<index_t>(cap));
  int* counts = scratch_alloc<int>(alloc, static_cast<index_t>(cap));
  if (!bad || !size_a || !size_b || !keys || !counts)
    return Status::Error("cluster_iou (CUDA): out of memory");
  SMCR_CUDA_CHECK(cudaMemsetAsync(bad, 0, sizeof(int), stream), "memset");
  SMCR_CUDA_CHECK(cudaMemsetAsync(size_a, 0, sizeof(int) * n, stream), "memset");
  SMCR_CUDA_CHECK(cudaMemsetAsync(size_b, 0, sizeof(int) * n, stream), "memset");
  SMCR_CUDA_CHECK(cudaMemsetAsync(keys, 0xff, sizeof(unsigned long long) * cap, stream), "memset");
  SMCR_CUDA_CHECK(cudaMemsetAsync(counts, 0, sizeof(int) * cap, stream), "memset");
  const unsigned grid = grid_for(n, 256);
  check_kernel<<<grid, 256, 0, stream>>>(labels, other, n, bad);
  SMCR_RETURN_IF_ERROR(launch_status("cluster_iou check_kernel"));
  int bad_host = 0;
  SMCR_CUDA_CHECK(cudaMemcpyAsync(&bad_host, bad, sizeof(int), cudaMemcpyDeviceToHost, stream),
                  "copy");
  SMCR_CUDA_CHECK(cudaStreamSynchronize(stream), "synchronize");
  if (bad_host) return Status::Error("cluster_iou: labels must lie in [-1, n)");
  count_kernel<<<grid, 256, 0, stream>>>(labels, other, n, cap - 1, size_a, size_b, keys, counts);
  SMCR_RETURN_IF_ERROR(launch_status("cluster_iou count_kernel"));
  iou_kernel<<<grid, 256, 0, stream>>>(labels, other, n, cap - 1, size_a, size_b, keys, counts,
                                       iou_out);
  return launch_status("cluster_iou iou_kernel");
}

}  // namespace smcr
