// CUDA sparse k-reciprocal Jaccard distance: the same definition and the same summation
// orders as jaccard_cpu.cpp (so the graph is bitwise symmetric and deterministic), built
// from per-row warps/blocks:
//   1. reciprocal sets R(i, k1), R(i, k1h)               one warp per row
//   2. expansion E(i), weights V = softmax(-d) over E(i)  one warp per row (fixed width)
//   3. query expansion Vq (two passes: count, fill)       one block per row, dense scratch
//   4. inverted index of Vq (columns -> rows, ascending)  atomics + segmented sort
//   5. Jaccard rows (two passes: count, fill), sorted     one block per row, dense scratch
// Steps 3 and 5 accumulate into a dense float row per block; rows are processed in waves
// so that the scratch stays below ~512 MB (never N×N). A scratch entry is zero exactly when
// untouched (every contribution is > 0), which is how first touches are detected and how
// the scratch is reset.
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <type_traits>

#include "cuda_common.cuh"
#include "jaccard.h"

namespace smcr {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kBlock = 128;  // threads of the per-row blocks (steps 3 and 5)

__device__ __forceinline__ int warp_sum(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ __forceinline__ float warp_sumf(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ __forceinline__ float warp_minf(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

// 1. R(i, L): members of the first L entries of i's list holding i in their first L.
__global__ void reciprocal_kernel(const index_t* __restrict__ nn, index_t n, index_t K, index_t L,
                                  int32_t* __restrict__ out, int32_t* __restrict__ out_len) {
  const int lane = threadIdx.x & 31;
  const index_t i = (blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x) >> 5;
  if (i >= n) return;
  int cnt = 0;
  for (index_t base = 0; base < L; base += 32) {
    const index_t a = base + lane;
    bool flag = false;
    index_t j = 0;
    if (a < L) {
      j = nn[i * K + a];
      for (index_t b = 0; b < L; ++b)
        if (nn[j * K + b] == i) { flag = true; break; }
    }
    const unsigned m = __ballot_sync(kFull, flag);
    if (flag) out[i * L + cnt + __popc(m & ((1u << lane) - 1))] = static_cast<int32_t>(j);
    cnt += __popc(m);
  }
  if (lane == 0) out_len[i] = cnt;
}

// 2. E(i) (sorted, unique) and V[i] = softmax(-d(i, .)) over it. One warp per block.
// Shared memory: r1 (L1 ints), buf (emax ints), sorted (emax ints).
__global__ void expand_kernel(const float* __restrict__ x, index_t d, const index_t* __restrict__ nn,
                              const float* __restrict__ nd, index_t n, index_t K,
                              const int32_t* __restrict__ r1, const int32_t* __restrict__ r1_len,
                              index_t L1, const int32_t* __restrict__ rh,
                              const int32_t* __restrict__ rh_len, index_t Lh, index_t emax,
                              int32_t* __restrict__ v_col, float* __restrict__ v_val,
                              int32_t* __restrict__ v_len) {
  extern __shared__ int32_t smem[];
  const index_t i = blockIdx.x;
  if (i >= n) return;
  const int lane = threadIdx.x;
  int32_t* s_r1 = smem;
  int32_t* buf = smem + L1;
  int32_t* sorted = buf + emax;
  const int n1 = r1_len[i];
  for (int a = lane; a < n1; a += 32) {
    s_r1[a] = r1[i * L1 + a];
    buf[a] = s_r1[a];
  }
  __syncwarp();
  int cnt = n1;
  for (int a = 0; a < n1; ++a) {
    const int32_t c = s_r1[a];
    const int nc = rh_len[c];
    int common = 0;
    for (int b = lane; b < nc; b += 32) {
      const int32_t v = rh[static_cast<index_t>(c) * Lh + b];
      for (int t = 0; t < n1; ++t)
        if (s_r1[t] == v) { ++common; break; }
    }
    common = warp_sum(common);
    if (common > (2.0 / 3.0) * nc) {
      for (int b = lane; b < nc; b += 32) buf[cnt + b] = rh[static_cast<index_t>(c) * Lh + b];
      cnt += nc;
    }
    __syncwarp();
  }
  // Rank sort (ties by position), then drop repeats.
  for (int e = lane; e < cnt; e += 32) {
    const int32_t v = buf[e];
    int rank = 0;
    for (int f = 0; f < cnt; ++f) rank += (buf[f] < v) || (buf[f] == v && f < e);
    sorted[rank] = v;
  }
  __syncwarp();
  int m = 0;
  for (int base = 0; base < cnt; base += 32) {
    const int p = base + lane;
    const bool keep = p < cnt && (p == 0 || sorted[p] != sorted[p - 1]);
    const int32_t v = p < cnt ? sorted[p] : 0;
    const unsigned mk = __ballot_sync(kFull, keep);
    __syncwarp();
    if (keep) buf[m + __popc(mk & ((1u << lane) - 1))] = v;  // buf is free again
    m += __popc(mk);
    __syncwarp();
  }
  // Distances: from i's kNN list where present, else a warp dot product.
  float* dist = reinterpret_cast<float*>(sorted);  // reuse: m <= emax floats
  for (int base = 0; base < m; base += 32) {
    const int p = base + lane;
    bool missing = false;
    if (p < m) {
      const int32_t j = buf[p];
      float dj = -1.f;
      for (index_t a = 0; a < K; ++a)
        if (nn[i * K + a] == j) { dj = nd[i * K + a]; break; }
      dist[p] = dj;
      missing = dj < 0.f;
    }
    unsigned mm = __ballot_sync(kFull, missing);
    while (mm) {
      const int src = __ffs(mm) - 1;
      mm &= mm - 1;
      const int32_t j = buf[base + src];
      float acc = 0.f;
      for (index_t t = lane; t < d; t += 32) acc += x[i * d + t] * x[static_cast<index_t>(j) * d + t];
      acc = warp_sumf(acc);
      if (lane == src) dist[p] = fmaxf(0.f, 2.f - 2.f * acc);
    }
  }
  __syncwarp();
  float dmin = FLT_MAX;
  for (int p = lane; p < m; p += 32) dmin = fminf(dmin, dist[p]);
  dmin = warp_minf(dmin);
  float sum = 0.f;
  for (int p = lane; p < m; p += 32) sum += expf(-(dist[p] - dmin));
  sum = warp_sumf(sum);
  for (int p = lane; p < m; p += 32) {
    v_col[i * emax + p] = buf[p];
    v_val[i * emax + p] = expf(-(dist[p] - dmin)) / sum;
  }
  if (lane == 0) v_len[i] = m;
}

__device__ __forceinline__ int block_sum(int v, int* shared32) {
  v = warp_sum(v);
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) shared32[w] = v;
  __syncthreads();
  int total = 0;
  if (threadIdx.x == 0) {
    for (int t = 0; t < (blockDim.x + 31) / 32; ++t) total += shared32[t];
    shared32[0] = total;
  }
  __syncthreads();
  total = shared32[0];
  __syncthreads();
  return total;
}

// 3. Query expansion over rows [row0, row0 + rows). fill == false: count distinct columns
// into q_count; fill == true: write them (unsorted) at q_ptr and the values.
template <bool kFill>
__global__ void qe_kernel(const index_t* __restrict__ nn, index_t K, int k2, index_t row0,
                          index_t rows, index_t n, const int32_t* __restrict__ v_col,
                          const float* __restrict__ v_val, const int32_t* __restrict__ v_len,
                          index_t emax, float* __restrict__ scratch, int32_t* __restrict__ q_count,
                          const index_t* __restrict__ q_ptr, int32_t* __restrict__ q_col,
                          float* __restrict__ q_val) {
  __shared__ int s_red[32];
  __shared__ int s_fill;
  const index_t w = blockIdx.x;
  if (w >= rows) return;
  const index_t i = row0 + w;
  float* acc = scratch + w * n;
  if (threadIdx.x == 0) s_fill = 0;
  __syncthreads();
  int cnt = 0;
  for (int t = 0; t < k2; ++t) {
    const index_t j = nn[i * K + t];
    const int len = v_len[j];
    for (int p = threadIdx.x; p < len; p += blockDim.x) {
      const int32_t c = v_col[j * emax + p];
      const float old = acc[c];
      if (old == 0.f) {
        if (kFill) q_col[q_ptr[i] + atomicAdd(&s_fill, 1)] = c;
        else ++cnt;
      }
      acc[c] = old + v_val[j * emax + p];
    }
    __syncthreads();
  }
  if (!kFill) {
    cnt = block_sum(cnt, s_red);
    if (threadIdx.x == 0) q_count[i] = cnt;
    for (int t = 0; t < k2; ++t) {
      const index_t j = nn[i * K + t];
      for (int p = threadIdx.x; p < v_len[j]; p += blockDim.x) acc[v_col[j * emax + p]] = 0.f;
    }
  } else {
    const float inv_k2 = 1.0f / static_cast<float>(k2);
    const index_t a0 = q_ptr[i], a1 = q_ptr[i + 1];
    for (index_t a = a0 + threadIdx.x; a < a1; a += blockDim.x) {
      const int32_t c = q_col[a];
      q_val[a] = acc[c] * inv_k2;
      acc[c] = 0.f;
    }
  }
}

__global__ void count_columns_kernel(const int32_t* __restrict__ col, index_t nnz,
                                     int32_t* __restrict__ counts) {
  for (index_t a = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; a < nnz;
       a += static_cast<index_t>(gridDim.x) * blockDim.x)
    atomicAdd(&counts[col[a]], 1);
}

__global__ void rows_of_entries_kernel(const index_t* __restrict__ ptr, index_t n,
                                       int32_t* __restrict__ row_of) {
  const index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  for (index_t a = ptr[i]; a < ptr[i + 1]; ++a) row_of[a] = static_cast<int32_t>(i);
}

__global__ void transpose_fill_kernel(const int32_t* __restrict__ q_col,
                                      const float* __restrict__ q_val,
                                      const int32_t* __restrict__ row_of, index_t nnz,
                                      const index_t* __restrict__ t_ptr, int32_t* __restrict__ fill,
                                      int32_t* __restrict__ t_row, float* __restrict__ t_val) {
  for (index_t a = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; a < nnz;
       a += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const int32_t c = q_col[a];
    const index_t p = t_ptr[c] + atomicAdd(&fill[c], 1);
    t_row[p] = row_of[a];
    t_val[p] = q_val[a];
  }
}

// 5. Jaccard rows over [row0, row0 + rows). kFill == false: count entries (self included)
// into row_count; kFill == true: write sort keys (distance bits << 32 | index + 1; the
// self entry is key 0, so it sorts first even beside exact duplicates at distance 0).
template <bool kFill>
__global__ void jaccard_rows_kernel(index_t row0, index_t rows, index_t n,
                                    const index_t* __restrict__ q_ptr,
                                    const int32_t* __restrict__ q_col,
                                    const float* __restrict__ q_val,
                                    const index_t* __restrict__ t_ptr,
                                    const int32_t* __restrict__ t_row,
                                    const float* __restrict__ t_val, float max_dist,
                                    float* __restrict__ scratch, index_t* __restrict__ row_count,
                                    const index_t* __restrict__ indptr,
                                    unsigned long long* __restrict__ keys) {
  __shared__ int s_red[32];
  __shared__ int s_fill;
  const index_t w = blockIdx.x;
  if (w >= rows) return;
  const index_t i = row0 + w;
  float* acc = scratch + w * n;
  if (threadIdx.x == 0) s_fill = 0;
  __syncthreads();
  const index_t a0 = q_ptr[i], a1 = q_ptr[i + 1];
  for (index_t a = a0; a < a1; ++a) {  // columns ascending: the CPU's summation order
    const int32_t c = q_col[a];
    const float v = q_val[a];
    for (index_t b = t_ptr[c] + threadIdx.x; b < t_ptr[c + 1]; b += blockDim.x) {
      const int32_t j = t_row[b];
      acc[j] += fminf(v, t_val[b]);
    }
    __syncthreads();
  }
  int cnt = 0;
  for (index_t a = a0; a < a1; ++a) {
    const int32_t c = q_col[a];
    for (index_t b = t_ptr[c] + threadIdx.x; b < t_ptr[c + 1]; b += blockDim.x) {
      const int32_t j = t_row[b];
      const float s = acc[j];
      if (s == 0.f) continue;  // already emitted under an earlier column
      acc[j] = 0.f;
      if (j == i) continue;
      const float dist = fmaxf(0.f, 1.f - s / (2.f - s));
      if (dist <= max_dist) {
        if (kFill) {
          const index_t p = indptr[i] + 1 + atomicAdd(&s_fill, 1);
          keys[p] = (static_cast<unsigned long long>(__float_as_uint(dist)) << 32) |
                    (static_cast<unsigned long long>(j) + 1ull);
        } else {
          ++cnt;
        }
      }
    }
    __syncthreads();
  }
  if (kFill) {
    if (threadIdx.x == 0) keys[indptr[i]] = 0ull;  // self: the unique smallest key of the row
  } else {
    cnt = block_sum(cnt, s_red);
    if (threadIdx.x == 0) row_count[i] = cnt + 1;
  }
}

__global__ void decode_kernel(const unsigned long long* __restrict__ keys, index_t nnz,
                              index_t* __restrict__ out_idx, float* __restrict__ out_dist) {
  for (index_t a = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; a < nnz;
       a += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const unsigned long long k = keys[a];
    out_idx[a] = static_cast<index_t>(k & 0xffffffffull) - 1;  // -1 for self, fixed below
    out_dist[a] = __uint_as_float(static_cast<unsigned int>(k >> 32));
  }
}

__global__ void self_first_kernel(const index_t* __restrict__ indptr, index_t n,
                                  index_t* __restrict__ out_idx) {
  const index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (i < n) out_idx[indptr[i]] = i;
}

__global__ void int_to_index_kernel(const int32_t* __restrict__ in, index_t n,
                                    index_t* __restrict__ out) {
  const index_t t = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (t < n) out[t] = in[t];
}

// Exclusive scan of `count` (n entries, type T) into ptr (n + 1 int64 entries).
template <typename T>
Status exclusive_scan(const T* count, index_t n, index_t* ptr, Allocator& alloc,
                      cudaStream_t stream) {
  index_t* widened = scratch_alloc<index_t>(alloc, n + 1);
  if (!widened) return Status::Error("kreciprocal_jaccard (CUDA): out of memory");
  SMCR_CUDA_CHECK(cudaMemsetAsync(widened + n, 0, sizeof(index_t), stream), "memset");
  if constexpr (std::is_same<T, index_t>::value) {
    SMCR_CUDA_CHECK(cudaMemcpyAsync(widened, count, n * sizeof(index_t), cudaMemcpyDeviceToDevice,
                                    stream), "copy counts");
  } else {
    int_to_index_kernel<<<grid_for(n, 256), 256, 0, stream>>>(count, n, widened);
    SMCR_RETURN_IF_ERROR(launch_status("int_to_index_kernel"));
  }
  std::size_t bytes = 0;
  SMCR_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, widened, ptr, n + 1, stream),
                  "scan size");
  void* tmp = alloc.allocate(bytes);
  if (!tmp) return Status::Error("kreciprocal_jaccard (CUDA): out of memory");
  SMCR_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(tmp, bytes, widened, ptr, n + 1, stream), "scan");
  return Status::Ok();
}

