// CUDA hybrid-memory kernels; contracts in hybrid_memory.h.
//
// Launch shapes and determinism:
//   label_index   CUB radix sort of (label, row) pairs (stable), then one binary search per
//                 label for label_ptr. Deterministic.
//   label_means   grid (labels, ceil(D / 1024)), 256 threads, 4 columns per thread; each
//                 column sums its label's rows in ascending row order, exactly as the CPU
//                 kernel does (bitwise-equal means).
//   softmax_block one block of 512 threads per sample; max and sum by a fixed tree.
//   finalize      one block per sample, then one block for the mean (fixed tree).
//   backward      element-wise.
//   update        one block per sample; the block of a row's first occurrence applies all of
//                 that row's updates in batch order, the others exit. No atomics anywhere.
//   refresh_means grid (samples, ceil(D / 1024)) like label_means; the block of a label's
//                 first sample writes its mean row, the others exit.
// All offsets into (M, D) / (B, D) arrays are 64-bit.
#include <cub/device/device_radix_sort.cuh>

#include <limits>
#include <string>
#include <type_traits>

#include "hybrid_memory.h"
#include "losses_cuda_common.cuh"

namespace smcr {
namespace {

using cuda_detail::block_reduce;
using cuda_detail::kThreads;
using cuda_detail::MaxOp;
using cuda_detail::SumOp;

constexpr int kMeanCols = 4;                         // columns per thread in label_means
constexpr int kMeanChunk = kThreads * kMeanCols;     // columns per block
constexpr int kSoftmaxThreads = 512;

template <typename Acc>
__device__ __forceinline__ Acc neg_inf() {
  return -std::numeric_limits<Acc>::infinity();
}

// ------------------------------------------------------------------------ label index

__global__ void iota_kernel(index_t* out, index_t n) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x)
    out[i] = i;
}

// label_ptr[c] = first position k with sorted[k] >= c, for c in [0, L].
__global__ void label_ptr_kernel(const index_t* sorted, index_t m, index_t num_labels,
                                 index_t* label_ptr) {
  for (index_t c = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; c <= num_labels;
       c += static_cast<index_t>(gridDim.x) * blockDim.x) {
    index_t lo = 0, hi = m;
    while (lo < hi) {
      const index_t mid = lo + (hi - lo) / 2;
      if (sorted[mid] < c) lo = mid + 1;
      else hi = mid;
    }
    label_ptr[c] = lo;
  }
}

// ------------------------------------------------------------------------ label means

// out[t] for this thread's columns t = col0 + u * kThreads: the mean of memory rows
// label_rows[a : b) (those in [0, M)), summed in ascending row order; zeros when none. The
// column sums of label_means and refresh_means (bitwise equal to the CPU kernel's).
template <typename T, typename OutT>
__device__ __forceinline__ void write_label_mean(const T* memory, index_t num_rows, index_t dim,
                                                 const index_t* __restrict__ label_rows,
                                                 index_t a, index_t b, index_t col0, OutT* out) {
  using Acc = typename std::conditional<std::is_same<T, double>::value, double, float>::type;
  Acc acc[kMeanCols];
#pragma unroll
  for (int u = 0; u < kMeanCols; ++u) acc[u] = Acc(0);
  bool any = false;
  for (index_t q = a; q < b; ++q) {
    const index_t r = label_rows[q];
    if (r < 0 || r >= num_rows) continue;
    const T* src = memory + r * dim;
#pragma unroll
    for (int u = 0; u < kMeanCols; ++u) {
      const index_t t = col0 + static_cast<index_t>(u) * kThreads;
      if (t < dim) acc[u] = any ? acc[u] + load<Acc>(src[t]) : load<Acc>(src[t]);
    }
    any = true;
  }
  const Acc n = static_cast<Acc>(b - a);
#pragma unroll
  for (int u = 0; u < kMeanCols; ++u) {
    const index_t t = col0 + static_cast<index_t>(u) * kThreads;
    if (t >= dim) continue;
    Acc v = any ? acc[u] : Acc(0);
    if (any && b - a > 1) v = v / n;
    store(out + t, v);
  }
}

