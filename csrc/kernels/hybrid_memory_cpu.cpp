// CPU (C++17 + OpenMP) hybrid-memory kernels; contracts in hybrid_memory.h.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "hybrid_memory.h"

namespace smcr {
namespace {

Status check_sizes(const char* fn, index_t batch, index_t dim) {
  if (batch < 0 || dim < 1)
    return Status::Error(std::string(fn) + ": need batch >= 0 and dim >= 1, got batch=" +
                         std::to_string(batch) + " dim=" + std::to_string(dim));
  return Status::Ok();
}

template <typename Acc>
constexpr Acc neg_inf() {
  return -std::numeric_limits<Acc>::infinity();
}

}  // namespace

// ------------------------------------------------------------------------ label index

Status hybrid_memory_label_index_cpu(const index_t* row_labels, index_t num_rows,
                                     index_t num_labels, index_t* label_ptr,
                                     index_t* label_rows) {
  if (num_rows < 0 || num_labels < 0)
    return Status::Error("hybrid_memory_label_index: need num_rows >= 0 and num_labels >= 0");
  std::fill(label_ptr, label_ptr + num_labels + 1, index_t(0));
  for (index_t r = 0; r < num_rows; ++r) {
    const index_t c = row_labels[r];
    if (c < 0 || c >= num_labels)
      return Status::Error("hybrid_memory_label_index: row_labels[" + std::to_string(r) +
                           "] = " + std::to_string(c) + " is outside [0, " +
                           std::to_string(num_labels) + ")");
    ++label_ptr[c + 1];
  }
  for (index_t c = 0; c < num_labels; ++c) label_ptr[c + 1] += label_ptr[c];
  std::vector<index_t> cursor(label_ptr, label_ptr + num_labels);
  for (index_t r = 0; r < num_rows; ++r) label_rows[cursor[row_labels[r]]++] = r;
  return Status::Ok();
}

Status hybrid_memory_singleton_runs_cpu(const index_t* label_ptr, const index_t* label_rows,
                                        index_t num_labels, index_t* run_length) {
  if (num_labels < 0) return Status::Error("hybrid_memory_singleton_runs: num_labels < 0");
  for (index_t c = num_labels - 1; c >= 0; --c) {
    if (label_ptr[c + 1] - label_ptr[c] != 1) {
      run_length[c] = 0;
      continue;
    }
    const bool next = c + 1 < num_labels && run_length[c + 1] > 0 &&
                      label_rows[label_ptr[c + 1]] == label_rows[label_ptr[c]] + 1;
    run_length[c] = next ? run_length[c + 1] + 1 : 1;
  }
  return Status::Ok();
}

Status hybrid_memory_check_targets_cpu(const index_t* targets, index_t batch,
                                       const index_t* label_ptr, index_t num_labels) {
  for (index_t i = 0; i < batch; ++i) {
    const index_t y = targets[i];
    if (y < 0 || y >= num_labels)
      return Status::Error("targets[" + std::to_string(i) + "] = " + std::to_string(y) +
                           " is outside the label range [0, " + std::to_string(num_labels) + ")");
    if (label_ptr[y + 1] == label_ptr[y])
      return Status::Error("targets[" + std::to_string(i) + "] = " + std::to_string(y) +
                           " is a label with no memory row");
  }
  return Status::Ok();
}

// ------------------------------------------------------------------------ label means

template <typename T, typename Acc>
Status hybrid_memory_label_means_cpu(const T* memory, index_t num_rows, index_t dim,
                                     const index_t* label_ptr, const index_t* label_rows,
                                     index_t num_labels, const index_t* labels, index_t label0,
                                     index_t count, Acc* means) {
  Status st = check_sizes("hybrid_memory_label_means", count, dim);
  if (!st.ok()) return st;
#pragma omp parallel for schedule(dynamic, 8)
  for (index_t k = 0; k < count; ++k) {
    const index_t c = labels ? labels[k] : label0 + k;
    Acc* out = means + k * dim;
    const index_t a = (c >= 0 && c < num_labels) ? label_ptr[c] : 0;
    const index_t b = (c >= 0 && c < num_labels) ? label_ptr[c + 1] : 0;
    if (a >= b) {
      std::fill(out, out + dim, Acc(0));
      continue;
    }
    // Sum in ascending row order (the CUDA kernel uses the same order). Rows outside
    // [0, M) cannot come from hybrid_memory_label_index; they are skipped, never read.
    bool started = false;
    for (index_t q = a; q < b; ++q) {
      const index_t r = label_rows[q];
      if (r < 0 || r >= num_rows) continue;
      const T* src = memory + r * dim;
      if (!started) {
        for (index_t t = 0; t < dim; ++t) out[t] = load<Acc>(src[t]);
        started = true;
      } else {
        for (index_t t = 0; t < dim; ++t) out[t] += load<Acc>(src[t]);
      }
    }
    if (!started) std::fill(out, out + dim, Acc(0));
    if (b - a > 1) {
      const Acc n = static_cast<Acc>(b - a);
      for (index_t t = 0; t < dim; ++t) out[t] = out[t] / n;
    }
  }
  return Status::Ok();
}

// ------------------------------------------------------------------------ online softmax

template <typename Acc>
Status hybrid_memory_softmax_block_cpu(const Acc* scores, Acc* probs, index_t batch,
                                       index_t count, index_t ld, index_t label0,
                                       const index_t* label_ptr, const index_t* targets,
                                       Acc inv_temp, Acc* run_max, Acc* run_sum,
                                       Acc* target_logit, Acc* expected, index_t dim,
                                       bool first_block) {
  if (batch < 0 || count < 0 || ld < count)
    return Status::Error("hybrid_memory_softmax_block: need batch >= 0 and 0 <= count <= ld");
  const index_t* ptr = label_ptr + label0;  // ptr[c + 1] > ptr[c] <=> label label0 + c present
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < batch; ++i) {
    const Acc* srow = scores + i * ld;
    Acc* prow = probs + i * ld;
    Acc bmax = neg_inf<Acc>();
    for (index_t c = 0; c < count; ++c)
      if (ptr[c + 1] > ptr[c]) bmax = std::max(bmax, srow[c] * inv_temp);
    const index_t yc = targets[i] - label0;
    if (yc >= 0 && yc < count) target_logit[i] = srow[yc] * inv_temp;
    else if (first_block) target_logit[i] = Acc(0);
    const Acc m_old = first_block ? neg_inf<Acc>() : run_max[i];
    const Acc m_new = std::max(m_old, bmax);
    if (m_new == neg_inf<Acc>()) {  // nothing present so far
      for (index_t c = 0; c < count; ++c) prow[c] = Acc(0);
      if (first_block) {
        run_max[i] = m_new;
        run_sum[i] = Acc(0);
      }
      continue;
    }
    Acc sum = Acc(0);
    for (index_t c = 0; c < count; ++c) {
      const Acc p = ptr[c + 1] > ptr[c] ? m_exp(srow[c] * inv_temp - m_new) : Acc(0);
      prow[c] = p;
      sum += p;
    }
    const Acc alpha = m_exp(m_old - m_new);  // 0 when m_old = -inf
    run_sum[i] = first_block ? sum : run_sum[i] * alpha + sum;
    run_max[i] = m_new;
    if (expected && !first_block && alpha != Acc(1)) {
      Acc* e = expected + i * dim;
      for (index_t t = 0; t < dim; ++t) e[t] *= alpha;
    }
  }
  return Status::Ok();
}

