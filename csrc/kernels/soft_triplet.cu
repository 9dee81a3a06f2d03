// CUDA soft triplet kernels; contracts in soft_triplet.h.
//
//   forward   one block per anchor: arg-max / arg-min over the batch (ties to the smaller
//             index, a fixed reduction tree) on the Gram matrix's squared distances, or on
//             exact ones where those could overflow (soft_triplet.h), then the four squared
//             distances in double by a fixed tree; one more block for the mean over valid
//             anchors.
//   backward  one block per row r: every thread owns columns and gathers the contributions of
//             all anchors that touch row r, in anchor order (deterministic, no atomics).
// Offsets into (B, D) arrays are 64-bit.
#include <limits>
#include <string>

#include "losses_cuda_common.cuh"
#include "soft_triplet.h"

namespace smcr {
namespace {

using cuda_detail::ArgBest;
using cuda_detail::arg_better;
using cuda_detail::block_arg_best;
using cuda_detail::block_reduce;
using cuda_detail::kThreads;
using cuda_detail::SumOp;

// The hardest positive and negative of anchor i over the block (ties to the smaller index,
// -1 = none): sq(j) is the squared distance to row j, in V. Reached by all threads.
template <typename V, typename SquaredDistance>
__device__ void mine_anchor(index_t i, index_t batch, const index_t* __restrict__ labels,
                            ArgBest<V>* smem, index_t* p, index_t* n, SquaredDistance sq_of) {
  const V min_sq = static_cast<V>(kTripletMinSquaredDistance);
  const index_t li = labels[i];
  ArgBest<V> bp{V(0), index_t(-1)}, bn{V(0), index_t(-1)};
  for (index_t j = threadIdx.x; j < batch; j += blockDim.x) {
    V sq = sq_of(j);
    sq = sq > min_sq ? sq : min_sq;
    if (labels[j] == li) {
      if (j != i) bp = arg_better<V, true>(bp, ArgBest<V>{sq, j});
    } else {
      bn = arg_better<V, false>(bn, ArgBest<V>{sq, j});
    }
  }
  *p = block_arg_best<V, true>(bp, smem).index;
  *n = block_arg_best<V, false>(bn, smem).index;
}

template <typename Acc>
__global__ void triplet_forward_kernel(const Acc* __restrict__ student,
                                       const Acc* __restrict__ teacher,
                                       const Acc* __restrict__ gram,
                                       const index_t* __restrict__ labels, index_t batch,
                                       index_t dim, Acc margin, Acc* __restrict__ per_anchor,
                                       index_t* __restrict__ pos_index,
                                       index_t* __restrict__ neg_index,
                                       Acc* __restrict__ dist_ap, Acc* __restrict__ dist_an,
                                       Acc* __restrict__ grad_coef) {
  __shared__ ArgBest<Acc> sarg[32];
  __shared__ ArgBest<double> sarg_exact[32];
  __shared__ double sred[32];
  __shared__ index_t sflag[32];
  const index_t i = blockIdx.x;
  // Every block reads the whole diagonal (B values) and takes the same branch as the others.
  index_t unsafe = 0;
  for (index_t j = threadIdx.x; j < batch; j += blockDim.x)
    unsafe += !gram_diagonal_safe(gram[j * batch + j]);
  const bool exact = block_reduce(unsafe, sflag, SumOp(), index_t(0)) > 0;  // block-uniform
  index_t p = -1, n = -1;
  if (!exact) {
    const Acc gii = gram[i * batch + i];
    mine_anchor<Acc>(i, batch, labels, sarg, &p, &n, [&](index_t j) {
      return gii + gram[j * batch + j] - Acc(2) * gram[i * batch + j];
    });
  } else {
    // The Gram matrix could overflow: exact squared distances in double, one row per thread
    // (rare, so simplicity over coalescing).
    const Acc* xa = student + i * dim;
    mine_anchor<double>(i, batch, labels, sarg_exact, &p, &n, [&](index_t j) {
      return exact_squared_distance(xa, student + j * dim, dim);
    });
  }
  if (p < 0 || n < 0) {  // uniform across the block
    if (threadIdx.x == 0) {
      pos_index[i] = neg_index[i] = -1;
      per_anchor[i] = dist_ap[i] = dist_an[i] = grad_coef[i] = Acc(0);
    }
    return;
  }
  const Acc* xi = student + i * dim;
  const Acc* xp = student + p * dim;
  const Acc* xn = student + n * dim;
  double sp = 0.0, sn = 0.0, tp = 0.0, tn = 0.0;
  for (index_t t = threadIdx.x; t < dim; t += blockDim.x) {
    const double a = static_cast<double>(xi[t]);
    const double dp = a - static_cast<double>(xp[t]);
    const double dn = a - static_cast<double>(xn[t]);
    sp += dp * dp;
    sn += dn * dn;
    if (teacher) {
      const double ta = static_cast<double>(teacher[i * dim + t]);
      const double dtp = ta - static_cast<double>(teacher[p * dim + t]);
      const double dtn = ta - static_cast<double>(teacher[n * dim + t]);
      tp += dtp * dtp;
      tn += dtn * dtn;
    }
  }
  sp = block_reduce(sp, sred, SumOp(), 0.0);
  sn = block_reduce(sn, sred, SumOp(), 0.0);
  if (teacher) {
    tp = block_reduce(tp, sred, SumOp(), 0.0);
    tn = block_reduce(tn, sred, SumOp(), 0.0);
  }
  if (threadIdx.x != 0) return;
  const Acc d_p = clamped_distance<Acc>(sp), d_n = clamped_distance<Acc>(sn);
  Acc t0, t1;
  if (teacher) {
    const Acc e_p = clamped_distance<Acc>(tp), e_n = clamped_distance<Acc>(tn);
    t0 = sigmoid(e_p - e_n);
    t1 = sigmoid(e_n - e_p);
  } else {
    t0 = margin;
    t1 = Acc(1) - margin;
  }
  pos_index[i] = p;
  neg_index[i] = n;
  dist_ap[i] = d_p;
  dist_an[i] = d_n;
  per_anchor[i] = t0 * softplus(d_n - d_p) + t1 * softplus(d_p - d_n);
  grad_coef[i] = sigmoid(d_p - d_n) - t0;
}

template <typename Acc>
__global__ void triplet_mean_kernel(const Acc* __restrict__ per_anchor,
                                    const index_t* __restrict__ pos_index, index_t batch,
                                    Acc* __restrict__ loss) {
  __shared__ Acc ssum[32];
  __shared__ index_t scount[32];
  Acc s = Acc(0);
  index_t k = 0;
  for (index_t i = threadIdx.x; i < batch; i += blockDim.x) {
    if (pos_index[i] < 0) continue;
    s += per_anchor[i];
    ++k;
  }
  s = block_reduce(s, ssum, SumOp(), Acc(0));
  k = block_reduce(k, scount, SumOp(), index_t(0));
  if (threadIdx.x == 0) loss[0] = k > 0 ? s / static_cast<Acc>(k) : Acc(0);
}

template <typename Acc>
__global__ void triplet_backward_kernel(const Acc* __restrict__ student, index_t batch,
                                        index_t dim, const index_t* __restrict__ pos_index,
                                        const index_t* __restrict__ neg_index,
                                        const Acc* __restrict__ dist_ap,
                                        const Acc* __restrict__ dist_an,
                                        const Acc* __restrict__ grad_coef,
                                        const Acc* __restrict__ grad_loss,
                                        const Acc* __restrict__ grad_per_anchor,
                                        Acc* __restrict__ grad_student) {
  __shared__ index_t scount[32];
  const index_t r = blockIdx.x;
  index_t k = 0;
  for (index_t i = threadIdx.x; i < batch; i += blockDim.x) k += pos_index[i] >= 0;
  k = block_reduce(k, scount, SumOp(), index_t(0));
  const Acc gl = k > 0 ? grad_loss[0] / static_cast<Acc>(k) : Acc(0);
  const Acc dmin = clamped_distance<Acc>(0.0);
  for (index_t t = threadIdx.x; t < dim; t += blockDim.x) {
    const Acc xr = student[r * dim + t];
    Acc g = Acc(0);
    for (index_t i = 0; i < batch; ++i) {
      const index_t p = pos_index[i], n = neg_index[i];
      if (p < 0 || p >= batch || n < 0 || n >= batch) continue;
      if (i != r && p != r && n != r) continue;
      const Acc c = (gl + (grad_per_anchor ? grad_per_anchor[i] : Acc(0))) * grad_coef[i];
      const Acc a = dist_ap[i] > dmin ? c / dist_ap[i] : Acc(0);
      const Acc b = dist_an[i] > dmin ? c / dist_an[i] : Acc(0);
      const Acc xi = student[i * dim + t];
      if (i == r) g += a * (xi - student[p * dim + t]) - b * (xi - student[n * dim + t]);
      if (p == r) g += a * (xr - xi);
      if (n == r) g -= b * (xr - xi);
    }
    grad_student[r * dim + t] = g;
  }
}

}  // namespace

template <typename Acc>
Status soft_triplet_forward_cuda(const Acc* student, const Acc* teacher, const Acc* gram,
                                 const index_t* labels, index_t batch, index_t dim, Acc margin,
                                 Acc* per_anchor, Acc* loss, index_t* pos_index,
                                 index_t* neg_index, Acc* dist_ap, Acc* dist_an, Acc* grad_coef,
                                 cudaStream_t stream) {
  if (batch < 0 || dim < 1)
    return Status::Error("soft_triplet: need batch >= 0 and dim >= 1, got batch=" +
                         std::to_string(batch) + " dim=" + std::to_string(dim));
  if (!gram) return Status::Error("soft_triplet_forward_cuda: gram must be given");
  if (!teacher && !(margin >= Acc(0) && margin <= Acc(1)))
    return Status::Error("soft_triplet: margin must be in [0, 1]");
  if (batch > std::numeric_limits<int>::max())
    return Status::Error("soft_triplet: batch too large");
  if (batch > 0) {
    triplet_forward_kernel<Acc><<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(
        student, teacher, gram, labels, batch, dim, margin, per_anchor, pos_index, neg_index,
        dist_ap, dist_an, grad_coef);
    Status st = launch_status("soft_triplet (forward)");
    if (!st.ok()) return st;
  }
  triplet_mean_kernel<Acc><<<1, kThreads, 0, stream>>>(per_anchor, pos_index, batch, loss);
  return launch_status("soft_triplet (mean)");
}

template <typename Acc>
Status soft_triplet_backward_cuda(const Acc* student, index_t batch, index_t dim,
                                  const index_t* pos_index, const index_t* neg_index,
                                  const Acc* dist_ap, const Acc* dist_an, const Acc* grad_coef,
                                  const Acc* grad_loss, const Acc* grad_per_anchor,
                                  Acc* grad_student, cudaStream_t stream) {
  if (batch < 0 || dim < 1)
    return Status::Error("soft_triplet_backward: need batch >= 0 and dim >= 1");
  if (batch == 0) return Status::Ok();
  if (batch > std::numeric_limits<int>::max())
    return Status::Error("soft_triplet_backward: batch too large");
  triplet_backward_kernel<Acc><<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(
      student, batch, dim, pos_index, neg_index, dist_ap, dist_an, grad_coef, grad_loss,
      grad_per_anchor, grad_student);
  return launch_status("soft_triplet (backward)");
}

template Status soft_triplet_forward_cuda<float>(const float*, const float*, const float*,
                                                 const index_t*, index_t, index_t, float, float*,
                                                 float*, index_t*, index_t*, float*, float*,
                                                 float*, cudaStream_t);
template Status soft_triplet_forward_cuda<double>(const double*, const double*, const double*,
                                                  const index_t*, index_t, index_t, double,
                                                  double*, double*, index_t*, index_t*, double*,
                                                  double*, double*, cudaStream_t);
template Status soft_triplet_backward_cuda<float>(const float*, index_t, index_t, const index_t*,
                                                  const index_t*, const float*, const float*,
                                                  const float*, const float*, const float*,
                                                  float*, cudaStream_t);
template Status soft_triplet_backward_cuda<double>(const double*, index_t, index_t,
                                                   const index_t*, const index_t*,
                                                   const double*, const double*, const double*,
                                                   const double*, const double*, double*,
                                                   cudaStream_t);

}  // namespace smcr
