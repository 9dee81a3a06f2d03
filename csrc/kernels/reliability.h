// Cluster reliability: per-point IoU of a point's cluster under one labelling with its
// cluster under another (SpCL's R_comp / R_indep, SMCR Eq. 6), in O(n) time and memory
// from cluster sizes and contingency counts, never an n×n label-equality matrix.
//
//   A = { j : labels[j] == labels[i] }  or {i} if labels[i] == -1 (noise is a singleton)
//   B = { j : other[j]  == other[i]  }  or {i} if other[i]  == -1
//   iou[i] = |A ∩ B| / |A ∪ B| = inter / (|A| + |B| - inter)
//
// Args:
//   labels, other  (n) int64 with values in [-1, n)
//   iou_out        (n) float32
#pragma once

#include "common.h"

namespace smcr {

Status cluster_iou_cpu(const index_t* labels, const index_t* other, index_t n, float* iou_out);

Status cluster_iou_cuda(const index_t* labels, const index_t* other, index_t n, float* iou_out,
                        Allocator& scratch, cudaStream_t stream);

}  // namespace smcr
