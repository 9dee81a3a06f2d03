// Every op schema of the library, in one TORCH_LIBRARY block, and the pybind11 module
// smcr_ext._C, which exposes build information. Importing smcr_ext._C loads this shared
// library and with it the registrations of csrc/torch/*.cpp.
#include <torch/library.h>
#include <pybind11/pybind11.h>

#include <string>

#include "../kernels/common.h"

TORCH_LIBRARY(smcr, m) {
  // ---- clustering (csrc/kernels/{knn,jaccard,dbscan,reliability}) ----
  m.def("knn(Tensor features, int k, int block_size) -> (Tensor indices, Tensor distances)");
  m.def("knn_ivf(Tensor features, Tensor cell_ptr, Tensor probes, int k) -> (Tensor, Tensor)");
  m.def(
      "kreciprocal_jaccard(Tensor features, Tensor knn_indices, Tensor knn_distances, int k1, "
      "int k2, float max_dist) -> (Tensor indptr, Tensor indices, Tensor distances)");
  m.def(
      "dbscan(Tensor indptr, Tensor indices, Tensor distances, float[] eps, int min_samples) "
      "-> Tensor");
  m.def("cluster_iou(Tensor labels, Tensor other) -> Tensor");
  // ---- training losses (csrc/kernels/{hybrid_memory,soft_triplet}) ----
  m.def(
      "hybrid_memory_label_index(Tensor row_labels, int num_labels) -> (Tensor label_ptr, "
      "Tensor label_rows)");
  m.def(
      "hybrid_memory_loss(Tensor features, Tensor memory, Tensor label_ptr, Tensor label_rows, "
      "Tensor targets, float temperature, float eps, int block_size, bool compute_grad, "
      "Tensor? runs=None) -> "
      "(Tensor loss, Tensor per_sample, Tensor grad_cache)");
  m.def("_hybrid_memory_singleton_runs(Tensor label_ptr, Tensor label_rows, int min_run) -> Tensor");
  m.def(
      "_hybrid_memory_loss_backward(Tensor grad_loss, Tensor? grad_per_sample, Tensor grad_cache, "
      "ScalarType dtype) -> Tensor");
  m.def(
      "_hybrid_memory_label_means(Tensor memory, Tensor label_ptr, Tensor label_rows, "
      "Tensor labels) -> Tensor");
  m.def("hybrid_memory_update_(Tensor(a!) memory, Tensor rows, Tensor features, float momentum) -> ()");
  m.def(
      "_hybrid_memory_refresh_means_(Tensor(a!) memory, Tensor rows, Tensor row_labels, "
      "Tensor label_ptr, Tensor label_rows) -> ()");
  m.def(
      "soft_triplet(Tensor student, Tensor? teacher, Tensor labels, float margin) -> (Tensor loss, "
      "Tensor per_anchor, Tensor pos_index, Tensor neg_index, Tensor dist_ap, Tensor dist_an, "
      "Tensor grad_coef)");
  m.def(
      "_first_invalid(Tensor x, Tensor? y, Tensor? index, int bound, Tensor? counts) -> "
      "Tensor");
  m.def(
      "_soft_triplet_backward(Tensor grad_loss, Tensor? grad_per_anchor, Tensor student, "
      "Tensor pos_index, Tensor neg_index, Tensor dist_ap, Tensor dist_an, Tensor grad_coef, "
      "ScalarType dtype) -> Tensor");
}

namespace {

bool built_with_cuda() {
#ifdef SMCR_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string cuda_version() {
#ifdef SMCR_CUDA_VERSION
  return SMCR_CUDA_VERSION;
#else
  return "";
#endif
}

}  // namespace

PYBIND11_MODULE(_C, mod) {
  mod.doc() = "smcr compiled kernels: build information (ops live in torch.ops.smcr)";
  mod.def("with_cuda", &built_with_cuda, "Whether the CUDA kernels were compiled.");
  mod.def("cuda_version", &cuda_version, "CUDA version the kernels were compiled with.");
  mod.def("with_openmp", &smcr::cpu_has_openmp, "Whether the CPU kernels use OpenMP.");
  mod.def("openmp_threads", &smcr::cpu_num_threads, "OpenMP threads the CPU kernels use.");
}
