#include "dbscan.h"

#include <vector>

namespace smcr {
namespace {

index_t find_root(std::vector<index_t>& parent, index_t a) {
  while (parent[a] != a) {
    parent[a] = parent[parent[a]];  // path halving
    a = parent[a];
  }
  return a;
}

// Link the larger root under the smaller: every root is its component's smallest index.
void unite(std::vector<index_t>& parent, index_t a, index_t b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a == b) return;
  if (a < b)
    parent[b] = a;
  else
    parent[a] = b;
}

}  // namespace

Status dbscan_cpu(const CsrGraphView& g, const float* eps, int m, index_t min_samples,
                  index_t* labels_out) {
  const index_t n = g.n;
  if (n < 0) return Status::Error("dbscan: n must be >= 0");
  if (m < 1) return Status::Error("dbscan: need at least one eps");
  if (min_samples < 1)
    return Status::Error("dbscan: min_samples must be >= 1, got " + std::to_string(min_samples));
  for (int e = 0; e < m; ++e) {
    if (!(eps[e] > 0.f)) return Status::Error("dbscan: every eps must be > 0");
  }
  // Per row and eps: the end of the prefix within eps (rows are sorted by distance).
  std::vector<index_t> end(static_cast<size_t>(m) * n);
  std::vector<unsigned char> core(static_cast<size_t>(m) * n);
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < n; ++i) {
    const index_t a0 = g.indptr[i], a1 = g.indptr[i + 1];
    for (int e = 0; e < m; ++e) {
      index_t a = a0;
      index_t count = 1;  // i itself
      while (a < a1 && g.distances[a] <= eps[e]) {
        count += (g.indices[a] != i);
        ++a;
      }
      end[static_cast<size_t>(e) * n + i] = a;
      core[static_cast<size_t>(e) * n + i] = count >= min_samples;
    }
  }
#pragma omp parallel for schedule(static)
  for (int e = 0; e < m; ++e) {
    const unsigned char* is_core = core.data() + static_cast<size_t>(e) * n;
    const index_t* row_end = end.data() + static_cast<size_t>(e) * n;
    index_t* labels = labels_out + static_cast<size_t>(e) * n;
    std::vector<index_t> parent(n);
    for (index_t i = 0; i < n; ++i) parent[i] = i;
    for (index_t i = 0; i < n; ++i) {
      if (!is_core[i]) continue;
      for (index_t a = g.indptr[i]; a < row_end[i]; ++a) {
        const index_t j = g.indices[a];
        if (j != i && is_core[j]) unite(parent, i, j);
      }
    }
    std::vector<index_t> cluster_of_root(n, -1);
    index_t next = 0;
    for (index_t i = 0; i < n; ++i) {
      if (is_core[i] && find_root(parent, i) == i) cluster_of_root[i] = next++;
    }
    for (index_t i = 0; i < n; ++i) {
      if (is_core[i]) {
        labels[i] = cluster_of_root[find_root(parent, i)];
        continue;
      }
      index_t best = -1;
      for (index_t a = g.indptr[i]; a < row_end[i]; ++a) {
        const index_t j = g.indices[a];
        if (j == i || !is_core[j]) continue;
        const index_t c = cluster_of_root[find_root(parent, j)];
        if (best < 0 || c < best) best = c;
      }
      labels[i] = best;
    }
  }
  return Status::Ok();
}

}  // namespace smcr