// Sort every segment [ptr[s], ptr[s + 1]) of (keys, values) by key.
template <typename K, typename V>
Status segmented_sort_pairs(const K* keys_in, K* keys_out, const V* vals_in, V* vals_out,
                            index_t nnz, index_t segments, const index_t* ptr, Allocator& alloc,
                            cudaStream_t stream, const char* what) {
  std::size_t bytes = 0;
  SMCR_CUDA_CHECK(cub::DeviceSegmentedSort::SortPairs(nullptr, bytes, keys_in, keys_out, vals_in,
                                                      vals_out, static_cast<int>(nnz),
                                                      static_cast<int>(segments), ptr, ptr + 1,
                                                      stream),
                  what);
  void* tmp = alloc.allocate(bytes);
  if (!tmp) return Status::Error("kreciprocal_jaccard (CUDA): out of memory");
  SMCR_CUDA_CHECK(cub::DeviceSegmentedSort::SortPairs(tmp, bytes, keys_in, keys_out, vals_in,
                                                      vals_out, static_cast<int>(nnz),
                                                      static_cast<int>(segments), ptr, ptr + 1,
                                                      stream),
                  what);
  return Status::Ok();
}

Status read_last(const index_t* ptr, index_t n, index_t* out, cudaStream_t stream) {
  SMCR_CUDA_CHECK(cudaMemcpyAsync(out, ptr + n, sizeof(index_t), cudaMemcpyDeviceToHost, stream),
                  "read count");
  SMCR_CUDA_CHECK(cudaStreamSynchronize(stream), "synchronize");
  return Status::Ok();
}

}  // namespace