template <typename T, typename MeansT>
__global__ void label_means_kernel(const T* __restrict__ memory, index_t num_rows, index_t dim,
                                   const index_t* __restrict__ label_ptr,
                                   const index_t* __restrict__ label_rows, index_t num_labels,
                                   const index_t* __restrict__ labels, index_t label0,
                                   MeansT* __restrict__ means) {
  const index_t k = blockIdx.x;
  const index_t c = labels ? labels[k] : label0 + k;
  const index_t col0 = static_cast<index_t>(blockIdx.y) * kMeanChunk + threadIdx.x;
  index_t a = 0, b = 0;
  if (c >= 0 && c < num_labels) {
    a = label_ptr[c];
    b = label_ptr[c + 1];
  }
  write_label_mean(memory, num_rows, dim, label_rows, a, b, col0, means + k * dim);
}

// grid (B, column chunks): the block of the first batch entry with label c writes row c.
// memory is read (member rows) and written (row c) here, so it is not __restrict__.
template <typename T>
__global__ void refresh_means_kernel(T* memory, index_t num_rows, index_t dim,
                                     const index_t* __restrict__ rows,
                                     const index_t* __restrict__ row_labels,
                                     const index_t* __restrict__ label_ptr,
                                     const index_t* __restrict__ label_rows, index_t num_labels) {
  const index_t i = blockIdx.x;
  const index_t r = rows[i];
  if (r < 0 || r >= num_rows) return;  // (uniform over the block, like every exit below)
  const index_t c = row_labels[r];
  if (c < 0 || c >= num_labels || c >= num_rows) return;
  const index_t a = label_ptr[c], b = label_ptr[c + 1];
  if (a >= b || (b - a == 1 && label_rows[a] == c)) return;  // no rows, or its own mean
  int earlier = 0;
  for (index_t j = threadIdx.x; j < i; j += blockDim.x) {
    const index_t rj = rows[j];
    if (rj >= 0 && rj < num_rows && row_labels[rj] == c) earlier = 1;
  }
  if (__syncthreads_or(earlier)) return;
  const index_t col0 = static_cast<index_t>(blockIdx.y) * kMeanChunk + threadIdx.x;
  write_label_mean(memory, num_rows, dim, label_rows, a, b, col0, memory + c * dim);
}

// ------------------------------------------------------------------------ online softmax

template <typename Acc, typename ProbT>
__global__ void softmax_block_kernel(const Acc* scores, ProbT* probs,  // may alias: no restrict
                                     index_t count, index_t ld, index_t label0,
                                     const index_t* __restrict__ label_ptr,
                                     const index_t* __restrict__ targets, Acc inv_temp,
                                     Acc* run_max, Acc* run_sum, Acc* target_logit,
                                     Acc* expected, index_t dim, bool first_block) {
  __shared__ Acc smem[32];
  const index_t i = blockIdx.x;
  const Acc* srow = scores + i * ld;
  ProbT* prow = probs + i * ld;
  const index_t* ptr = label_ptr + label0;
  const index_t yc = targets[i] - label0;
  Acc bmax = neg_inf<Acc>();
  for (index_t c = threadIdx.x; c < count; c += blockDim.x) {
    if (ptr[c + 1] > ptr[c]) bmax = max(bmax, srow[c] * inv_temp);
    if (c == yc) target_logit[i] = srow[c] * inv_temp;
  }
  // the first block starts the state: one writer per value (the target's thread above, or
  // thread 0 here when the target is not in this block)
  if (first_block && threadIdx.x == 0 && !(yc >= 0 && yc < count)) target_logit[i] = Acc(0);
  bmax = block_reduce(bmax, smem, MaxOp(), neg_inf<Acc>());
  const Acc m_old = first_block ? neg_inf<Acc>() : run_max[i];
  const Acc m_new = max(m_old, bmax);
  if (m_new == neg_inf<Acc>()) {  // nothing present so far (uniform across the block)
    for (index_t c = threadIdx.x; c < count; c += blockDim.x) store(prow + c, Acc(0));
    if (first_block && threadIdx.x == 0) {
      run_max[i] = m_new;
      run_sum[i] = Acc(0);
    }
    return;
  }
  Acc sum = Acc(0);
  for (index_t c = threadIdx.x; c < count; c += blockDim.x) {
    const Acc p = ptr[c + 1] > ptr[c] ? m_exp(srow[c] * inv_temp - m_new) : Acc(0);
    store(prow + c, p);
    sum += p;
  }
  sum = block_reduce(sum, smem, SumOp(), Acc(0));
  const Acc alpha = m_exp(m_old - m_new);  // 0 when m_old = -inf
  if (threadIdx.x == 0) {
    run_sum[i] = first_block ? sum : run_sum[i] * alpha + sum;
    run_max[i] = m_new;
  }
  if (expected && !first_block && alpha != Acc(1)) {
    Acc* e = expected + i * dim;
    for (index_t t = threadIdx.x; t < dim; t += blockDim.x) e[t] *= alpha;
  }
}

