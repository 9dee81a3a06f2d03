// Helpers shared by the torch glue: status checking and an Allocator over torch's
// allocator (so kernel scratch shows up in torch's memory statistics and is cached).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <vector>

#include "../kernels/common.h"

namespace smcr_glue {

inline void check_status(const smcr::Status& st) {
  TORCH_CHECK(st.ok(), st.message);
}

// Scratch memory as byte tensors on a given device, freed when the allocator dies.
class TensorAllocator final : public smcr::Allocator {
 public:
  explicit TensorAllocator(c10::Device device) : device_(device) {}
  void* allocate(std::size_t bytes) override {
    at::Tensor t = at::empty({static_cast<int64_t>(bytes == 0 ? 1 : bytes)},
                             at::TensorOptions().dtype(at::kByte).device(device_));
    blocks_.push_back(t);
    return t.data_ptr();
  }

 private:
  c10::Device device_;
  std::vector<at::Tensor> blocks_;
};

inline void check_features(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 2, name, " must be 2-D (N, D), got ", x.dim(), "-D shape ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat, name, " must be float32, got ", x.scalar_type());
  TORCH_CHECK(x.is_contiguous(), name, " must be contiguous");
}

// The inputs of the Jaccard op: features and their (N, K) neighbour lists on one device.
inline void check_knn_lists(const at::Tensor& x, const at::Tensor& knn_idx,
                            const at::Tensor& knn_dist) {
  check_features(x, "features");
  const int64_t n = x.size(0);
  TORCH_CHECK(knn_idx.dim() == 2 && knn_idx.size(0) == n && knn_idx.scalar_type() == at::kLong &&
                  knn_idx.is_contiguous() && knn_idx.device() == x.device(),
              "knn_indices must be a contiguous int64 (N, K) tensor with N=", n,
              " on the features' device, got ", knn_idx.sizes(), " ", knn_idx.scalar_type(), " on ",
              knn_idx.device());
  TORCH_CHECK(knn_dist.sizes() == knn_idx.sizes() && knn_dist.scalar_type() == at::kFloat &&
                  knn_dist.is_contiguous() && knn_dist.device() == x.device(),
              "knn_distances must be a contiguous float32 tensor shaped like knn_indices, got ",
              knn_dist.sizes(), " ", knn_dist.scalar_type());
}

inline void check_int64_vector(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 1, name, " must be 1-D, got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kLong, name, " must be int64, got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

inline void check_graph(const at::Tensor& indptr, const at::Tensor& indices,
                        const at::Tensor& distances) {
  check_int64_vector(indptr, "indptr");
  check_int64_vector(indices, "indices");
  TORCH_CHECK(distances.dim() == 1 && distances.scalar_type() == at::kFloat &&
                  distances.is_contiguous(),
              "distances must be a contiguous 1-D float32 tensor, got ", distances.sizes(), " ",
              distances.scalar_type());
  TORCH_CHECK(indptr.numel() >= 1, "indptr must have n + 1 >= 1 entries");
  TORCH_CHECK(indices.numel() == distances.numel(), "indices and distances must have the same ",
              "length, got ", indices.numel(), " and ", distances.numel());
  TORCH_CHECK(indptr.device() == indices.device() && indptr.device() == distances.device(),
              "indptr, indices and distances must be on the same device");
}

}  // namespace smcr_glue
