// Value checks of the training-loss inputs in one pass: the first non-finite row of a
// feature matrix, the first index outside its range, the first index that points at an
// empty slot of a count table (a label with no memory row).
//
// The Python wrappers run these before any loss kernel so that bad values raise a
// ValueError naming the argument, at the cost of one host synchronisation on CUDA (one
// small device-to-host copy of the result) and no per-check launches or allocations.
//
// Each output is an index or -1 ("none"). CPU: a plain scan (parallel for large inputs).
// CUDA: out is set to -1 by a byte memset (every byte 0xFF), then every offending
// position does an unsigned atomicMin, under which -1 (all ones) is the largest value, so
// the result is the smallest offending index or -1.
#pragma once

#include "common.h"

namespace smcr {

// out[0] = first row r of x (rows x cols, row-major) holding a NaN or an infinity, or -1.
// T: float or double.
template <typename T>
Status first_nonfinite_row_cpu(const T* x, index_t rows, index_t cols, index_t* out);
template <typename T>
Status first_nonfinite_row_cuda(const T* x, index_t rows, index_t cols, index_t* out,
                                cudaStream_t stream);

// out[0] = first i with index[i] outside [0, bound), or -1;
// out[1] = first i with index[i] in range and counts[index[i]] == 0, or -1 (always -1 when
//          counts is null). counts: (bound) int64.
Status first_bad_index_cpu(const index_t* index, index_t n, index_t bound, const index_t* counts,
                           index_t* out);
Status first_bad_index_cuda(const index_t* index, index_t n, index_t bound,
                            const index_t* counts, index_t* out, cudaStream_t stream);

// Every check of one call at once (what the op smcr::_first_invalid runs). out (4) int64:
//   out[0]         first_nonfinite_row of x (x_rows x x_cols)
//   out[1]         first_nonfinite_row of y (y_rows x y_cols), -1 when y is null
//   out[2], out[3] first_bad_index(index, n, bound, counts), -1 and -1 when index is null
// x and y have the same element type T (float or double). CUDA: one memset of out and one
// grid-stride kernel over all three inputs: two launches per call, whatever is checked.
template <typename T>
Status first_invalid_cpu(const T* x, index_t x_rows, index_t x_cols, const T* y, index_t y_rows,
                         index_t y_cols, const index_t* index, index_t n, index_t bound,
                         const index_t* counts, index_t* out);
template <typename T>
Status first_invalid_cuda(const T* x, index_t x_rows, index_t x_cols, const T* y,
                          index_t y_rows, index_t y_cols, const index_t* index, index_t n,
                          index_t bound, const index_t* counts, index_t* out,
                          cudaStream_t stream);

}  // namespace smcr
