// Torch glue of the training-loss kernels (CPU): tensor checks, dtype dispatch, the blocked
// matrix products (at::mm, i.e. MKL/OpenBLAS), then the framework-free kernels of
// csrc/kernels/{hybrid_memory,soft_triplet}. The CUDA registrations are in losses_cuda.cpp.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../kernels/hybrid_memory.h"
#include "../kernels/soft_triplet.h"
#include "../kernels/validate.h"
#include "losses_glue.h"

namespace smcr_glue {
namespace {

// ------------------------------------------------------------------------ label index

std::tuple<at::Tensor, at::Tensor> hybrid_memory_label_index_cpu(const at::Tensor& row_labels,
                                                                 int64_t num_labels) {
  check_int64_vector(row_labels, "row_labels");
  SMCR_CHECK(num_labels >= 0, "num_labels must be >= 0, got ", num_labels);
  at::Tensor ptr = at::empty({num_labels + 1}, row_labels.options());
  at::Tensor rows = at::empty({row_labels.numel()}, row_labels.options());
  check_status(smcr::hybrid_memory_label_index_cpu(row_labels.data_ptr<int64_t>(),
                                                   row_labels.numel(), num_labels,
                                                   ptr.data_ptr<int64_t>(),
                                                   rows.data_ptr<int64_t>()));
  return {ptr, rows};
}

// The zero-copy runs of a label index, as the (K, 3) int64 (label0, count, row0) tensor the
// loss takes (host data; smcr_ext.label_index calls this once per labelling).
at::Tensor hybrid_memory_singleton_runs_cpu(const at::Tensor& label_ptr,
                                            const at::Tensor& label_rows, int64_t min_run) {
  check_int64_vector(label_ptr, "label_ptr");
  check_int64_vector(label_rows, "label_rows");
  SMCR_CHECK(label_ptr.numel() >= 1, "label_ptr must have L + 1 >= 1 entries");
  const int64_t L = label_ptr.numel() - 1, M = label_rows.numel();
  const int64_t* ptr = label_ptr.data_ptr<int64_t>();
  bool ok = ptr[0] == 0 && ptr[L] == M;
  for (int64_t c = 0; ok && c < L; ++c) ok = ptr[c] <= ptr[c + 1];
  SMCR_CHECK(ok, "label_ptr must rise from 0 to M = ", M,
              " (build it with hybrid_memory_label_index)");
  const std::vector<LabelRun> runs =
      find_singleton_runs(ptr, label_rows.data_ptr<int64_t>(), L, min_run);
  at::Tensor out = at::empty({static_cast<int64_t>(runs.size()), 3}, label_ptr.options());
  int64_t* o = out.data_ptr<int64_t>();
  for (const LabelRun& r : runs) {
    *o++ = r.label0;
    *o++ = r.count;
    *o++ = r.row0;
  }
  return out;
}

// ------------------------------------------------------------------------ loss

template <typename T, typename Acc>
std::tuple<at::Tensor, at::Tensor, at::Tensor> hybrid_memory_loss_impl(
    const at::Tensor& f, const at::Tensor& memory, const at::Tensor& label_ptr,
    const at::Tensor& label_rows, const at::Tensor& targets, double temperature, double eps,
    int64_t block_size, bool compute_grad, const std::vector<LabelRun>& given_runs,
    bool runs_given, const HybridMemoryShapes& sh) {
  const int64_t B = sh.batch, D = sh.dim, M = sh.rows, L = sh.labels;
  const auto opts = f.options();
  at::Tensor loss = at::zeros({}, opts);
  at::Tensor per_sample = at::empty({B}, opts);
  at::Tensor grad_cache = at::empty({compute_grad ? B : 0, D}, opts);
  if (B == 0) return {loss, per_sample, grad_cache};
  const int64_t* ptr = label_ptr.data_ptr<int64_t>();
  const int64_t* rows = label_rows.data_ptr<int64_t>();
  const int64_t* tgt = targets.data_ptr<int64_t>();
  check_status(smcr::hybrid_memory_check_targets_cpu(tgt, B, ptr, L));
  SMCR_CHECK(ptr[0] == 0 && ptr[L] == M, "label_ptr must start at 0 and end at M = ", M,
              " (build it with hybrid_memory_label_index)");
  check_runs_match(given_runs, ptr, rows);
  const T* mem = reinterpret_cast<const T*>(memory.data_ptr());
  const Acc inv_temp = static_cast<Acc>(1.0 / temperature);
  const int64_t nb = std::max<int64_t>(1, std::min(block_size, L));
  // Runs of single-row labels on consecutive rows (the caller's `runs`, or found here) are
  // multiplied straight from the memory (no copy) when it is stored in the accumulation
  // type; other labels go through one (nb, D) block of means. A zero-copy block needs no
  // means buffer, only its (B, n) scores, so it may be longer: fewer, larger products.
  constexpr bool kZeroCopy = std::is_same<T, Acc>::value;
  const int64_t nb_run = std::max<int64_t>(nb, std::min<int64_t>(L, 8192));
  std::vector<LabelRun> runs;
  if (kZeroCopy)
    runs = runs_given ? given_runs : find_singleton_runs(ptr, rows, L, kZeroCopyMinRun);
  at::Tensor means;  // (nb, D), allocated on first use: none when runs cover every label
  at::Tensor scores = at::empty({B * (runs.empty() ? nb : nb_run)}, opts);
  // The running state and E need no fills: the first block starts them (first_block) and
  // writes E = P C (the same code path as CUDA, where each fill is a launch).
  at::Tensor state = at::empty({3, B}, opts);  // run_max, run_sum, target_logit
  at::Tensor run_max = state[0], run_sum = state[1], target_logit = state[2];
  at::Tensor expected = compute_grad ? at::empty({B, D}, opts) : at::Tensor();
  // (L >= 1 here: the targets were checked to be present labels)
  for_each_label_block(L, nb, nb_run, runs, [&](int64_t l0, int64_t n, int64_t row0) {
    at::Tensor c;  // (n, D) label means of this block
    if (row0 >= 0) {
      c = memory.narrow(0, row0, n);
    } else {
      if (!means.defined()) means = at::empty({nb, D}, opts);
      c = means.narrow(0, 0, n);
      check_status(smcr::hybrid_memory_label_means_cpu<T, Acc>(
          mem, M, D, ptr, rows, L, nullptr, l0, n, c.data_ptr<Acc>()));
    }
    at::Tensor s = scores.narrow(0, 0, B * n).view({B, n});  // (B, n)
    at::mm_out(s, f, c.t());
    check_status(smcr::hybrid_memory_softmax_block_cpu<Acc>(
        s.data_ptr<Acc>(), s.data_ptr<Acc>(), B, n, n, l0, ptr, tgt, inv_temp,
        run_max.data_ptr<Acc>(), run_sum.data_ptr<Acc>(), target_logit.data_ptr<Acc>(),
        compute_grad ? expected.data_ptr<Acc>() : nullptr, D, l0 == 0));
    if (compute_grad) {
      if (l0 == 0) at::mm_out(expected, s, c);  // E = P C
      else expected.addmm_(s, c);               // E += P C
    }
  });
  at::Tensor target_means;
  if (compute_grad) {
    target_means = at::empty({B, D}, opts);
    check_status(smcr::hybrid_memory_label_means_cpu<T, Acc>(
        mem, M, D, ptr, rows, L, tgt, 0, B, target_means.data_ptr<Acc>()));
  }
  check_status(smcr::hybrid_memory_finalize_cpu<Acc>(
      B, D, run_max.data_ptr<Acc>(), run_sum.data_ptr<Acc>(), target_logit.data_ptr<Acc>(),
      compute_grad ? expected.data_ptr<Acc>() : nullptr,
      compute_grad ? target_means.data_ptr<Acc>() : nullptr, inv_temp, static_cast<Acc>(eps),
      per_sample.data_ptr<Acc>(), loss.data_ptr<Acc>(),
      compute_grad ? grad_cache.data_ptr<Acc>() : nullptr));
  return {loss, per_sample, grad_cache};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> hybrid_memory_loss_cpu(
    const at::Tensor& features, const at::Tensor& memory, const at::Tensor& label_ptr,
    const at::Tensor& label_rows, const at::Tensor& targets, double temperature, double eps,
    int64_t block_size, bool compute_grad, const c10::optional<at::Tensor>& runs) {
  const HybridMemoryShapes sh = check_hybrid_memory_loss(features, memory, label_ptr, label_rows,
                                                         targets, temperature, eps, block_size);
  const std::vector<LabelRun> given = checked_runs(runs, sh.labels, sh.rows);
  const bool given_runs = runs.has_value();
  const at::Tensor f = features.to(sh.acc).contiguous();
  return with_memory_types(memory.scalar_type(), [&](auto* t, auto* a) {
    using T = std::remove_pointer_t<decltype(t)>;
    using Acc = std::remove_pointer_t<decltype(a)>;
    return hybrid_memory_loss_impl<T, Acc>(f, memory, label_ptr, label_rows, targets,
                                           temperature, eps, block_size, compute_grad, given,
                                           given_runs, sh);
  });
}

template <typename Acc>
at::Tensor hybrid_memory_backward_impl(const at::Tensor& grad_loss,
                                       const c10::optional<at::Tensor>& grad_per_sample,
                                       const at::Tensor& grad_cache) {
  const int64_t B = grad_cache.size(0), D = grad_cache.size(1);
  const at::Tensor gl = grad_loss.to(grad_cache.scalar_type()).contiguous();
  const at::Tensor gps = optional_grad(grad_per_sample, grad_cache.scalar_type());
  at::Tensor out = at::empty({B, D}, grad_cache.options());
  check_status(smcr::hybrid_memory_backward_cpu<Acc>(
      B, D, gl.data_ptr<Acc>(), gps.defined() ? gps.data_ptr<Acc>() : nullptr,
      grad_cache.data_ptr<Acc>(), out.data_ptr<Acc>()));
  return out;
}

at::Tensor hybrid_memory_loss_backward_cpu(const at::Tensor& grad_loss,
                                           const c10::optional<at::Tensor>& grad_per_sample,
                                           const at::Tensor& grad_cache, at::ScalarType dtype) {
  check_hybrid_memory_backward(grad_loss, grad_per_sample, grad_cache);
  at::Tensor out = grad_cache.scalar_type() == at::kDouble
                       ? hybrid_memory_backward_impl<double>(grad_loss, grad_per_sample, grad_cache)
                       : hybrid_memory_backward_impl<float>(grad_loss, grad_per_sample, grad_cache);
  return out.to(dtype);
}

// ------------------------------------------------------------------------ label means

// (B, D) means of the rows of labels[i] (zeros for a label with no row or outside [0, L)),
// summed in ascending row order and returned in the memory's dtype (bf16: rounded once).
at::Tensor hybrid_memory_label_means_op_cpu(const at::Tensor& memory, const at::Tensor& label_ptr,
                                            const at::Tensor& label_rows,
                                            const at::Tensor& labels) {
  check_label_means(memory, label_ptr, label_rows, labels);
  const int64_t M = memory.size(0), D = memory.size(1), L = label_ptr.numel() - 1;
  const int64_t B = labels.numel();
  const at::ScalarType acc = memory.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor out = at::empty({B, D}, memory.options().dtype(acc));
  with_memory_types(memory.scalar_type(), [&](auto* t, auto* a) {
    using T = std::remove_pointer_t<decltype(t)>;
    using Acc = std::remove_pointer_t<decltype(a)>;
    check_status(smcr::hybrid_memory_label_means_cpu<T, Acc>(
        typed_ptr<const T>(memory), M, D, label_ptr.data_ptr<int64_t>(),
        label_rows.data_ptr<int64_t>(), L, labels.data_ptr<int64_t>(), 0, B,
        out.data_ptr<Acc>()));
  });
  return out.to(memory.scalar_type());
}

// ------------------------------------------------------------------------ update

void hybrid_memory_update_cpu(at::Tensor memory, const at::Tensor& rows,
                              const at::Tensor& features, double momentum) {
  const at::ScalarType acc = check_hybrid_memory_update(memory, rows, features, momentum);
  const at::Tensor f = features.to(acc).contiguous();
  with_memory_types(memory.scalar_type(), [&](auto* t, auto* a) {
    using T = std::remove_pointer_t<decltype(t)>;
    using Acc = std::remove_pointer_t<decltype(a)>;
    check_status(smcr::hybrid_memory_update_cpu<T, Acc>(
        typed_ptr<T>(memory), memory.size(0), memory.size(1), rows.data_ptr<int64_t>(),
        f.data_ptr<Acc>(), f.size(0), static_cast<Acc>(momentum)));
  });
}

// The cluster means of the labels of `rows`, written back to their rows (see
// hybrid_memory_refresh_means_cpu); in place, after an update.
void hybrid_memory_refresh_means_cpu(at::Tensor memory, const at::Tensor& rows,
                                     const at::Tensor& row_labels, const at::Tensor& label_ptr,
                                     const at::Tensor& label_rows) {
  check_refresh_means(memory, rows, row_labels, label_ptr, label_rows);
  with_memory_types(memory.scalar_type(), [&](auto* t, auto* a) {
    using T = std::remove_pointer_t<decltype(t)>;
    using Acc = std::remove_pointer_t<decltype(a)>;
    check_status(smcr::hybrid_memory_refresh_means_cpu<T, Acc>(
        typed_ptr<T>(memory), memory.size(0), memory.size(1), rows.data_ptr<int64_t>(),
        rows.numel(), row_labels.data_ptr<int64_t>(), label_ptr.data_ptr<int64_t>(),
        label_rows.data_ptr<int64_t>(), label_ptr.numel() - 1));
  });
}

// ------------------------------------------------------------------------ soft triplet

using TripletOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                  at::Tensor, at::Tensor>;

template <typename Acc>
TripletOutputs soft_triplet_impl(const at::Tensor& x, const at::Tensor& teacher,
                                 const at::Tensor& labels, double margin) {
  const int64_t B = x.size(0), D = x.size(1);
  const auto opts = x.options();
  at::Tensor gram = at::mm(x, x.t());  // (B, B)
  at::Tensor loss = at::zeros({}, opts);
  at::Tensor per = at::empty({B}, opts), dap = at::empty({B}, opts), dan = at::empty({B}, opts);
  at::Tensor coef = at::empty({B}, opts);
  at::Tensor pos = at::empty({B}, labels.options()), neg = at::empty({B}, labels.options());
  check_status(smcr::soft_triplet_forward_cpu<Acc>(
      x.data_ptr<Acc>(), teacher.defined() ? teacher.data_ptr<Acc>() : nullptr,
      gram.data_ptr<Acc>(), labels.data_ptr<int64_t>(), B, D, static_cast<Acc>(margin),
      per.data_ptr<Acc>(), loss.data_ptr<Acc>(), pos.data_ptr<int64_t>(),
      neg.data_ptr<int64_t>(), dap.data_ptr<Acc>(), dan.data_ptr<Acc>(), coef.data_ptr<Acc>()));
  return {loss, per, pos, neg, dap, dan, coef};
}

TripletOutputs soft_triplet_cpu(const at::Tensor& student, const c10::optional<at::Tensor>& teacher,
                                const at::Tensor& labels, double margin) {
  const at::ScalarType acc = check_soft_triplet(student, teacher, labels, margin);
  const at::Tensor x = student.to(acc).contiguous();
  const at::Tensor t = teacher.has_value() ? teacher->to(acc).contiguous() : at::Tensor();
  return acc == at::kDouble ? soft_triplet_impl<double>(x, t, labels, margin)
                            : soft_triplet_impl<float>(x, t, labels, margin);
}

template <typename Acc>
at::Tensor soft_triplet_backward_impl(const at::Tensor& grad_loss,
                                      const c10::optional<at::Tensor>& grad_per_anchor,
                                      const at::Tensor& x, const at::Tensor& pos,
                                      const at::Tensor& neg,
                                      const at::Tensor& dap, const at::Tensor& dan,
                                      const at::Tensor& coef) {
  const int64_t B = x.size(0), D = x.size(1);
  const at::Tensor gl = grad_loss.to(coef.scalar_type()).contiguous();
  const at::Tensor gpa = optional_grad(grad_per_anchor, coef.scalar_type());
  at::Tensor out = at::empty({B, D}, x.options());
  check_status(smcr::soft_triplet_backward_cpu<Acc>(
      x.data_ptr<Acc>(), B, D, pos.data_ptr<int64_t>(), neg.data_ptr<int64_t>(),
      dap.data_ptr<Acc>(), dan.data_ptr<Acc>(), coef.data_ptr<Acc>(), gl.data_ptr<Acc>(),
      gpa.defined() ? gpa.data_ptr<Acc>() : nullptr, out.data_ptr<Acc>()));
  return out;
}

at::Tensor soft_triplet_backward_cpu(const at::Tensor& grad_loss,
                                     const c10::optional<at::Tensor>& grad_per_anchor,
                                     const at::Tensor& student, const at::Tensor& pos,
                                     const at::Tensor& neg, const at::Tensor& dist_ap,
                                     const at::Tensor& dist_an, const at::Tensor& coef,
                                     at::ScalarType dtype) {
  check_triplet_backward_args(grad_loss, grad_per_anchor, student, pos, neg, dist_ap, dist_an,
                              coef);
  const at::Tensor x = student.to(coef.scalar_type()).contiguous();
  at::Tensor out = coef.scalar_type() == at::kDouble
                       ? soft_triplet_backward_impl<double>(grad_loss, grad_per_anchor, x, pos,
                                                            neg, dist_ap, dist_an, coef)
                       : soft_triplet_backward_impl<float>(grad_loss, grad_per_anchor, x, pos,
                                                           neg, dist_ap, dist_an, coef);
  return out.to(dtype);
}

// ------------------------------------------------------------------------ value checks

at::Tensor first_invalid_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& y,
                             const c10::optional<at::Tensor>& index, int64_t bound,
                             const c10::optional<at::Tensor>& counts) {
  check_first_invalid(x, y, index, bound, counts);
  at::Tensor out = at::empty({4}, x.options().dtype(at::kLong));
  int64_t* o = out.data_ptr<int64_t>();
  with_first_invalid_args(first_invalid_args(x, y), index, counts,
                          [&](const auto* xp, int64_t xr, int64_t xc, const auto* yp, int64_t yr,
                              int64_t yc, const int64_t* idx, int64_t n, const int64_t* cnt) {
                            check_status(smcr::first_invalid_cpu(xp, xr, xc, yp, yr, yc, idx, n,
                                                                 bound, cnt, o));
                          });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(smcr, CPU, m) {
  m.impl("_first_invalid", &first_invalid_cpu);
  m.impl("hybrid_memory_label_index", &hybrid_memory_label_index_cpu);
  m.impl("hybrid_memory_loss", &hybrid_memory_loss_cpu);
  m.impl("_hybrid_memory_singleton_runs", &hybrid_memory_singleton_runs_cpu);
  m.impl("_hybrid_memory_loss_backward", &hybrid_memory_loss_backward_cpu);
  m.impl("_hybrid_memory_label_means", &hybrid_memory_label_means_op_cpu);
  m.impl("hybrid_memory_update_", &hybrid_memory_update_cpu);
  m.impl("_hybrid_memory_refresh_means_", &hybrid_memory_refresh_means_cpu);
  m.impl("soft_triplet", &soft_triplet_cpu);
  m.impl("_soft_triplet_backward", &soft_triplet_backward_cpu);
}

}  // namespace smcr_glue
