#include "reliability.h"

#include <vector>

namespace smcr {

Status cluster_iou_cpu(const index_t* labels, const index_t* other, index_t n, float* iou_out) {
  if (n < 0) return Status::Error("cluster_iou: n must be >= 0");
  for (index_t i = 0; i < n; ++i) {
    if (labels[i] < -1 || labels[i] >= n || other[i] < -1 || other[i] >= n)
      return Status::Error("cluster_iou: labels must lie in [-1, n), got " +
                           std::to_string(labels[i]) + " and " + std::to_string(other[i]) +
                           " at position " + std::to_string(i));
  }
  std::vector<index_t> size_a(n, 0), size_b(n, 0);
  for (index_t i = 0; i < n; ++i) {
    if (labels[i] >= 0) ++size_a[labels[i]];
    if (other[i] >= 0) ++size_b[other[i]];
  }
  // Counting sort of the clustered points by `labels`, then, within each cluster, the
  // contingency counts with `other` in a reusable array (reset only where touched).
  std::vector<index_t> start(n + 1, 0);
  for (index_t c = 0; c < n; ++c) start[c + 1] = start[c] + size_a[c];
  std::vector<index_t> order(start[n]);
  {
    std::vector<index_t> fill(start.begin(), start.end() - 1);
    for (index_t i = 0; i < n; ++i)
      if (labels[i] >= 0) order[fill[labels[i]]++] = i;
  }
  std::vector<index_t> inter(n, 1);  // noise in either labelling: A ∩ B = {i}
  std::vector<index_t> count(n, 0);
  for (index_t c = 0; c < n; ++c) {
    for (index_t a = start[c]; a < start[c + 1]; ++a) {
      const index_t b = other[order[a]];
      if (b >= 0) ++count[b];
    }
    for (index_t a = start[c]; a < start[c + 1]; ++a) {
      const index_t b = other[order[a]];
      if (b >= 0) inter[order[a]] = count[b];
    }
    for (index_t a = start[c]; a < start[c + 1]; ++a) {
      const index_t b = other[order[a]];
      if (b >= 0) count[b] = 0;
    }
  }
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < n; ++i) {
    const index_t sa = labels[i] >= 0 ? size_a[labels[i]] : 1;
    const index_t sb = other[i] >= 0 ? size_b[other[i]] : 1;
    const index_t in = inter[i];
    iou_out[i] = static_cast<float>(static_cast<double>(in) / static_cast<double>(sa + sb - in));
  }
  return Status::Ok();
}

}  // namespace smcr
