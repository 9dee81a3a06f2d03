// Helpers shared by the torch glue: status checking and an Allocator over torch's
// allocator (so kernel scratch shows up in torch's memory statistics and is cached).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <string>
#include <type_traits>
#include <vector>

#include "../kernels/common.h"

namespace smcr_glue {

// Error messages are built by string concatenation, never by c10::str's ostringstream:
// on a machine whose C++ runtime differs from the compiler's headers (seen on the lent GPU
// machine: a multi-argument TORCH_CHECK in this library crashed while a single-string one
// worked), inlined stream code can crash, plain std::string concatenation does not.
namespace detail {
inline void append(std::string& s, const char* v) { s += v; }
inline void append(std::string& s, const std::string& v) { s += v; }
inline void append(std::string& s, char v) { s += v; }
inline void append(std::string& s, bool v) { s += v ? "true" : "false"; }
template <typename T, std::enable_if_t<std::is_integral<T>::value && !std::is_same<T, bool>::value &&
                                           !std::is_same<T, char>::value,
                                       int> = 0>
inline void append(std::string& s, T v) {
  s += std::to_string(v);
}
template <typename T, std::enable_if_t<std::is_floating_point<T>::value, int> = 0>
inline void append(std::string& s, T v) {
  s += std::to_string(static_cast<double>(v));
}
inline void append(std::string& s, c10::IntArrayRef v) {
  s += "(";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(v[i]);
  }
  s += v.size() == 1 ? ",)" : ")";
}
inline void append(std::string& s, at::ScalarType v) { s += c10::toString(v); }
inline void append(std::string& s, caffe2::TypeMeta v) {
  const auto n = v.name();
  s.append(n.data(), n.size());
}
inline void append(std::string& s, const c10::Device& v) { s += v.str(); }
}  // namespace detail

template <typename... Args>
std::string concat(const Args&... args) {
  std::string s;
  (detail::append(s, args), ...);
  return s;
}

}  // namespace smcr_glue

#define SMCR_CHECK(cond, ...)                                   \
  do {                                                          \
    if (C10_UNLIKELY(!(cond))) {                                \
      TORCH_CHECK(false, ::smcr_glue::concat(__VA_ARGS__));     \
    }                                                           \
  } while (0)

namespace smcr_glue {

inline void check_status(const smcr::Status& st) {
  if (!st.ok()) SMCR_CHECK(false, st.message);
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
  SMCR_CHECK(x.dim() == 2, name, " must be 2-D (N, D), got ", x.dim(), "-D shape ", x.sizes());
  SMCR_CHECK(x.scalar_type() == at::kFloat, name, " must be float32, got ", x.scalar_type());
  SMCR_CHECK(x.is_contiguous(), name, " must be contiguous");
}

// The inputs of the Jaccard op: features and their (N, K) neighbour lists on one device.
inline void check_knn_lists(const at::Tensor& x, const at::Tensor& knn_idx,
                            const at::Tensor& knn_dist) {
  check_features(x, "features");
  const int64_t n = x.size(0);
  SMCR_CHECK(knn_idx.dim() == 2 && knn_idx.size(0) == n && knn_idx.scalar_type() == at::kLong &&
                  knn_idx.is_contiguous() && knn_idx.device() == x.device(),
              "knn_indices must be a contiguous int64 (N, K) tensor with N=", n,
              " on the features' device, got ", knn_idx.sizes(), " ", knn_idx.scalar_type(), " on ",
              knn_idx.device());
  SMCR_CHECK(knn_dist.sizes() == knn_idx.sizes() && knn_dist.scalar_type() == at::kFloat &&
                  knn_dist.is_contiguous() && knn_dist.device() == x.device(),
              "knn_distances must be a contiguous float32 tensor shaped like knn_indices, got ",
              knn_dist.sizes(), " ", knn_dist.scalar_type());
}

inline void check_int64_vector(const at::Tensor& t, const char* name) {
  SMCR_CHECK(t.dim() == 1, name, " must be 1-D, got shape ", t.sizes());
  SMCR_CHECK(t.scalar_type() == at::kLong, name, " must be int64, got ", t.scalar_type());
  SMCR_CHECK(t.is_contiguous(), name, " must be contiguous");
}

inline void check_graph(const at::Tensor& indptr, const at::Tensor& indices,
                        const at::Tensor& distances) {
  check_int64_vector(indptr, "indptr");
  check_int64_vector(indices, "indices");
  SMCR_CHECK(distances.dim() == 1 && distances.scalar_type() == at::kFloat &&
                  distances.is_contiguous(),
              "distances must be a contiguous 1-D float32 tensor, got ", distances.sizes(), " ",
              distances.scalar_type());
  SMCR_CHECK(indptr.numel() >= 1, "indptr must have n + 1 >= 1 entries");
  SMCR_CHECK(indices.numel() == distances.numel(), "indices and distances must have the same ",
              "length, got ", indices.numel(), " and ", distances.numel());
  SMCR_CHECK(indptr.device() == indices.device() && indptr.device() == distances.device(),
              "indptr, indices and distances must be on the same device");
}

}  // namespace smcr_glue