// ------------------------------------------------------------------------ finalize

template <typename Acc, typename MeansT>
__global__ void finalize_kernel(index_t dim, const Acc* __restrict__ run_max,
                                const Acc* __restrict__ run_sum,
                                const Acc* __restrict__ target_logit,
                                const Acc* __restrict__ expected,
                                const MeansT* __restrict__ target_means, Acc inv_temp, Acc eps,
                                Acc* __restrict__ per_sample, Acc* __restrict__ grad_cache) {
  const index_t i = blockIdx.x;
  const Acc log_eps = eps > Acc(0) ? m_log(eps) : neg_inf<Acc>();
  const Acc m = run_max[i];
  const Acc log_z = m + m_log(run_sum[i]);
  const Acc log_ze = log_add_exp(log_z, log_eps);
  const Acc log_p = target_logit[i] - log_ze;
  const Acc log_pe = log_add_exp(log_p, log_eps);
  if (threadIdx.x == 0) per_sample[i] = -log_pe;
  if (!grad_cache) return;
  const Acc w = m_exp(log_p - log_pe);
  const Acc scale = m_exp(m - log_ze);
  const Acc wt = w * inv_temp;
  const Acc* e = expected + i * dim;
  const MeansT* cy = target_means + i * dim;
  Acc* g = grad_cache + i * dim;
  for (index_t t = threadIdx.x; t < dim; t += blockDim.x)
    g[t] = wt * (e[t] * scale - load<Acc>(cy[t]));
}

template <typename Acc>
__global__ void mean_kernel(const Acc* __restrict__ values, index_t n, Acc* __restrict__ out) {
  __shared__ Acc smem[32];
  Acc s = Acc(0);
  for (index_t i = threadIdx.x; i < n; i += blockDim.x) s += values[i];
  s = block_reduce(s, smem, SumOp(), Acc(0));
  if (threadIdx.x == 0) out[0] = n > 0 ? s / static_cast<Acc>(n) : Acc(0);
}

// ------------------------------------------------------------------------ backward

template <typename Acc>
__global__ void backward_kernel(index_t batch, index_t dim, const Acc* __restrict__ grad_loss,
                                const Acc* __restrict__ grad_per_sample,
                                const Acc* __restrict__ grad_cache, Acc* __restrict__ out) {
  const Acc gl = grad_loss[0] / static_cast<Acc>(batch);
  const index_t total = batch * dim;
  for (index_t k = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t i = k / dim;
    const Acc c = gl + (grad_per_sample ? grad_per_sample[i] : Acc(0));
    out[k] = c * grad_cache[k];
  }
}

// ------------------------------------------------------------------------ update

template <typename T, typename Acc>
__global__ void update_kernel(T* memory, index_t num_rows, index_t dim,
                              const index_t* __restrict__ rows, const Acc* __restrict__ features,
                              index_t batch, Acc momentum) {
  __shared__ double smem[32];
  __shared__ int first;
  const index_t i = blockIdx.x;
  const index_t r = rows[i];
  if (r < 0 || r >= num_rows) return;  // the wrapper rejects these; never write out of bounds
  if (threadIdx.x == 0) {
    int f = 1;
    for (index_t j = 0; j < i; ++j)
      if (rows[j] == r) {
        f = 0;
        break;
      }
    first = f;
  }
  __syncthreads();
  if (!first) return;
  const Acc keep = momentum, take = Acc(1) - momentum;
  T* row = memory + r * dim;
  for (index_t j = i; j < batch; ++j) {
    if (rows[j] != r) continue;
    const Acc* f = features + j * dim;
    double norm2 = 0.0;
    for (index_t t = threadIdx.x; t < dim; t += blockDim.x) {
      const Acc v = keep * load<Acc>(row[t]) + take * f[t];
      norm2 += static_cast<double>(v) * static_cast<double>(v);
    }
    norm2 = block_reduce(norm2, smem, SumOp(), 0.0);
    const double nrm = sqrt(norm2);
    const Acc inv = static_cast<Acc>(1.0 / (nrm > 1e-12 ? nrm : 1e-12));
    for (index_t t = threadIdx.x; t < dim; t += blockDim.x) {
      const Acc v = keep * load<Acc>(row[t]) + take * f[t];
      store(row + t, v * inv);
    }
    __syncthreads();  // the next update of this row reads what this one wrote
  }
}

