// Torch glue of the clustering kernels (CPU): tensor checks, then the framework-free
// kernels of csrc/kernels/. The CUDA registrations are in cluster_cuda.cpp.
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
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

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& x, int64_t k, int64_t block) {
  check_features(x, "features");
  const int64_t n = x.size(0);
  SMCR_CHECK(n >= 1, "features must have at least one row");
  SMCR_CHECK(k >= 1 && k <= n, "k must be in [1, N], got k=", k, " N=", n);
  SMCR_CHECK(block >= 1, "block_size must be >= 1, got ", block);
  at::Tensor sim = at::empty({n, k}, x.options());
  at::Tensor idx = at::empty({n, k}, x.options().dtype(at::kLong));
  check_status(smcr::knn_init_cpu(n, static_cast<int>(k), sim.data_ptr<float>(),
                                  idx.data_ptr<int64_t>()));
  const int64_t b = std::min(block, n);
  // X·Xᵀ is symmetric: compute the upper block triangle only and let every off-diagonal
  // block serve its rows (merge) and its columns (transposed merge).
  for (int64_t r0 = 0; r0 < n; r0 += b) {
    const int64_t rows = std::min(b, n - r0);
    at::Tensor xr = x.narrow(0, r0, rows);
    for (int64_t c0 = r0; c0 < n; c0 += b) {
      const int64_t cols = std::min(b, n - c0);
      at::Tensor s = at::mm(xr, x.narrow(0, c0, cols).t());  // (rows, cols)
      check_status(smcr::knn_merge_block_cpu(s.data_ptr<float>(), rows, cols, cols, c0,
                                             static_cast<int>(k),
                                             sim.data_ptr<float>() + r0 * k,
                                             idx.data_ptr<int64_t>() + r0 * k));
      if (c0 != r0) {
        check_status(smcr::knn_merge_block_transposed_cpu(
            s.data_ptr<float>(), rows, cols, cols, r0, static_cast<int>(k),
            sim.data_ptr<float>() + c0 * k, idx.data_ptr<int64_t>() + c0 * k));
      }
    }
  }
  check_status(smcr::knn_finalize_cpu(n, static_cast<int>(k), sim.data_ptr<float>()));
  return {idx, sim};
}

