// Torch glue of the clustering kernels (CUDA). Compiled only in CUDA builds.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../kernels/dbscan.h"
#include "../kernels/jaccard.h"
#include "../kernels/knn.h"
#include "../kernels/reliability.h"
#include "glue.h"

namespace smcr_glue {
namespace {

std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& x, int64_t k, int64_t block) {
  check_features(x, "features");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t n = x.size(0);
  SMCR_CHECK(n >= 1, "features must have at least one row");
  SMCR_CHECK(k >= 1 && k <= n, "k must be in [1, N], got k=", k, " N=", n);
  SMCR_CHECK(k <= smcr::kKnnMaxKCuda, "k must be <= ", smcr::kKnnMaxKCuda, " on CUDA, got ", k);
  SMCR_CHECK(block >= 1, "block_size must be >= 1, got ", block);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  at::Tensor sim = at::empty({n, k}, x.options());
  at::Tensor idx = at::empty({n, k}, x.options().dtype(at::kLong));
  check_status(smcr::knn_init_cuda(n, static_cast<int>(k), sim.data_ptr<float>(),
                                   idx.data_ptr<int64_t>(), stream));
  const int64_t b = std::min<int64_t>(block, n);
  for (int64_t r0 = 0; r0 < n; r0 += b) {
    const int64_t rows = std::min(b, n - r0);
    at::Tensor xr = x.narrow(0, r0, rows);
    for (int64_t c0 = r0; c0 < n; c0 += b) {
      const int64_t cols = std::min(b, n - c0);
      at::Tensor s = at::mm(xr, x.narrow(0, c0, cols).t());  // (rows, cols)
      check_status(smcr::knn_merge_block_cuda(s.data_ptr<float>(), rows, cols, cols, c0,
                                              static_cast<int>(k), sim.data_ptr<float>() + r0 * k,
                                              idx.data_ptr<int64_t>() + r0 * k, stream));
      if (c0 != r0) {  // the symmetric block serves the column rows too
        at::Tensor st = s.t().contiguous();  // (cols, rows)
        check_status(smcr::knn_merge_block_cuda(st.data_ptr<float>(), cols, rows, rows, r0,
                                                static_cast<int>(k),
                                                sim.data_ptr<float>() + c0 * k,
                                                idx.data_ptr<int64_t>() + c0 * k, stream));
      }
    }
  }
  check_status(smcr::knn_finalize_cuda(n, static_cast<int>(k), sim.data_ptr<float>(), stream));
  return {idx, sim};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> kreciprocal_jaccard_cuda(
    const at::Tensor& x, const at::Tensor& knn_idx, const at::Tensor& knn_dist, int64_t k1,
    int64_t k2, double max_dist) {
  check_knn_lists(x, knn_idx, knn_dist);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t n = x.size(0);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  TensorAllocator scratch(x.device());
  at::Tensor indptr = at::empty({n + 1}, knn_idx.options());
  at::Tensor indices, distances;
  smcr::CsrOutputAlloc alloc = [&](smcr::index_t nnz, smcr::index_t** pi, float** pd) {
    indices = at::empty({nnz}, knn_idx.options());
    distances = at::empty({nnz}, x.options());
    *pi = indices.data_ptr<int64_t>();
    *pd = distances.data_ptr<float>();
    return smcr::Status::Ok();
  };
  check_status(smcr::kreciprocal_jaccard_cuda(
      x.data_ptr<float>(), n, x.size(1), knn_idx.data_ptr<int64_t>(), knn_dist.data_ptr<float>(),
      knn_idx.size(1), static_cast<int>(k1), static_cast<int>(k2), static_cast<float>(max_dist),
      indptr.data_ptr<int64_t>(), alloc, scratch, stream));
  return {indptr, indices, distances};
}

at::Tensor dbscan_cuda(const at::Tensor& indptr, const at::Tensor& indices,
                       const at::Tensor& distances, c10::ArrayRef<double> eps,
                       int64_t min_samples) {
  check_graph(indptr, indices, distances);
  const c10::cuda::CUDAGuard guard(indptr.device());
  const int64_t n = indptr.numel() - 1;
  std::vector<float> e(eps.begin(), eps.end());
  SMCR_CHECK(!e.empty(), "eps must hold at least one value");
  at::Tensor labels = at::empty({static_cast<int64_t>(e.size()), n}, indptr.options());
  smcr::CsrGraphView g{n, indptr.data_ptr<int64_t>(), indices.data_ptr<int64_t>(),
                       distances.data_ptr<float>()};
  TensorAllocator scratch(indptr.device());
  check_status(smcr::dbscan_cuda(g, e.data(), static_cast<int>(e.size()), min_samples,
                                 labels.data_ptr<int64_t>(), scratch,
                                 c10::cuda::getCurrentCUDAStream().stream()));
  return labels;
}

at::Tensor cluster_iou_cuda(const at::Tensor& labels, const at::Tensor& other) {
  check_int64_vector(labels, "labels");
  check_int64_vector(other, "other");
  SMCR_CHECK(labels.numel() == other.numel(), "labels and other must have the same length");
  SMCR_CHECK(labels.device() == other.device(), "labels and other must be on the same device");
  const c10::cuda::CUDAGuard guard(labels.device());
  at::Tensor iou = at::empty({labels.numel()}, labels.options().dtype(at::kFloat));
  TensorAllocator scratch(labels.device());
  check_status(smcr::cluster_iou_cuda(labels.data_ptr<int64_t>(), other.data_ptr<int64_t>(),
                                      labels.numel(), iou.data_ptr<float>(), scratch,
                                      c10::cuda::getCurrentCUDAStream().stream()));
  return iou;
}

}  // namespace

TORCH_LIBRARY_IMPL(smcr, CUDA, m) {
  m.impl("knn", &knn_cuda);
  m.impl("kreciprocal_jaccard", &kreciprocal_jaccard_cuda);
  m.impl("dbscan", &dbscan_cuda);
  m.impl("cluster_iou", &cluster_iou_cuda);
}

}  // namespace smcr_glue
