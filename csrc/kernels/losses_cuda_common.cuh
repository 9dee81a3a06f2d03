// Device helpers of the training-loss CUDA kernels (hybrid_memory.cu, soft_triplet.cu):
// deterministic block reductions (a fixed shuffle-and-shared-memory tree, so a result
// depends only on the inputs and the block size, never on scheduling). Launch checks and grid
// sizes come from cuda_common.cuh.
#pragma once

#include <cuda_runtime.h>

#include "common.h"
#include "cuda_common.cuh"
#include "losses_common.h"

namespace smcr {
namespace cuda_detail {

constexpr int kThreads = 256;  // block size of every loss kernel but the softmax
constexpr int kWarps = kThreads / 32;

struct MaxOp {
  template <typename V>
  __device__ __forceinline__ V operator()(V a, V b) const { return a > b ? a : b; }
};
struct SumOp {
  template <typename V>
  __device__ __forceinline__ V operator()(V a, V b) const { return a + b; }
};

// Reduce v over the block (identity: the op's neutral value); every thread gets the result.
// `smem` holds >= 32 values. Must be reached by all threads of the block.
template <typename V, typename Op>
__device__ V block_reduce(V v, V* smem, Op op, V identity) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
  __syncthreads();  // every thread is done reading smem[0] of a previous reduction
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    V w = lane < warps ? smem[lane] : identity;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) w = op(w, __shfl_down_sync(0xffffffffu, w, off));
    if (lane == 0) smem[0] = w;
  }
  __syncthreads();
  return smem[0];
}

// (value, index) pair for arg-max / arg-min with ties broken toward the smaller index; an
// index < 0 is "none" and loses to everything.
template <typename V>
struct ArgBest {
  V value;
  index_t index;
};

template <typename V, bool kMax>
__device__ __forceinline__ ArgBest<V> arg_better(ArgBest<V> a, ArgBest<V> b) {
  if (a.index < 0) return b;
  if (b.index < 0) return a;
  const bool b_wins = kMax ? (b.value > a.value) : (b.value < a.value);
  if (b_wins || (b.value == a.value && b.index < a.index)) return b;
  return a;
}

template <typename V, bool kMax>
__device__ ArgBest<V> block_arg_best(ArgBest<V> v, ArgBest<V>* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    ArgBest<V> o;
    o.value = __shfl_down_sync(0xffffffffu, v.value, off);
    o.index = __shfl_down_sync(0xffffffffu, v.index, off);
    if (lane + off < 32) v = arg_better<V, kMax>(v, o);
  }
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    ArgBest<V> w = lane < warps ? smem[lane] : ArgBest<V>{V(0), index_t(-1)};
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      ArgBest<V> o;
      o.value = __shfl_down_sync(0xffffffffu, w.value, off);
      o.index = __shfl_down_sync(0xffffffffu, w.index, off);
      if (lane + off < 32) w = arg_better<V, kMax>(w, o);
    }
    if (lane == 0) smem[0] = w;
  }
  __syncthreads();
  return smem[0];
}

}  // namespace cuda_detail
}  // namespace smcr