Status check_sizes(const char* fn, index_t batch, index_t dim) {
  if (batch < 0 || dim < 1)
    return Status::Error(std::string(fn) + ": need batch >= 0 and dim >= 1, got batch=" +
                         std::to_string(batch) + " dim=" + std::to_string(dim));
  return Status::Ok();
}

// The grid of the label-mean kernels: one block per label (or sample) and chunk of
// kMeanChunk columns.
Status mean_grid(const char* fn, index_t count, index_t dim, dim3& grid) {
  Status st = check_sizes(fn, count, dim);
  if (!st.ok()) return st;
  const index_t chunks = (dim + kMeanChunk - 1) / kMeanChunk;
  if (count > std::numeric_limits<int>::max() || chunks > 65535)
    return Status::Error(std::string(fn) + ": too many labels or columns for one grid");
  grid = dim3(static_cast<unsigned>(count), static_cast<unsigned>(chunks));
  return Status::Ok();
}

}  // namespace

// ------------------------------------------------------------------------ launchers

Status hybrid_memory_label_index_cuda(const index_t* row_labels, index_t num_rows,
                                      index_t num_labels, index_t* label_ptr, index_t* label_rows,
                                      Allocator& scratch, cudaStream_t stream) {
  if (num_rows < 0 || num_labels < 0)
    return Status::Error("hybrid_memory_label_index: need num_rows >= 0 and num_labels >= 0");
  if (num_rows > std::numeric_limits<int>::max())
    return Status::Error("hybrid_memory_label_index: more than 2^31 - 1 rows");
  if (num_rows > 0) {
    int end_bit = 1;
    while (end_bit < 63 && (index_t(1) << end_bit) <= num_labels) ++end_bit;
    auto* keys_out = scratch_alloc<index_t>(scratch, num_rows);
    auto* values_in = scratch_alloc<index_t>(scratch, num_rows);
    if (!keys_out || !values_in)
      return Status::Error("hybrid_memory_label_index: out of device memory");
    iota_kernel<<<grid_for(num_rows, kThreads), kThreads, 0, stream>>>(values_in,
                                                                                   num_rows);
    Status st = launch_status("hybrid_memory_label_index (iota)");
    if (!st.ok()) return st;
    std::size_t temp_bytes = 0;
    SMCR_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, row_labels, keys_out,
                                                    values_in, label_rows,
                                                    static_cast<int>(num_rows), 0, end_bit,
                                                    stream),
                    "hybrid_memory_label_index (sort size)");
    void* temp = scratch.allocate(temp_bytes);
    if (!temp) return Status::Error("hybrid_memory_label_index: out of device memory");
    SMCR_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, row_labels, keys_out,
                                                    values_in, label_rows,
                                                    static_cast<int>(num_rows), 0, end_bit,
                                                    stream),
                    "hybrid_memory_label_index (sort)");
    label_ptr_kernel<<<grid_for(num_labels + 1, kThreads), kThreads, 0, stream>>>(
        keys_out, num_rows, num_labels, label_ptr);
    return launch_status("hybrid_memory_label_index (label_ptr)");
  }
  label_ptr_kernel<<<grid_for(num_labels + 1, kThreads), kThreads, 0, stream>>>(
      nullptr, 0, num_labels, label_ptr);
  return launch_status("hybrid_memory_label_index (label_ptr)");
}

template <typename T, typename MeansT>
Status hybrid_memory_label_means_cuda(const T* memory, index_t num_rows, index_t dim,
                                      const index_t* label_ptr, const index_t* label_rows,
                                      index_t num_labels, const index_t* labels, index_t label0,
                                      index_t count, MeansT* means, cudaStream_t stream) {
  dim3 grid;
  Status st = mean_grid("hybrid_memory_label_means", count, dim, grid);
  if (!st.ok() || count == 0) return st;
  label_means_kernel<T, MeansT><<<grid, kThreads, 0, stream>>>(
      memory, num_rows, dim, label_ptr, label_rows, num_labels, labels, label0, means);
  return launch_status("hybrid_memory_label_means");
}