// ------------------------------------------------------------------------ finalize

template <typename Acc>
Status hybrid_memory_finalize_cpu(index_t batch, index_t dim, const Acc* run_max,
                                  const Acc* run_sum, const Acc* target_logit,
                                  const Acc* expected, const Acc* target_means, Acc inv_temp,
                                  Acc eps, Acc* per_sample, Acc* loss, Acc* grad_cache) {
  Status st = check_sizes("hybrid_memory_finalize", batch, dim);
  if (!st.ok()) return st;
  const bool want_grad = expected && target_means && grad_cache;
  const Acc log_eps = eps > Acc(0) ? m_log(eps) : neg_inf<Acc>();
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < batch; ++i) {
    const Acc m = run_max[i];
    const Acc log_z = m + m_log(run_sum[i]);
    const Acc log_ze = log_add_exp(log_z, log_eps);  // log(Z + eps)
    const Acc log_p = target_logit[i] - log_ze;
    const Acc log_pe = log_add_exp(log_p, log_eps);  // log(p + eps)
    per_sample[i] = -log_pe;
    if (!want_grad) continue;
    const Acc w = m_exp(log_p - log_pe);        // p / (p + eps)
    const Acc scale = m_exp(m - log_ze);        // E * scale = sum_c q_c C_c
    const Acc* e = expected + i * dim;
    const Acc* cy = target_means + i * dim;
    Acc* g = grad_cache + i * dim;
    const Acc wt = w * inv_temp;
    for (index_t t = 0; t < dim; ++t) g[t] = wt * (e[t] * scale - cy[t]);
  }
  Acc total = Acc(0);
  for (index_t i = 0; i < batch; ++i) total += per_sample[i];
  loss[0] = batch > 0 ? total / static_cast<Acc>(batch) : Acc(0);
  return Status::Ok();
}