Status kreciprocal_jaccard_cuda(const float* x, index_t n, index_t d, const index_t* knn_idx,
                                const float* knn_dist, index_t K, int k1, int k2,
                                float max_dist, index_t* indptr_out,
                                const CsrOutputAlloc& alloc_out, Allocator& alloc,
                                cudaStream_t stream) {
  if (n < 1 || d < 1) return Status::Error("kreciprocal_jaccard: need n >= 1 and d >= 1");
  if (n >= (index_t(1) << 31))
    return Status::Error("kreciprocal_jaccard: n must be < 2^31, got " + std::to_string(n));
  if (K < 1 || K > n) return Status::Error("kreciprocal_jaccard: knn width K must be in [1, n]");
  if (k1 < 1) return Status::Error("kreciprocal_jaccard: k1 must be >= 1");
  if (k2 < 1 || k2 > K) return Status::Error("kreciprocal_jaccard: k2 must be in [1, K]");
  const int k1h = jaccard_half_k(k1);
  const index_t L1 = std::min<index_t>(k1 + 1, K);
  const index_t Lh = std::min<index_t>(k1h + 1, K);
  const index_t emax = L1 + L1 * Lh;
  const std::size_t expand_smem = (L1 + 2 * emax) * sizeof(int32_t);
  if (expand_smem > 48 * 1024)
    return Status::Error("kreciprocal_jaccard (CUDA): k1 too large for the expansion kernel (k1 <= 100)");

  auto oom = [] { return Status::Error("kreciprocal_jaccard (CUDA): out of memory"); };
  // 1. reciprocal sets
  int32_t* r1 = scratch_alloc<int32_t>(alloc, n * L1);
  int32_t* rh = scratch_alloc<int32_t>(alloc, n * Lh);
  int32_t* r1_len = scratch_alloc<int32_t>(alloc, n);
  int32_t* rh_len = scratch_alloc<int32_t>(alloc, n);
  if (!r1 || !rh || !r1_len || !rh_len) return oom();
  const unsigned warps_grid = grid_for(n * 32, 256);
  reciprocal_kernel<<<warps_grid, 256, 0, stream>>>(knn_idx, n, K, L1, r1, r1_len);
  SMCR_RETURN_IF_ERROR(launch_status("reciprocal_kernel"));
  reciprocal_kernel<<<warps_grid, 256, 0, stream>>>(knn_idx, n, K, Lh, rh, rh_len);
  SMCR_RETURN_IF_ERROR(launch_status("reciprocal_kernel"));

  // 2. expansion and weights (fixed width emax)
  int32_t* v_col = scratch_alloc<int32_t>(alloc, n * emax);
  float* v_val = scratch_alloc<float>(alloc, n * emax);
  int32_t* v_len = scratch_alloc<int32_t>(alloc, n);
  if (!v_col || !v_val || !v_len) return oom();
  expand_kernel<<<static_cast<unsigned>(n), 32, expand_smem, stream>>>(
      x, d, knn_idx, knn_dist, n, K, r1, r1_len, L1, rh, rh_len, Lh, emax, v_col, v_val, v_len);
  SMCR_RETURN_IF_ERROR(launch_status("expand_kernel"));

  // Dense scratch rows, processed in waves (~512 MB at most).
  const index_t wave = std::max<index_t>(1, std::min<index_t>(n, (index_t(512) << 20) / (4 * n)));
  float* scratch = scratch_alloc<float>(alloc, wave * n);
  if (!scratch) return oom();
  SMCR_CUDA_CHECK(cudaMemsetAsync(scratch, 0, sizeof(float) * wave * n, stream), "memset scratch");

  // 3. query expansion: count, scan, fill, sort columns within rows
  int32_t* q_count = scratch_alloc<int32_t>(alloc, n);
  index_t* q_ptr = scratch_alloc<index_t>(alloc, n + 1);
  if (!q_count || !q_ptr) return oom();
  for (index_t r0 = 0; r0 < n; r0 += wave) {
    const index_t rows = std::min(wave, n - r0);
    qe_kernel<false><<<static_cast<unsigned>(rows), kBlock, 0, stream>>>(
        knn_idx, K, k2, r0, rows, n, v_col, v_val, v_len, emax, scratch, q_count, nullptr,
        nullptr, nullptr);
    SMCR_RETURN_IF_ERROR(launch_status("qe_kernel<count>"));
  }
  SMCR_RETURN_IF_ERROR(exclusive_scan(q_count, n, q_ptr, alloc, stream));
  index_t q_nnz = 0;
  SMCR_RETURN_IF_ERROR(read_last(q_ptr, n, &q_nnz, stream));
  if (q_nnz >= (index_t(1) << 31))
    return Status::Error("kreciprocal_jaccard (CUDA): query expansion too large (>= 2^31 entries)");
  int32_t* q_col_u = scratch_alloc<int32_t>(alloc, q_nnz);
  float* q_val_u = scratch_alloc<float>(alloc, q_nnz);
  int32_t* q_col = scratch_alloc<int32_t>(alloc, q_nnz);
  float* q_val = scratch_alloc<float>(alloc, q_nnz);
  if (!q_col_u || !q_val_u || !q_col || !q_val) return oom();
  for (index_t r0 = 0; r0 < n; r0 += wave) {
    const index_t rows = std::min(wave, n - r0);
    qe_kernel<true><<<static_cast<unsigned>(rows), kBlock, 0, stream>>>(
        knn_idx, K, k2, r0, rows, n, v_col, v_val, v_len, emax, scratch, nullptr, q_ptr, q_col_u,
        q_val_u);
    SMCR_RETURN_IF_ERROR(launch_status("qe_kernel<fill>"));
  }
  SMCR_RETURN_IF_ERROR(segmented_sort_pairs(q_col_u, q_col, q_val_u, q_val, q_nnz, n, q_ptr, alloc,
                                            stream, "sort query expansion rows"));

  // 4. inverted index: rows of every column, ascending
  int32_t* t_count = scratch_alloc<int32_t>(alloc, n);
  int32_t* t_fill = scratch_alloc<int32_t>(alloc, n);
  index_t* t_ptr = scratch_alloc<index_t>(alloc, n + 1);
  int32_t* row_of = scratch_alloc<int32_t>(alloc, q_nnz);
  int32_t* t_row_u = scratch_alloc<int32_t>(alloc, q_nnz);
  float* t_val_u = scratch_alloc<float>(alloc, q_nnz);
  int32_t* t_row = scratch_alloc<int32_t>(alloc, q_nnz);
  float* t_val = scratch_alloc<float>(alloc, q_nnz);
  if (!t_count || !t_fill || !t_ptr || !row_of || !t_row_u || !t_val_u || !t_row || !t_val)
    return oom();
  SMCR_CUDA_CHECK(cudaMemsetAsync(t_count, 0, sizeof(int32_t) * n, stream), "memset");
  SMCR_CUDA_CHECK(cudaMemsetAsync(t_fill, 0, sizeof(int32_t) * n, stream), "memset");
  const unsigned ggrid = std::min<unsigned>(grid_for(q_nnz, 256), 65535u);
  count_columns_kernel<<<ggrid, 256, 0, stream>>>(q_col, q_nnz, t_count);
  SMCR_RETURN_IF_ERROR(launch_status("count_columns_kernel"));
  SMCR_RETURN_IF_ERROR(exclusive_scan(t_count, n, t_ptr, alloc, stream));
  rows_of_entries_kernel<<<grid_for(n, 256), 256, 0, stream>>>(q_ptr, n, row_of);
  SMCR_RETURN_IF_ERROR(launch_status("rows_of_entries_kernel"));
  transpose_fill_kernel<<<ggrid, 256, 0, stream>>>(q_col, q_val, row_of, q_nnz, t_ptr, t_fill,
                                                   t_row_u, t_val_u);
  SMCR_RETURN_IF_ERROR(launch_status("transpose_fill_kernel"));
  SMCR_RETURN_IF_ERROR(segmented_sort_pairs(t_row_u, t_row, t_val_u, t_val, q_nnz, n, t_ptr, alloc,
                                            stream, "sort inverted index"));

  // 5. Jaccard rows: count, scan, fill keys, sort each row after its self entry, decode.
  index_t* row_count = scratch_alloc<index_t>(alloc, n);
  if (!row_count) return oom();
  for (index_t r0 = 0; r0 < n; r0 += wave) {
    const index_t rows = std::min(wave, n - r0);
    jaccard_rows_kernel<false><<<static_cast<unsigned>(rows), kBlock, 0, stream>>>(
        r0, rows, n, q_ptr, q_col, q_val, t_ptr, t_row, t_val, max_dist, scratch, row_count,
        nullptr, nullptr);
    SMCR_RETURN_IF_ERROR(launch_status("jaccard_rows_kernel<count>"));
  }
  SMCR_RETURN_IF_ERROR(exclusive_scan(row_count, n, indptr_out, alloc, stream));
  index_t nnz = 0;
  SMCR_RETURN_IF_ERROR(read_last(indptr_out, n, &nnz, stream));
  if (nnz >= (index_t(1) << 31))
    return Status::Error("kreciprocal_jaccard (CUDA): the graph would hold " + std::to_string(nnz) +
                         " entries (>= 2^31); lower max_dist");
  unsigned long long* keys = scratch_alloc<unsigned long long>(alloc, nnz);
  unsigned long long* keys_sorted = scratch_alloc<unsigned long long>(alloc, nnz);
  if (!keys || !keys_sorted) return oom();
  for (index_t r0 = 0; r0 < n; r0 += wave) {
    const index_t rows = std::min(wave, n - r0);
    jaccard_rows_kernel<true><<<static_cast<unsigned>(rows), kBlock, 0, stream>>>(
        r0, rows, n, q_ptr, q_col, q_val, t_ptr, t_row, t_val, max_dist, scratch, nullptr,
        indptr_out, keys);
    SMCR_RETURN_IF_ERROR(launch_status("jaccard_rows_kernel<fill>"));
  }
  {
    std::size_t bytes = 0;
    SMCR_CUDA_CHECK(cub::DeviceSegmentedSort::SortKeys(nullptr, bytes, keys, keys_sorted,
                                                       static_cast<int>(nnz), static_cast<int>(n),
                                                       indptr_out, indptr_out + 1, stream),
                    "sort size");
    void* tmp = alloc.allocate(bytes);
    if (!tmp) return oom();
    SMCR_CUDA_CHECK(cub::DeviceSegmentedSort::SortKeys(tmp, bytes, keys, keys_sorted,
                                                       static_cast<int>(nnz), static_cast<int>(n),
                                                       indptr_out, indptr_out + 1, stream),
                    "sort Jaccard rows");
  }
  index_t* out_idx = nullptr;
  float* out_dist = nullptr;
  SMCR_RETURN_IF_ERROR(alloc_out(nnz, &out_idx, &out_dist));
  decode_kernel<<<std::min<unsigned>(grid_for(nnz, 256), 65535u), 256, 0, stream>>>(
      keys_sorted, nnz, out_idx, out_dist);
  SMCR_RETURN_IF_ERROR(launch_status("decode_kernel"));
  self_first_kernel<<<grid_for(n, 256), 256, 0, stream>>>(indptr_out, n, out_idx);
  return launch_status("self_first_kernel");
}

}  // namespace smcr
