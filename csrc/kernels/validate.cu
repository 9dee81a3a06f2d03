// CUDA value checks (see validate.h): one memset and one grid-stride kernel per call (all
// checks of a call in one kernel with first_invalid), no scratch memory, no host
// synchronisation (the caller reads `out` when it needs it).
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda_common.cuh"
#include "validate.h"

namespace smcr {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 1024;

__device__ inline void record_first(index_t* out, index_t i) {
  // -1 is all ones, the largest unsigned value: the smallest offending index wins
  atomicMin(reinterpret_cast<unsigned long long*>(out), static_cast<unsigned long long>(i));
}

// The two per-element checks every kernel below is made of.
// Element k of a row-major matrix with `cols` columns: out[0] = min over its row if not finite.
template <typename T>
__device__ inline void check_element(const T* x, index_t k, index_t cols, index_t* out) {
  if (!isfinite(x[k])) record_first(out, k / cols);
}

// Index i: out[0] = min i outside [0, bound); out[1] = min i in range whose count is 0.
__device__ inline void check_index(const index_t* index, index_t i, index_t bound,
                                   const index_t* counts, index_t* out) {
  const index_t v = index[i];
  if (v < 0 || v >= bound) {
    record_first(out, i);
  } else if (counts != nullptr && counts[v] == 0) {
    record_first(out + 1, i);
  }
}

template <typename T>
__global__ void nonfinite_rows_kernel(const T* __restrict__ x, index_t rows, index_t cols,
                                      index_t* out) {
  const index_t total = rows * cols;
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += stride)
    check_element(x, k, cols, out);
}

__global__ void bad_index_kernel(const index_t* __restrict__ index, index_t n, index_t bound,
                                 const index_t* __restrict__ counts, index_t* out) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride)
    check_index(index, i, bound, counts, out);
}

// All checks of one call in one pass: positions [0, nx) are x's elements, [nx, nx + ny)
// y's, then the n indices.
template <typename T>
__global__ void first_invalid_kernel(const T* __restrict__ x, index_t nx, index_t x_cols,
                                     const T* __restrict__ y, index_t ny, index_t y_cols,
                                     const index_t* __restrict__ index, index_t n, index_t bound,
                                     const index_t* __restrict__ counts, index_t* out) {
  const index_t total = nx + ny + n;
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += stride) {
    if (k < nx) check_element(x, k, x_cols, out);
    else if (k < nx + ny) check_element(y, k - nx, y_cols, out + 1);
    else check_index(index, k - nx - ny, bound, counts, out + 2);
  }
}

}  // namespace

template <typename T>
Status first_invalid_cuda(const T* x, index_t x_rows, index_t x_cols, const T* y,
                          index_t y_rows, index_t y_cols, const index_t* index, index_t n,
                          index_t bound, const index_t* counts, index_t* out,
                          cudaStream_t stream) {
  if (x_rows < 0 || x_cols < 0 || (y && (y_rows < 0 || y_cols < 0)) || (index && n < 0) ||
      bound < 0)
    return Status::Error("first_invalid: negative size");
  SMCR_CUDA_CHECK(cudaMemsetAsync(out, 0xFF, 4 * sizeof(index_t), stream), "first_invalid");
  const index_t nx = x_rows * x_cols, ny = y ? y_rows * y_cols : 0, ni = index ? n : 0;
  const index_t total = nx + ny + ni;
  if (total == 0) return Status::Ok();
  const unsigned blocks = std::min(grid_for(total, kThreads), kMaxBlocks);
  first_invalid_kernel<T><<<blocks, kThreads, 0, stream>>>(x, nx, x_cols, y, ny, y_cols, index,
                                                           ni, bound, counts, out);
  return launch_status("first_invalid");
}

template Status first_invalid_cuda<float>(const float*, index_t, index_t, const float*, index_t,
                                          index_t, const index_t*, index_t, index_t,
                                          const index_t*, index_t*, cudaStream_t);
template Status first_invalid_cuda<double>(const double*, index_t, index_t, const double*,
                                           index_t, index_t, const index_t*, index_t, index_t,
                                           const index_t*, index_t*, cudaStream_t);

template <typename T>
Status first_nonfinite_row_cuda(const T* x, index_t rows, index_t cols, index_t* out,
                                cudaStream_t stream) {
  if (rows < 0 || cols < 0) return Status::Error("first_nonfinite_row: negative size");
  SMCR_CUDA_CHECK(cudaMemsetAsync(out, 0xFF, sizeof(index_t), stream), "first_nonfinite_row");
  if (rows == 0 || cols == 0) return Status::Ok();
  const unsigned blocks = std::min(grid_for(rows * cols, kThreads), kMaxBlocks);
  nonfinite_rows_kernel<T><<<blocks, kThreads, 0, stream>>>(x, rows, cols, out);
  return launch_status("first_nonfinite_row");
}

template Status first_nonfinite_row_cuda<float>(const float*, index_t, index_t, index_t*,
                                                cudaStream_t);
template Status first_nonfinite_row_cuda<double>(const double*, index_t, index_t, index_t*,
                                                 cudaStream_t);

Status first_bad_index_cuda(const index_t* index, index_t n, index_t bound,
                            const index_t* counts, index_t* out, cudaStream_t stream) {
  if (n < 0 || bound < 0) return Status::Error("first_bad_index: negative size");
  SMCR_CUDA_CHECK(cudaMemsetAsync(out, 0xFF, 2 * sizeof(index_t), stream), "first_bad_index");
  if (n == 0) return Status::Ok();
  const unsigned blocks = std::min(grid_for(n, kThreads), kMaxBlocks);
  bad_index_kernel<<<blocks, kThreads, 0, stream>>>(index, n, bound, counts, out);
  return launch_status("first_bad_index");
}

}  // namespace smcr