template <typename T>
Status hybrid_memory_refresh_means_cuda(T* memory, index_t num_rows, index_t dim,
                                        const index_t* rows, index_t batch,
                                        const index_t* row_labels, const index_t* label_ptr,
                                        const index_t* label_rows, index_t num_labels,
                                        cudaStream_t stream) {
  dim3 grid;
  Status st = mean_grid("hybrid_memory_refresh_means", batch, dim, grid);
  if (!st.ok() || batch == 0) return st;
  refresh_means_kernel<T><<<grid, kThreads, 0, stream>>>(memory, num_rows, dim, rows, row_labels,
                                                         label_ptr, label_rows, num_labels);
  return launch_status("hybrid_memory_refresh_means");
}

template <typename Acc, typename ProbT>
Status hybrid_memory_softmax_block_cuda(const Acc* scores, ProbT* probs, index_t batch,
                                        index_t count, index_t ld, index_t label0,
                                        const index_t* label_ptr, const index_t* targets,
                                        Acc inv_temp, Acc* run_max, Acc* run_sum,
                                        Acc* target_logit, Acc* expected, index_t dim,
                                        bool first_block, cudaStream_t stream) {
  if (batch < 0 || count < 0 || ld < count)
    return Status::Error("hybrid_memory_softmax_block: need batch >= 0 and 0 <= count <= ld");
  if (batch == 0 || count == 0) return Status::Ok();
  if (batch > std::numeric_limits<int>::max())
    return Status::Error("hybrid_memory_softmax_block: batch too large");
  softmax_block_kernel<Acc, ProbT><<<static_cast<unsigned>(batch), kSoftmaxThreads, 0, stream>>>(
      scores, probs, count, ld, label0, label_ptr, targets, inv_temp, run_max, run_sum,
      target_logit, expected, dim, first_block);
  return launch_status("hybrid_memory_softmax_block");
}

template <typename Acc, typename MeansT>
Status hybrid_memory_finalize_cuda(index_t batch, index_t dim, const Acc* run_max,
                                   const Acc* run_sum, const Acc* target_logit,
                                   const Acc* expected, const MeansT* target_means, Acc inv_temp,
                                   Acc eps, Acc* per_sample, Acc* loss, Acc* grad_cache,
                                   cudaStream_t stream) {
  Status st = check_sizes("hybrid_memory_finalize", batch, dim);
  if (!st.ok()) return st;
  if (batch > std::numeric_limits<int>::max())
    return Status::Error("hybrid_memory_finalize: batch too large");
  const bool want_grad = expected && target_means && grad_cache;
  if (batch > 0) {
    finalize_kernel<Acc, MeansT><<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(
        dim, run_max, run_sum, target_logit, want_grad ? expected : nullptr,
        want_grad ? target_means : nullptr, inv_temp, eps, per_sample,
        want_grad ? grad_cache : nullptr);
    st = launch_status("hybrid_memory_finalize");
    if (!st.ok()) return st;
  }
  mean_kernel<Acc><<<1, kThreads, 0, stream>>>(per_sample, batch, loss);
  return launch_status("hybrid_memory_finalize (mean)");
}

template <typename Acc>
Status hybrid_memory_backward_cuda(index_t batch, index_t dim, const Acc* grad_loss,
                                   const Acc* grad_per_sample, const Acc* grad_cache,
                                   Acc* grad_features, cudaStream_t stream) {
  Status st = check_sizes("hybrid_memory_backward", batch, dim);
  if (!st.ok() || batch == 0) return st;
  backward_kernel<Acc><<<grid_for(batch * dim, kThreads), kThreads, 0, stream>>>(
      batch, dim, grad_loss, grad_per_sample, grad_cache, grad_features);
  return launch_status("hybrid_memory_backward");
}

template <typename T, typename Acc>
Status hybrid_memory_update_cuda(T* memory, index_t num_rows, index_t dim, const index_t* rows,
                                 const Acc* features, index_t batch, Acc momentum,
                                 cudaStream_t stream) {
  Status st = check_sizes("hybrid_memory_update", batch, dim);
  if (!st.ok() || batch == 0) return st;
  if (!(momentum >= Acc(0) && momentum <= Acc(1)))
    return Status::Error("hybrid_memory_update: momentum must be in [0, 1]");
  if (batch > std::numeric_limits<int>::max())
    return Status::Error("hybrid_memory_update: batch too large");
  update_kernel<T, Acc><<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(
      memory, num_rows, dim, rows, features, batch, momentum);
  return launch_status("hybrid_memory_update");
}

