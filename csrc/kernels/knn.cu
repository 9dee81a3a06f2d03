// CUDA kNN selection: one warp per query row keeps the row's top-k list in registers
// (k <= 128: S = ceil(k / 32) slots per lane, list position q at lane q % 32, slot q / 32),
// streams the similarity block 32 columns at a time, and inserts the few candidates that
// beat the current k-th entry with warp shuffles. The order (similarity desc, index asc) is
// a strict total order, so the result is unique and deterministic.
#include <cuda_runtime.h>

#include <cfloat>

#include "cuda_common.cuh"
#include "knn.h"

namespace smcr {
namespace {

constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ bool better(float s, index_t j, float bs, index_t bj) {
  return s > bs || (s == bs && (bj < 0 || j < bj));
}

__global__ void knn_init_kernel(index_t total, float* best_sim, index_t* best_idx) {
  for (index_t t = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<index_t>(gridDim.x) * blockDim.x) {
    best_sim[t] = -FLT_MAX;
    best_idx[t] = -1;
  }
}

template <int S>
__global__ void knn_merge_kernel(const float* __restrict__ sims, index_t rows, index_t cols,
                                 index_t ld, index_t col0, int k, float* best_sim,
                                 index_t* best_idx) {
  const int lane = threadIdx.x & 31;
  const index_t row = (blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x) >> 5;
  if (row >= rows) return;  // whole warps exit together
  float* bs = best_sim + row * k;
  index_t* bi = best_idx + row * k;
  float ls[S];
  index_t li[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int q = s * 32 + lane;
    ls[s] = q < k ? bs[q] : -FLT_MAX;
    li[s] = q < k ? bi[q] : -1;
  }
  const int tail_lane = (k - 1) & 31, tail_slot = (k - 1) >> 5;
  auto tail = [&](float& ts, index_t& ti) {
    float v = ls[0];
    index_t w = li[0];
#pragma unroll
    for (int s = 1; s < S; ++s)
      if (s == tail_slot) { v = ls[s]; w = li[s]; }
    ts = __shfl_sync(kFull, v, tail_lane);
    ti = __shfl_sync(kFull, w, tail_lane);
  };
  float thr;
  index_t thr_idx;
  tail(thr, thr_idx);
  const float* srow = sims + row * ld;
  for (index_t c0 = 0; c0 < cols; c0 += 32) {
    const index_t c = c0 + lane;
    const float s = c < cols ? srow[c] : -FLT_MAX;
    const index_t j = col0 + c;
    unsigned mask = __ballot_sync(kFull, c < cols && better(s, j, thr, thr_idx));
    while (mask) {
      const int src = __ffs(mask) - 1;
      const float cs = __shfl_sync(kFull, s, src);
      const index_t cj = __shfl_sync(kFull, j, src);
      // Position = number of list entries better than the candidate.
      int cnt = 0;
#pragma unroll
      for (int sl = 0; sl < S; ++sl) {
        const int q = sl * 32 + lane;
        cnt += (q < k && better(ls[sl], li[sl], cs, cj)) ? 1 : 0;
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) cnt += __shfl_xor_sync(kFull, cnt, off);
      const int pos = cnt;
      // Shift positions >= pos by one (position q takes q - 1), then place the candidate.
      float prev_s[S];
      index_t prev_i[S];
#pragma unroll
      for (int sl = 0; sl < S; ++sl) {
        float up_s = __shfl_up_sync(kFull, ls[sl], 1);
        index_t up_i = __shfl_up_sync(kFull, li[sl], 1);
        float wrap_s = __shfl_sync(kFull, sl > 0 ? ls[sl > 0 ? sl - 1 : 0] : ls[0], 31);
        index_t wrap_i = __shfl_sync(kFull, sl > 0 ? li[sl > 0 ? sl - 1 : 0] : li[0], 31);
        prev_s[sl] = lane > 0 ? up_s : wrap_s;
        prev_i[sl] = lane > 0 ? up_i : wrap_i;
      }
#pragma unroll
      for (int sl = 0; sl < S; ++sl) {
        const int q = sl * 32 + lane;
        if (q < k && q > pos) {
          ls[sl] = prev_s[sl];
          li[sl] = prev_i[sl];
        } else if (q == pos) {
          ls[sl] = cs;
          li[sl] = cj;
        }
      }
      tail(thr, thr_idx);
      mask &= ~(1u << src);
      mask &= __ballot_sync(kFull, better(s, j, thr, thr_idx));
    }
  }
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int q = s * 32 + lane;
    if (q < k) {
      bs[q] = ls[s];
      bi[q] = li[s];
    }
  }
}

__global__ void knn_finalize_kernel(index_t total, float* best_sim) {
  for (index_t t = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<index_t>(gridDim.x) * blockDim.x) {
    best_sim[t] = fmaxf(0.f, 2.f - 2.f * best_sim[t]);
  }
}

}  // namespace

Status knn_init_cuda(index_t rows, int k, float* best_sim, index_t* best_idx,
                     cudaStream_t stream) {
  if (k < 1 || k > kKnnMaxKCuda)
    return Status::Error("knn (CUDA): k must be in [1, " + std::to_string(kKnnMaxKCuda) +
                         "], got " + std::to_string(k));
  const index_t total = rows * static_cast<index_t>(k);
  knn_init_kernel<<<grid_for(total, 256) > 4096 ? 4096 : grid_for(total, 256), 256, 0, stream>>>(
      total, best_sim, best_idx);
  return launch_status("knn_init_kernel");
}

Status knn_merge_block_cuda(const float* sims, index_t rows, index_t cols, index_t ld,
                            index_t col0, int k, float* best_sim, index_t* best_idx,
                            cudaStream_t stream) {
  if (k < 1 || k > kKnnMaxKCuda)
    return Status::Error("knn (CUDA): k must be in [1, " + std::to_string(kKnnMaxKCuda) +
                         "], got " + std::to_string(k));
  if (rows == 0 || cols == 0) return Status::Ok();
  constexpr int kThreads = 256;  // 8 rows per block
  const unsigned grid = grid_for(rows * 32, kThreads);
  if (k <= 32)
    knn_merge_kernel<1><<<grid, kThreads, 0, stream>>>(sims, rows, cols, ld, col0, k, best_sim, best_idx);
  else if (k <= 64)
    knn_merge_kernel<2><<<grid, kThreads, 0, stream>>>(sims, rows, cols, ld, col0, k, best_sim, best_idx);
  else
    knn_merge_kernel<4><<<grid, kThreads, 0, stream>>>(sims, rows, cols, ld, col0, k, best_sim, best_idx);
  return launch_status("knn_merge_kernel");
}

Status knn_finalize_cuda(index_t rows, int k, float* best_sim, cudaStream_t stream) {
  const index_t total = rows * static_cast<index_t>(k);
  knn_finalize_kernel<<<grid_for(total, 256) > 4096 ? 4096 : grid_for(total, 256), 256, 0, stream>>>(
      total, best_sim);
  return launch_status("knn_finalize_kernel");
}

}  // namespace smcr
