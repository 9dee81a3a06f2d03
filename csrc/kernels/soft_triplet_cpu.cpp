// CPU (C++17 + OpenMP) soft triplet kernels; contracts in soft_triplet.h.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "soft_triplet.h"

namespace smcr {
namespace {

template <typename Acc>
double squared_distance(const Acc* x, index_t i, index_t j, index_t dim) {
  return exact_squared_distance(x + i * dim, x + j * dim, dim);
}

// The hardest positive and negative of anchor i: sq(j) is the squared distance to row j, in
// V (ties to the smaller index; -1 = none).
template <typename V, typename SquaredDistance>
void mine_anchor(index_t i, index_t batch, const index_t* labels, SquaredDistance sq_of,
                 index_t* p_out, index_t* n_out) {
  const V min_sq = static_cast<V>(kTripletMinSquaredDistance);
  index_t p = -1, n = -1;
  V best_p = V(0), best_n = V(0);
  for (index_t j = 0; j < batch; ++j) {
    const V sq = std::max(static_cast<V>(sq_of(j)), min_sq);
    if (labels[j] == labels[i]) {
      if (j != i && (p < 0 || sq > best_p)) {
        p = j;
        best_p = sq;
      }
    } else if (n < 0 || sq < best_n) {
      n = j;
      best_n = sq;
    }
  }
  *p_out = p;
  *n_out = n;
}

}  // namespace

template <typename Acc>
Status soft_triplet_forward_cpu(const Acc* student, const Acc* teacher, const Acc* gram,
                                const index_t* labels, index_t batch, index_t dim, Acc margin,
                                Acc* per_anchor, Acc* loss, index_t* pos_index,
                                index_t* neg_index, Acc* dist_ap, Acc* dist_an,
                                Acc* grad_coef) {
  if (batch < 0 || dim < 1)
    return Status::Error("soft_triplet: need batch >= 0 and dim >= 1, got batch=" +
                         std::to_string(batch) + " dim=" + std::to_string(dim));
  if (!teacher && !(margin >= Acc(0) && margin <= Acc(1)))
    return Status::Error("soft_triplet: margin must be in [0, 1], got " +
                         std::to_string(static_cast<double>(margin)));
  std::vector<Acc> own_gram;
  if (!gram) {
    own_gram.resize(batch * batch);
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < batch; ++i)
      for (index_t j = 0; j < batch; ++j) {
        Acc s = Acc(0);
        for (index_t t = 0; t < dim; ++t) s += student[i * dim + t] * student[j * dim + t];
        own_gram[i * batch + j] = s;
      }
    gram = own_gram.data();
  }
  // G_ii + G_jj - 2 G_ij can overflow Acc (float32 rows of norm above ~1e19): then every
  // anchor is mined on the exact squared distances in double instead.
  const bool exact = gram_overflows(gram, batch);
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < batch; ++i) {
    index_t p, n;
    if (exact) {
      mine_anchor<double>(i, batch, labels,
                          [&](index_t j) { return squared_distance(student, i, j, dim); }, &p,
                          &n);
    } else {
      const Acc gii = gram[i * batch + i];
      mine_anchor<Acc>(i, batch, labels,
                       [&](index_t j) {
                         return gii + gram[j * batch + j] - Acc(2) * gram[i * batch + j];
                       },
                       &p, &n);
    }
    if (p < 0 || n < 0) {
      pos_index[i] = neg_index[i] = -1;
      per_anchor[i] = dist_ap[i] = dist_an[i] = grad_coef[i] = Acc(0);
      continue;
    }
    const Acc dp = clamped_distance<Acc>(squared_distance(student, i, p, dim));
    const Acc dn = clamped_distance<Acc>(squared_distance(student, i, n, dim));
    Acc t0, t1;
    if (teacher) {
      const Acc tp = clamped_distance<Acc>(squared_distance(teacher, i, p, dim));
      const Acc tn = clamped_distance<Acc>(squared_distance(teacher, i, n, dim));
      t0 = sigmoid(tp - tn);
      t1 = sigmoid(tn - tp);
    } else {
      t0 = margin;
      t1 = Acc(1) - margin;
    }
    pos_index[i] = p;
    neg_index[i] = n;
    dist_ap[i] = dp;
    dist_an[i] = dn;
    per_anchor[i] = t0 * softplus(dn - dp) + t1 * softplus(dp - dn);
    grad_coef[i] = sigmoid(dp - dn) - t0;
  }
  Acc total = Acc(0);
  index_t valid = 0;
  for (index_t i = 0; i < batch; ++i) {
    if (pos_index[i] < 0) continue;
    total += per_anchor[i];
    ++valid;
  }
  loss[0] = valid > 0 ? total / static_cast<Acc>(valid) : Acc(0);
  return Status::Ok();
}

