// CPU value checks (see validate.h).
#include <algorithm>
#include <cmath>
#include <limits>

#include "validate.h"

namespace smcr {

template <typename T>
Status first_nonfinite_row_cpu(const T* x, index_t rows, index_t cols, index_t* out) {
  if (rows < 0 || cols < 0) return Status::Error("first_nonfinite_row: negative size");
  index_t first = std::numeric_limits<index_t>::max();
  // Small inputs (a training batch) are scanned by one thread: an OpenMP region would cost
  // more than the scan.
  const bool parallel = rows * cols >= (index_t{1} << 20);
#pragma omp parallel for schedule(static) reduction(min : first) if (parallel)
  for (index_t r = 0; r < rows; ++r) {
    const T* row = x + r * cols;
    // |v| <= max is false exactly for NaN and the infinities; no early exit, so it vectorises
    int bad = 0;
    for (index_t c = 0; c < cols; ++c) bad |= !(std::fabs(row[c]) <= std::numeric_limits<T>::max());
    if (bad) first = std::min(first, r);
  }
  *out = first == std::numeric_limits<index_t>::max() ? -1 : first;
  return Status::Ok();
}

template Status first_nonfinite_row_cpu<float>(const float*, index_t, index_t, index_t*);
template Status first_nonfinite_row_cpu<double>(const double*, index_t, index_t, index_t*);

Status first_bad_index_cpu(const index_t* index, index_t n, index_t bound, const index_t* counts,
                           index_t* out) {
  if (n < 0 || bound < 0) return Status::Error("first_bad_index: negative size");
  out[0] = out[1] = -1;
  for (index_t i = 0; i < n; ++i) {
    const index_t v = index[i];
    if (v < 0 || v >= bound) {
      if (out[0] < 0) out[0] = i;
    } else if (counts && counts[v] == 0 && out[1] < 0) {
      out[1] = i;
    }
    if (out[0] >= 0 && (out[1] >= 0 || !counts)) break;
  }
  return Status::Ok();
}

template <typename T>
Status first_invalid_cpu(const T* x, index_t x_rows, index_t x_cols, const T* y, index_t y_rows,
                         index_t y_cols, const index_t* index, index_t n, index_t bound,
                         const index_t* counts, index_t* out) {
  out[0] = out[1] = out[2] = out[3] = -1;
  Status st = first_nonfinite_row_cpu<T>(x, x_rows, x_cols, out);
  if (st.ok() && y) st = first_nonfinite_row_cpu<T>(y, y_rows, y_cols, out + 1);
  if (st.ok() && index) st = first_bad_index_cpu(index, n, bound, counts, out + 2);
  return st;
}

template Status first_invalid_cpu<float>(const float*, index_t, index_t, const float*, index_t,
                                         index_t, const index_t*, index_t, index_t,
                                         const index_t*, index_t*);
template Status first_invalid_cpu<double>(const double*, index_t, index_t, const double*,
                                          index_t, index_t, const index_t*, index_t, index_t,
                                          const index_t*, index_t*);

}  // namespace smcr