// ------------------------------------------------------------------------ backward

template <typename Acc>
Status hybrid_memory_backward_cpu(index_t batch, index_t dim, const Acc* grad_loss,
                                  const Acc* grad_per_sample, const Acc* grad_cache,
                                  Acc* grad_features) {
  Status st = check_sizes("hybrid_memory_backward", batch, dim);
  if (!st.ok()) return st;
  const Acc gl = batch > 0 ? grad_loss[0] / static_cast<Acc>(batch) : Acc(0);
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < batch; ++i) {
    const Acc c = gl + (grad_per_sample ? grad_per_sample[i] : Acc(0));
    const Acc* g = grad_cache + i * dim;
    Acc* out = grad_features + i * dim;
    for (index_t t = 0; t < dim; ++t) out[t] = c * g[t];
  }
  return Status::Ok();
}

// ------------------------------------------------------------------------ whole forward

template <typename T, typename Acc>
Status hybrid_memory_loss_cpu(const Acc* features, index_t batch, const T* memory,
                              index_t num_rows, index_t dim, const index_t* label_ptr,
                              const index_t* label_rows, index_t num_labels,
                              const index_t* targets, Acc temperature, Acc eps,
                              index_t block_labels, Acc* per_sample, Acc* loss,
                              Acc* grad_cache) {
  Status st = check_sizes("hybrid_memory_loss", batch, dim);
  if (!st.ok()) return st;
  if (!(temperature > Acc(0))) return Status::Error("hybrid_memory_loss: temperature must be > 0");
  if (!(eps >= Acc(0))) return Status::Error("hybrid_memory_loss: eps must be >= 0");
  if (block_labels < 1) return Status::Error("hybrid_memory_loss: block_labels must be >= 1");
  st = hybrid_memory_check_targets_cpu(targets, batch, label_ptr, num_labels);
  if (!st.ok()) return st;
  const Acc inv_temp = Acc(1) / temperature;
  const index_t nb = std::max<index_t>(1, std::min(block_labels, num_labels));
  // The running state and E are set by the first block (first_block = true), not here; the
  // NaN fill makes any read before that show up in the C++ tests.
  const Acc nan = std::numeric_limits<Acc>::quiet_NaN();
  std::vector<Acc> run_max(batch, nan), run_sum(batch, nan), tl(batch, nan);
  std::vector<Acc> means(nb * dim), scores(batch * nb);
  std::vector<Acc> expected(grad_cache ? batch * dim : 0, nan);
  for (index_t l0 = 0; l0 < num_labels; l0 += nb) {
    const index_t n = std::min(nb, num_labels - l0);
    st = hybrid_memory_label_means_cpu(memory, num_rows, dim, label_ptr, label_rows, num_labels,
                                       static_cast<const index_t*>(nullptr), l0, n, means.data());
    if (!st.ok()) return st;
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < batch; ++i)
      for (index_t c = 0; c < n; ++c) {
        Acc s = Acc(0);
        for (index_t t = 0; t < dim; ++t) s += features[i * dim + t] * means[c * dim + t];
        scores[i * nb + c] = s;
      }
    st = hybrid_memory_softmax_block_cpu(scores.data(), scores.data(), batch, n, nb, l0,
                                         label_ptr, targets, inv_temp, run_max.data(),
                                         run_sum.data(), tl.data(),
                                         grad_cache ? expected.data() : nullptr, dim,
                                         l0 == 0);
    if (!st.ok()) return st;
    if (grad_cache) {
#pragma omp parallel for schedule(static)
      for (index_t i = 0; i < batch; ++i) {
        Acc* e = expected.data() + i * dim;
        if (l0 == 0) std::fill(e, e + dim, Acc(0));  // E = P C on the first block
        for (index_t c = 0; c < n; ++c) {
          const Acc p = scores[i * nb + c];
          if (p == Acc(0)) continue;
          for (index_t t = 0; t < dim; ++t) e[t] += p * means[c * dim + t];
        }
      }
    }
  }
  std::vector<Acc> target_means(grad_cache ? batch * dim : 0);
  if (grad_cache) {
    st = hybrid_memory_label_means_cpu(memory, num_rows, dim, label_ptr, label_rows, num_labels,
                                       targets, 0, batch, target_means.data());
    if (!st.ok()) return st;
  }
  return hybrid_memory_finalize_cpu<Acc>(batch, dim, run_max.data(), run_sum.data(), tl.data(),
                                         grad_cache ? expected.data() : nullptr,
                                         grad_cache ? target_means.data() : nullptr, inv_temp,
                                         eps, per_sample, loss, grad_cache);
}

