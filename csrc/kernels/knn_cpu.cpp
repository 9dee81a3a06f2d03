#include "knn.h"

#include <algorithm>
#include <limits>
#include <vector>

namespace smcr {
namespace {

// Is (s, j) strictly better than (bs, bj)? Higher similarity first, then smaller index;
// an empty slot (bj < 0) loses to everything.
inline bool better(float s, index_t j, float bs, index_t bj) {
  return s > bs || (s == bs && (bj < 0 || j < bj));
}

inline void insert_sorted(float s, index_t j, int k, float* bs, index_t* bi) {
  int pos = k - 1;
  while (pos > 0 && better(s, j, bs[pos - 1], bi[pos - 1])) {
    bs[pos] = bs[pos - 1];
    bi[pos] = bi[pos - 1];
    --pos;
  }
  bs[pos] = s;
  bi[pos] = j;
}

Status check_args(index_t rows, int k) {
  if (rows < 0) return Status::Error("knn: rows must be >= 0, got " + std::to_string(rows));
  if (k < 1) return Status::Error("knn: k must be >= 1, got " + std::to_string(k));
  return Status::Ok();
}

}  // namespace

Status knn_init_cpu(index_t rows, int k, float* best_sim, index_t* best_idx) {
  Status st = check_args(rows, k);
  if (!st.ok()) return st;
  const index_t total = rows * static_cast<index_t>(k);
  std::fill(best_sim, best_sim + total, -std::numeric_limits<float>::infinity());
  std::fill(best_idx, best_idx + total, index_t(-1));
  return Status::Ok();
}

namespace {

// Merge one row of similarities into a running list; col_id(c) names candidate c.
template <typename ColId>
inline void merge_row(const float* srow, index_t cols, ColId col_id, int k, float* bs,
                      index_t* bi) {
  float thr = bs[k - 1];
  index_t thr_idx = bi[k - 1];
  for (index_t c = 0; c < cols; ++c) {
    const float s = srow[c];
    if (s < thr) continue;  // the common case: one compare per candidate
    const index_t j = col_id(c);
    if (!better(s, j, thr, thr_idx)) continue;
    insert_sorted(s, j, k, bs, bi);
    thr = bs[k - 1];
    thr_idx = bi[k - 1];
  }
}

}  // namespace

Status knn_merge_block_cpu(const float* sims, index_t rows, index_t cols, index_t ld,
                           index_t col0, int k, float* best_sim, index_t* best_idx) {
  Status st = check_args(rows, k);
  if (!st.ok()) return st;
  if (cols < 0 || ld < cols)
    return Status::Error("knn_merge_block: need 0 <= cols <= ld, got cols=" +
                         std::to_string(cols) + " ld=" + std::to_string(ld));
#pragma omp parallel for schedule(static)
  for (index_t r = 0; r < rows; ++r)
    merge_row(sims + r * ld, cols, [col0](index_t c) { return col0 + c; }, k, best_sim + r * k,
              best_idx + r * k);
  return Status::Ok();
}

Status knn_merge_gather_cpu(const float* sims, index_t rows, index_t cols, index_t ld,
                            const index_t* row_ids, const index_t* col_ids, int k,
                            float* best_sim, index_t* best_idx) {
  Status st = check_args(rows, k);
  if (!st.ok()) return st;
  if (cols < 0 || ld < cols) return Status::Error("knn_merge_gather: need 0 <= cols <= ld");
#pragma omp parallel for schedule(static)
  for (index_t r = 0; r < rows; ++r)
    merge_row(sims + r * ld, cols, [col_ids](index_t c) { return col_ids[c]; }, k,
              best_sim + row_ids[r] * k, best_idx + row_ids[r] * k);
  return Status::Ok();
}

Status knn_merge_block_transposed_cpu(const float* sims, index_t rows, index_t cols, index_t ld,
                                      index_t row0, int k, float* best_sim, index_t* best_idx) {
  Status st = check_args(cols, k);
  if (!st.ok()) return st;
  if (rows < 0 || ld < cols)
    return Status::Error("knn_merge_block_transposed: need rows >= 0 and cols <= ld");
  // Groups of 16 output lists (one cache line of a sims row): every sims row segment is
  // read once per group, and the group's thresholds stay in registers.
  constexpr index_t G = 16;
  const index_t groups = (cols + G - 1) / G;
#pragma omp parallel for schedule(dynamic, 4)
  for (index_t gi = 0; gi < groups; ++gi) {
    const index_t c0 = gi * G;
    const index_t gc = std::min(G, cols - c0);
    float thr[G];
    index_t thr_idx[G];
    for (index_t c = 0; c < gc; ++c) {
      thr[c] = best_sim[(c0 + c) * k + k - 1];
      thr_idx[c] = best_idx[(c0 + c) * k + k - 1];
    }
    for (index_t r = 0; r < rows; ++r) {
      const float* srow = sims + r * ld + c0;
      const index_t j = row0 + r;
      for (index_t c = 0; c < gc; ++c) {
        const float s = srow[c];
        if (s < thr[c] || !better(s, j, thr[c], thr_idx[c])) continue;
        float* bs = best_sim + (c0 + c) * k;
        index_t* bi = best_idx + (c0 + c) * k;
        insert_sorted(s, j, k, bs, bi);
        thr[c] = bs[k - 1];
        thr_idx[c] = bi[k - 1];
      }
    }
  }
  return Status::Ok();
}

Status knn_finalize_cpu(index_t rows, int k, float* best_sim) {
  Status st = check_args(rows, k);
  if (!st.ok()) return st;
  const index_t total = rows * static_cast<index_t>(k);
#pragma omp parallel for schedule(static)
  for (index_t t = 0; t < total; ++t) best_sim[t] = std::max(0.0f, 2.0f - 2.0f * best_sim[t]);
  return Status::Ok();
}

Status knn_cpu(const float* x, index_t n, index_t d, int k, index_t block, index_t* out_idx,
               float* out_dist) {
  if (n < 1 || d < 1) return Status::Error("knn_cpu: need n >= 1 and d >= 1");
  if (k < 1 || k > n)
    return Status::Error("knn_cpu: need 1 <= k <= n, got k=" + std::to_string(k) +
                         " n=" + std::to_string(n));
  if (block < 1) return Status::Error("knn_cpu: block must be >= 1");
  Status st = knn_init_cpu(n, k, out_dist, out_idx);
  if (!st.ok()) return st;
  std::vector<float> sims(static_cast<size_t>(block) * static_cast<size_t>(block));
  for (index_t r0 = 0; r0 < n; r0 += block) {
    const index_t rows = std::min(block, n - r0);
    for (index_t c0 = r0; c0 < n; c0 += block) {  // upper block triangle: X·Xᵀ is symmetric
      const index_t cols = std::min(block, n - c0);
#pragma omp parallel for schedule(static)
      for (index_t r = 0; r < rows; ++r) {
        const float* a = x + (r0 + r) * d;
        for (index_t c = 0; c < cols; ++c) {
          const float* b = x + (c0 + c) * d;
          float acc = 0.f;
          for (index_t t = 0; t < d; ++t) acc += a[t] * b[t];
          sims[r * block + c] = acc;
        }
      }
      st = knn_merge_block_cpu(sims.data(), rows, cols, block, c0, k, out_dist + r0 * k,
                               out_idx + r0 * k);
      if (!st.ok()) return st;
      if (c0 != r0) {
        st = knn_merge_block_transposed_cpu(sims.data(), rows, cols, block, r0, k,
                                            out_dist + c0 * k, out_idx + c0 * k);
        if (!st.ok()) return st;
      }
    }
  }
  return knn_finalize_cpu(n, k, out_dist);
}

}  // namespace smcr