// Inverted-file search over contiguous cells: the rows of x are ordered by cell
// (cell c holds rows cell_ptr[c] .. cell_ptr[c+1]); every query of cell a searches the
// cells probes[a, :] (distinct, probes[a, 0] == a). One small GEMM per (cell, probed cell)
// pair, merged with the gathered-merge kernel; lists are in x's (cell-sorted) row order.
std::tuple<at::Tensor, at::Tensor> knn_ivf_cpu(const at::Tensor& x, const at::Tensor& cell_ptr,
                                               const at::Tensor& probes, int64_t k) {
  check_features(x, "features");
  check_int64_vector(cell_ptr, "cell_ptr");
  SMCR_CHECK(probes.dim() == 2 && probes.scalar_type() == at::kLong && probes.is_contiguous(),
              "probes must be a contiguous int64 (num_cells, nprobe) tensor");
  const int64_t n = x.size(0);
  const int64_t cells = cell_ptr.numel() - 1;
  SMCR_CHECK(probes.size(0) == cells, "probes must have one row per cell");
  SMCR_CHECK(k >= 1 && k <= n, "k must be in [1, N], got ", k);
  const int64_t* cp = cell_ptr.data_ptr<int64_t>();
  SMCR_CHECK(cp[0] == 0 && cp[cells] == n, "cell_ptr must start at 0 and end at N");
  const int64_t* pr = probes.data_ptr<int64_t>();
  const int64_t nprobe = probes.size(1);
  for (int64_t t = 0; t < cells * nprobe; ++t)
    SMCR_CHECK(pr[t] >= 0 && pr[t] < cells, "probes must hold cell ids in [0, ", cells, ")");
  at::Tensor sim = at::empty({n, k}, x.options());
  at::Tensor idx = at::empty({n, k}, x.options().dtype(at::kLong));
  check_status(smcr::knn_init_cpu(n, static_cast<int>(k), sim.data_ptr<float>(),
                                  idx.data_ptr<int64_t>()));
  at::Tensor ids = at::arange(n, x.options().dtype(at::kLong));
  const int64_t* id = ids.data_ptr<int64_t>();
  for (int64_t a = 0; a < cells; ++a) {
    const int64_t qa = cp[a], qn = cp[a + 1] - cp[a];
    if (qn == 0) continue;
    at::Tensor xq = x.narrow(0, qa, qn);
    for (int64_t p = 0; p < nprobe; ++p) {
      const int64_t b = pr[a * nprobe + p];
      const int64_t ma = cp[b], mn = cp[b + 1] - cp[b];
      if (mn == 0) continue;
      at::Tensor s = at::mm(xq, x.narrow(0, ma, mn).t());  // (qn, mn)
      check_status(smcr::knn_merge_gather_cpu(s.data_ptr<float>(), qn, mn, mn, id + qa, id + ma,
                                              static_cast<int>(k), sim.data_ptr<float>(),
                                              idx.data_ptr<int64_t>()));
    }
  }
  check_status(smcr::knn_finalize_cpu(n, static_cast<int>(k), sim.data_ptr<float>()));
  return {idx, sim};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> kreciprocal_jaccard_cpu(
    const at::Tensor& x, const at::Tensor& knn_idx, const at::Tensor& knn_dist, int64_t k1,
    int64_t k2, double max_dist) {
  check_knn_lists(x, knn_idx, knn_dist);
  const int64_t n = x.size(0);
  at::Tensor indptr = at::empty({n + 1}, knn_idx.options());
  at::Tensor indices, distances;
  smcr::CsrOutputAlloc alloc = [&](smcr::index_t nnz, smcr::index_t** pi, float** pd) {
    indices = at::empty({nnz}, knn_idx.options());
    distances = at::empty({nnz}, x.options());
    *pi = indices.data_ptr<int64_t>();
    *pd = distances.data_ptr<float>();
    return smcr::Status::Ok();
  };
  check_status(smcr::kreciprocal_jaccard_cpu(
      x.data_ptr<float>(), n, x.size(1), knn_idx.data_ptr<int64_t>(), knn_dist.data_ptr<float>(),
      knn_idx.size(1), static_cast<int>(k1), static_cast<int>(k2), static_cast<float>(max_dist),
      indptr.data_ptr<int64_t>(), alloc));
  return {indptr, indices, distances};
}

at::Tensor dbscan_cpu(const at::Tensor& indptr, const at::Tensor& indices,
                      const at::Tensor& distances, c10::ArrayRef<double> eps,
                      int64_t min_samples) {
  check_graph(indptr, indices, distances);
  const int64_t n = indptr.numel() - 1;
  std::vector<float> e(eps.begin(), eps.end());
  SMCR_CHECK(!e.empty(), "eps must hold at least one value");
  at::Tensor labels = at::empty({static_cast<int64_t>(e.size()), n}, indptr.options());
  smcr::CsrGraphView g{n, indptr.data_ptr<int64_t>(), indices.data_ptr<int64_t>(),
                       distances.data_ptr<float>()};
  check_status(smcr::dbscan_cpu(g, e.data(), static_cast<int>(e.size()), min_samples,
                                labels.data_ptr<int64_t>()));
  return labels;
}

at::Tensor cluster_iou_cpu(const at::Tensor& labels, const at::Tensor& other) {
  check_int64_vector(labels, "labels");
  check_int64_vector(other, "other");
  SMCR_CHECK(labels.numel() == other.numel(), "labels and other must have the same length, got ",
              labels.numel(), " and ", other.numel());
  at::Tensor iou = at::empty({labels.numel()}, labels.options().dtype(at::kFloat));
  check_status(smcr::cluster_iou_cpu(labels.data_ptr<int64_t>(), other.data_ptr<int64_t>(),
                                     labels.numel(), iou.data_ptr<float>()));
  return iou;
}

}  // namespace

TORCH_LIBRARY_IMPL(smcr, CPU, m) {
  m.impl("knn", &knn_cpu);
  m.impl("knn_ivf", &knn_ivf_cpu);
  m.impl("kreciprocal_jaccard", &kreciprocal_jaccard_cpu);
  m.impl("dbscan", &dbscan_cpu);
  m.impl("cluster_iou", &cluster_iou_cpu);
}

}  // namespace smcr_glue
