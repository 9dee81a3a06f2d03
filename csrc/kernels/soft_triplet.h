// Batch-hard soft triplet loss (SMCR's collaborative loss, Eq. 12-15, in MMT's form) and its
// hard version, as framework-free kernels.
//
// For a batch of B student embeddings x_i (B, D) with labels y_i:
//   d_ij   = sqrt(max(||x_i - x_j||^2, 1e-12))                 (clamped before the sqrt)
//   p_i    = hardest positive: argmax_j d_ij over j != i with y_j = y_i
//   n_i    = hardest negative: argmin_j d_ij over j with y_j != y_i
//            (ties go to the smaller index; mining reads the squared distances
//             G_ii + G_jj - 2 G_ij of the student's Gram matrix G = X X^T, or the exact
//             ones where those could overflow: gram_diagonal_safe below)
//   P_i    = softmax([d_ip, d_in])                              (student)
//   t_i    = softmax([d'_ip, d'_in]) with the teacher's distances at the student's
//            indices (soft version; the teacher gets no gradient), or [margin, 1 - margin]
//            when there is no teacher (hard version; margin = 0 gives softplus(d_ip - d_in))
//   loss_i = -(t_i0 log P_i0 + t_i1 log P_i1)
//          = t_i0 softplus(d_in - d_ip) + t_i1 softplus(d_ip - d_in)
//   loss   = sum over valid anchors of loss_i / (number of valid anchors), 0 when none.
// An anchor is valid when it has a positive other than itself AND a negative. An invalid
// anchor (its identity appears once in the batch, or the batch holds one identity)
// contributes nothing: loss_i = 0, no gradient, pos/neg index -1, and it is left out of the
// mean. (MMT lets an anchor without a positive pick itself at distance 1e-6.)
// d loss_i / d d_ip = P_i0 - t_i0 = -(d loss_i / d d_in); the clamp gives a zero gradient
// to a pair closer than 1e-6.
//
// Determinism: no atomics; the backward gathers every row's contributions in anchor order.
// Acc is float or double; inputs of other precisions are converted by the caller.
#pragma once

#include "common.h"
#include "losses_common.h"

namespace smcr {

// Forward.
// Args:
//   student      (B, D) Acc;   teacher (B, D) Acc, or null for the hard version
//   gram         (B, B) Acc = student student^T (for mining), or null to compute it here
//   labels       (B) int64 (any values; only equality matters)
//   margin       target weight of the positive term when teacher is null, in [0, 1]
// Returns through:
//   per_anchor   (B) Acc, 0 for invalid anchors;  loss (1) Acc
//   pos_index, neg_index (B) int64, -1 for invalid anchors
//   dist_ap, dist_an     (B) Acc, the student's distances to them (0 when invalid)
//   grad_coef    (B) Acc: d loss_i / d d_ip (0 when invalid)
template <typename Acc>
Status soft_triplet_forward_cpu(const Acc* student, const Acc* teacher, const Acc* gram,
                                const index_t* labels, index_t batch, index_t dim, Acc margin,
                                Acc* per_anchor, Acc* loss, index_t* pos_index,
                                index_t* neg_index, Acc* dist_ap, Acc* dist_an, Acc* grad_coef);

// Backward: grad_student (B, D) Acc = d (grad_loss[0] * loss + sum_i grad_per_anchor[i] *
// per_anchor_i) / d student, from the forward's indices, distances and coefficients (no
// distance is recomputed; a pair whose stored distance is the clamp value sqrt(1e-12) gets
// no gradient). grad_per_anchor may be null (zero).
template <typename Acc>
Status soft_triplet_backward_cpu(const Acc* student, index_t batch, index_t dim,
                                 const index_t* pos_index, const index_t* neg_index,
                                 const Acc* dist_ap, const Acc* dist_an, const Acc* grad_coef,
                                 const Acc* grad_loss, const Acc* grad_per_anchor,
                                 Acc* grad_student);

// CUDA versions (soft_triplet.cu): same contracts, device pointers (grad_loss included), work
// queued on `stream`; gram must be given.
template <typename Acc>
Status soft_triplet_forward_cuda(const Acc* student, const Acc* teacher, const Acc* gram,
                                 const index_t* labels, index_t batch, index_t dim, Acc margin,
                                 Acc* per_anchor, Acc* loss, index_t* pos_index,
                                 index_t* neg_index, Acc* dist_ap, Acc* dist_an, Acc* grad_coef,
                                 cudaStream_t stream);

template <typename Acc>
Status soft_triplet_backward_cuda(const Acc* student, index_t batch, index_t dim,
                                  const index_t* pos_index, const index_t* neg_index,
                                  const Acc* dist_ap, const Acc* dist_an, const Acc* grad_coef,
                                  const Acc* grad_loss, const Acc* grad_per_anchor,
                                  Acc* grad_student, cudaStream_t stream);

// The loss's squared distances (after mining) are sums over t of (a_t - b_t)^2, accumulated
// in double (in ascending t on the CPU, by a fixed tree on CUDA), clamped to this minimum.
constexpr double kTripletMinSquaredDistance = 1e-12;

// The clamped distance d = sqrt(max(sq, 1e-12)) in Acc; d <= clamped_distance(0) means the
// clamp was active (zero gradient).
template <typename Acc>
SMCR_HD Acc clamped_distance(double sq) {
  return static_cast<Acc>(m_sqrt(sq > kTripletMinSquaredDistance ? sq : kTripletMinSquaredDistance));
}

// Mining reads G_ii + G_jj - 2 G_ij. By Cauchy-Schwarz |G_ij| <= max(G_ii, G_jj), so that
// stays finite in Acc while every diagonal entry is at most Acc's largest value / 8. Past that
// (float32 rows of norm above ~6.5e18, or a non-finite entry) the kernels mine on the exact
// squared distances, summed in double, instead: the same pairs, scale-invariantly. Distances
// above Acc's largest value (float32 rows of norm near 1.7e38) are still infinite.
template <typename Acc>
SMCR_HD bool gram_diagonal_safe(Acc g);
template <>
SMCR_HD bool gram_diagonal_safe<float>(float g) {
  return g <= 0x1.fffffep+124f;  // FLT_MAX / 8; false for NaN
}
template <>
SMCR_HD bool gram_diagonal_safe<double>(double g) {
  return g <= 0x1.fffffffffffffp+1020;  // DBL_MAX / 8
}

// sum over t of (a_t - b_t)^2 in double, in ascending t.
template <typename Acc>
SMCR_HD double exact_squared_distance(const Acc* a, const Acc* b, index_t dim) {
  double s = 0.0;
  for (index_t t = 0; t < dim; ++t) {
    const double diff = static_cast<double>(a[t]) - static_cast<double>(b[t]);
    s += diff * diff;
  }
  return s;
}

// True when some diagonal entry of the (B, B) Gram matrix is not safe (host code).
template <typename Acc>
inline bool gram_overflows(const Acc* gram, index_t batch) {
  for (index_t i = 0; i < batch; ++i)
    if (!gram_diagonal_safe(gram[i * batch + i])) return true;
  return false;
}

}  // namespace smcr