// ------------------------------------------------------------------------ momentum update

template <typename T, typename Acc>
Status hybrid_memory_update_cpu(T* memory, index_t num_rows, index_t dim, const index_t* rows,
                                const Acc* features, index_t batch, Acc momentum) {
  Status st = check_sizes("hybrid_memory_update", batch, dim);
  if (!st.ok()) return st;
  if (!(momentum >= Acc(0) && momentum <= Acc(1)))
    return Status::Error("hybrid_memory_update: momentum must be in [0, 1], got " +
                         std::to_string(static_cast<double>(momentum)));
  for (index_t i = 0; i < batch; ++i)
    if (rows[i] < 0 || rows[i] >= num_rows)
      return Status::Error("hybrid_memory_update: rows[" + std::to_string(i) + "] = " +
                           std::to_string(rows[i]) + " is outside [0, " +
                           std::to_string(num_rows) + ")");
  const Acc keep = momentum, take = Acc(1) - momentum;
  // Each distinct row is owned by the iteration of its first occurrence, which applies all
  // of that row's updates in batch order.
#pragma omp parallel for schedule(dynamic, 1)
  for (index_t i = 0; i < batch; ++i) {
    const index_t r = rows[i];
    bool first = true;
    for (index_t j = 0; j < i && first; ++j) first = rows[j] != r;
    if (!first) continue;
    T* row = memory + r * dim;
    for (index_t j = i; j < batch; ++j) {
      if (rows[j] != r) continue;
      const Acc* f = features + j * dim;
      double norm2 = 0.0;
      for (index_t t = 0; t < dim; ++t) {
        const Acc v = keep * load<Acc>(row[t]) + take * f[t];
        norm2 += static_cast<double>(v) * static_cast<double>(v);
      }
      const Acc inv = static_cast<Acc>(1.0 / std::max(std::sqrt(norm2), 1e-12));
      for (index_t t = 0; t < dim; ++t) {
        const Acc v = keep * load<Acc>(row[t]) + take * f[t];
        store(row + t, v * inv);
      }
    }
  }
  return Status::Ok();
}

// ------------------------------------------------------------------------ mean refresh