template <typename Acc>
Status soft_triplet_backward_cpu(const Acc* student, index_t batch, index_t dim,
                                 const index_t* pos_index, const index_t* neg_index,
                                 const Acc* dist_ap, const Acc* dist_an, const Acc* grad_coef,
                                 const Acc* grad_loss, const Acc* grad_per_anchor,
                                 Acc* grad_student) {
  if (batch < 0 || dim < 1)
    return Status::Error("soft_triplet_backward: need batch >= 0 and dim >= 1");
  index_t valid = 0;
  for (index_t i = 0; i < batch; ++i) {
    const index_t p = pos_index[i], n = neg_index[i];
    if ((p < 0) != (n < 0) || p >= batch || n >= batch)
      return Status::Error("soft_triplet_backward: pos_index/neg_index[" + std::to_string(i) +
                           "] = " + std::to_string(p) + "/" + std::to_string(n) +
                           " are not from the forward");
    valid += p >= 0;
  }
  // a_i, b_i: the anchor's weights on (x_i - x_p) and (x_i - x_n), i.e. its coefficient
  // divided by the distance (0 where the clamp was active).
  std::vector<Acc> a(batch, Acc(0)), b(batch, Acc(0));
  const Acc gl = valid > 0 ? grad_loss[0] / static_cast<Acc>(valid) : Acc(0);
  const Acc dmin = clamped_distance<Acc>(0.0);
  for (index_t i = 0; i < batch; ++i) {
    if (pos_index[i] < 0) continue;
    const Acc c = (gl + (grad_per_anchor ? grad_per_anchor[i] : Acc(0))) * grad_coef[i];
    if (dist_ap[i] > dmin) a[i] = c / dist_ap[i];
    if (dist_an[i] > dmin) b[i] = c / dist_an[i];
  }
#pragma omp parallel for schedule(static)
  for (index_t r = 0; r < batch; ++r) {
    Acc* g = grad_student + r * dim;
    const Acc* xr = student + r * dim;
    std::fill(g, g + dim, Acc(0));
    for (index_t i = 0; i < batch; ++i) {
      const index_t p = pos_index[i], n = neg_index[i];
      if (p < 0) continue;
      const Acc* xi = student + i * dim;
      if (i == r) {
        const Acc* xp = student + p * dim;
        const Acc* xn = student + n * dim;
        for (index_t t = 0; t < dim; ++t) g[t] += a[i] * (xi[t] - xp[t]) - b[i] * (xi[t] - xn[t]);
      }
      if (p == r)
        for (index_t t = 0; t < dim; ++t) g[t] += a[i] * (xr[t] - xi[t]);
      if (n == r)
        for (index_t t = 0; t < dim; ++t) g[t] -= b[i] * (xr[t] - xi[t]);
    }
  }
  return Status::Ok();
}

template Status soft_triplet_forward_cpu<float>(const float*, const float*, const float*,
                                                const index_t*, index_t, index_t, float, float*,
                                                float*, index_t*, index_t*, float*, float*,
                                                float*);
template Status soft_triplet_forward_cpu<double>(const double*, const double*, const double*,
                                                 const index_t*, index_t, index_t, double,
                                                 double*, double*, index_t*, index_t*, double*,
                                                 double*, double*);
template Status soft_triplet_backward_cpu<float>(const float*, index_t, index_t, const index_t*,
                                                 const index_t*, const float*, const float*,
                                                 const float*, const float*, const float*,
                                                 float*);
template Status soft_triplet_backward_cpu<double>(const double*, index_t, index_t,
                                                  const index_t*, const index_t*, const double*,
                                                  const double*, const double*, const double*,
                                                  const double*, double*);

}  // namespace smcr