// ------------------------------------------------------------------------ instantiations

template Status hybrid_memory_label_means_cuda<float, float>(const float*, index_t, index_t,
                                                             const index_t*, const index_t*,
                                                             index_t, const index_t*, index_t,
                                                             index_t, float*, cudaStream_t);
template Status hybrid_memory_label_means_cuda<bf16, float>(const bf16*, index_t, index_t,
                                                            const index_t*, const index_t*,
                                                            index_t, const index_t*, index_t,
                                                            index_t, float*, cudaStream_t);
template Status hybrid_memory_label_means_cuda<bf16, bf16>(const bf16*, index_t, index_t,
                                                           const index_t*, const index_t*,
                                                           index_t, const index_t*, index_t,
                                                           index_t, bf16*, cudaStream_t);
template Status hybrid_memory_label_means_cuda<double, double>(const double*, index_t, index_t,
                                                               const index_t*, const index_t*,
                                                               index_t, const index_t*, index_t,
                                                               index_t, double*, cudaStream_t);

template Status hybrid_memory_softmax_block_cuda<float, float>(
    const float*, float*, index_t, index_t, index_t, index_t, const index_t*, const index_t*,
    float, float*, float*, float*, float*, index_t, bool, cudaStream_t);
template Status hybrid_memory_softmax_block_cuda<float, bf16>(
    const float*, bf16*, index_t, index_t, index_t, index_t, const index_t*, const index_t*,
    float, float*, float*, float*, float*, index_t, bool, cudaStream_t);
template Status hybrid_memory_softmax_block_cuda<double, double>(
    const double*, double*, index_t, index_t, index_t, index_t, const index_t*, const index_t*,
    double, double*, double*, double*, double*, index_t, bool, cudaStream_t);

template Status hybrid_memory_finalize_cuda<float, float>(index_t, index_t, const float*,
                                                          const float*, const float*,
                                                          const float*, const float*, float,
                                                          float, float*, float*, float*,
                                                          cudaStream_t);
template Status hybrid_memory_finalize_cuda<float, bf16>(index_t, index_t, const float*,
                                                         const float*, const float*, const float*,
                                                         const bf16*, float, float, float*,
                                                         float*, float*, cudaStream_t);
template Status hybrid_memory_finalize_cuda<double, double>(index_t, index_t, const double*,
                                                            const double*, const double*,
                                                            const double*, const double*, double,
                                                            double, double*, double*, double*,
                                                            cudaStream_t);

template Status hybrid_memory_backward_cuda<float>(index_t, index_t, const float*, const float*,
                                                   const float*, float*, cudaStream_t);
template Status hybrid_memory_backward_cuda<double>(index_t, index_t, const double*,
                                                    const double*, const double*, double*,
                                                    cudaStream_t);

template Status hybrid_memory_update_cuda<float, float>(float*, index_t, index_t, const index_t*,
                                                        const float*, index_t, float,
                                                        cudaStream_t);
template Status hybrid_memory_update_cuda<bf16, float>(bf16*, index_t, index_t, const index_t*,
                                                       const float*, index_t, float,
                                                       cudaStream_t);
template Status hybrid_memory_update_cuda<double, double>(double*, index_t, index_t,
                                                          const index_t*, const double*, index_t,
                                                          double, cudaStream_t);

template Status hybrid_memory_refresh_means_cuda<float>(float*, index_t, index_t, const index_t*,
                                                        index_t, const index_t*, const index_t*,
                                                        const index_t*, index_t, cudaStream_t);
template Status hybrid_memory_refresh_means_cuda<bf16>(bf16*, index_t, index_t, const index_t*,
                                                       index_t, const index_t*, const index_t*,
                                                       const index_t*, index_t, cudaStream_t);
template Status hybrid_memory_refresh_means_cuda<double>(double*, index_t, index_t,
                                                         const index_t*, index_t, const index_t*,
                                                         const index_t*, const index_t*, index_t,
                                                         cudaStream_t);

}  // namespace smcr