template <typename T, typename Acc>
Status hybrid_memory_refresh_means_cpu(T* memory, index_t num_rows, index_t dim,
                                       const index_t* rows, index_t batch,
                                       const index_t* row_labels, const index_t* label_ptr,
                                       const index_t* label_rows, index_t num_labels) {
  Status st = check_sizes("hybrid_memory_refresh_means", batch, dim);
  if (!st.ok()) return st;
  // The labels to refresh, distinct, in the order of their first row in the batch.
  std::vector<index_t> labels;
  for (index_t i = 0; i < batch; ++i) {
    const index_t r = rows[i];
    if (r < 0 || r >= num_rows)
      return Status::Error("hybrid_memory_refresh_means: rows[" + std::to_string(i) + "] = " +
                           std::to_string(r) + " is outside [0, " + std::to_string(num_rows) +
                           ")");
    const index_t c = row_labels[r];
    if (c < 0 || c >= num_labels || c >= num_rows)
      return Status::Error("hybrid_memory_refresh_means: row " + std::to_string(r) +
                           " has label " + std::to_string(c) + ", outside [0, min(L, M)) = [0, " +
                           std::to_string(std::min(num_labels, num_rows)) + ")");
    const index_t a = label_ptr[c], b = label_ptr[c + 1];
    if (a >= b || (b - a == 1 && label_rows[a] == c)) continue;  // no rows, or its own mean
    if (std::find(labels.begin(), labels.end(), c) == labels.end()) labels.push_back(c);
  }
  const index_t n = static_cast<index_t>(labels.size());
  if (n == 0) return Status::Ok();
  std::vector<Acc> means(static_cast<std::size_t>(n * dim));
  st = hybrid_memory_label_means_cpu<T, Acc>(memory, num_rows, dim, label_ptr, label_rows,
                                             num_labels, labels.data(), 0, n, means.data());
  if (!st.ok()) return st;
#pragma omp parallel for schedule(static)
  for (index_t k = 0; k < n; ++k) {
    T* out = memory + labels[k] * dim;
    const Acc* src = means.data() + k * dim;
    for (index_t t = 0; t < dim; ++t) store(out + t, src[t]);
  }
  return Status::Ok();
}

// ------------------------------------------------------------------------ instantiations

#define SMCR_HM_INSTANTIATE(T, Acc)                                                           \
  template Status hybrid_memory_label_means_cpu<T, Acc>(const T*, index_t, index_t,           \
                                                        const index_t*, const index_t*,       \
                                                        index_t, const index_t*, index_t,     \
                                                        index_t, Acc*);                       \
  template Status hybrid_memory_loss_cpu<T, Acc>(const Acc*, index_t, const T*, index_t,      \
                                                 index_t, const index_t*, const index_t*,     \
                                                 index_t, const index_t*, Acc, Acc, index_t,  \
                                                 Acc*, Acc*, Acc*);                           \
  template Status hybrid_memory_update_cpu<T, Acc>(T*, index_t, index_t, const index_t*,      \
                                                   const Acc*, index_t, Acc);                 \
  template Status hybrid_memory_refresh_means_cpu<T, Acc>(T*, index_t, index_t,               \
                                                          const index_t*, index_t,            \
                                                          const index_t*, const index_t*,     \
                                                          const index_t*, index_t);

SMCR_HM_INSTANTIATE(float, float)
SMCR_HM_INSTANTIATE(bf16, float)
SMCR_HM_INSTANTIATE(double, double)
#undef SMCR_HM_INSTANTIATE

#define SMCR_HM_INSTANTIATE_ACC(Acc)                                                          \
  template Status hybrid_memory_softmax_block_cpu<Acc>(const Acc*, Acc*, index_t, index_t,    \
                                                       index_t, index_t, const index_t*,      \
                                                       const index_t*, Acc, Acc*, Acc*, Acc*, \
                                                       Acc*, index_t, bool);                  \
  template Status hybrid_memory_finalize_cpu<Acc>(index_t, index_t, const Acc*, const Acc*,   \
                                                  const Acc*, const Acc*, const Acc*, Acc,    \
                                                  Acc, Acc*, Acc*, Acc*);                     \
  template Status hybrid_memory_backward_cpu<Acc>(index_t, index_t, const Acc*, const Acc*,   \
                                                  const Acc*, Acc*);

SMCR_HM_INSTANTIATE_ACC(float)
SMCR_HM_INSTANTIATE_ACC(double)
#undef SMCR_HM_INSTANTIATE_ACC

}  // namespace smcr
