// Torch glue of the training-loss kernels (CUDA): the same loop as losses.cpp with cuBLAS
// products (at::mm on the current stream) and the kernels of csrc/kernels/*.cu. Compiled
// only in CUDA builds (SMCR_WITH_CUDA).
//
// A bfloat16 memory takes the tensor-core path: label means are kept in bf16, the features
// are rounded to bf16 once, and both products run bf16 x bf16 -> float32 (at::mm with
// out_dtype=float); the online softmax, the running sums and the losses stay float32. A
// float32 memory uses float32 products (TF32 only if the user enabled it for matmuls:
// torch.backends.cuda.matmul.allow_tf32 / set_float32_matmul_precision).
//
// Nothing here synchronises with the host: targets and rows are validated by the Python
// wrapper before the call, and the kernels skip (never dereference) out-of-range values.
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
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

cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream().stream(); }

// out (float32) = a @ b for float32 or bf16 a, b (bf16: tensor cores, float32 accumulation
// and output through at::mm's out_dtype; should that overload be unavailable, the operands
// are converted to float32 instead, with a warning).
void mm_to_float(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != at::kBFloat16) {
    at::mm_out(out, a, b);
    return;
  }
  static std::atomic<bool> dtype_mm_ok{true};
  if (dtype_mm_ok.load()) {
    try {
      at::mm_out(out, a, b, at::kFloat);
      return;
    } catch (const c10::OutOfMemoryError&) {
      throw;  // transient: not a reason to give up the tensor-core path for the process
    } catch (const c10::Error& e) {
      dtype_mm_ok.store(false);
      TORCH_WARN("smcr: at::mm with out_dtype=float32 failed (", e.what_without_backtrace(),
                 "); the bf16 memory's products fall back to float32 operands");
    }
  }
  at::mm_out(out, a.to(at::kFloat), b.to(at::kFloat));
}

// ------------------------------------------------------------------------ label index

std::tuple<at::Tensor, at::Tensor> hybrid_memory_label_index_cuda(const at::Tensor& row_labels,
                                                                  int64_t num_labels) {
  check_int64_vector(row_labels, "row_labels");
  SMCR_CHECK(num_labels >= 0, "num_labels must be >= 0, got ", num_labels);
  const c10::cuda::CUDAGuard guard(row_labels.device());
  at::Tensor ptr = at::empty({num_labels + 1}, row_labels.options());
  at::Tensor rows = at::empty({row_labels.numel()}, row_labels.options());
  TensorAllocator scratch(row_labels.device());
  check_status(smcr::hybrid_memory_label_index_cuda(
      row_labels.data_ptr<int64_t>(), row_labels.numel(), num_labels, ptr.data_ptr<int64_t>(),
      rows.data_ptr<int64_t>(), scratch, current_stream()));
  return {ptr, rows};
}

// ------------------------------------------------------------------------ loss

// T: memory element; Acc: accumulation; MeansT: storage of label means and probabilities
// for the products (bf16 on the tensor-core path, else Acc).
template <typename T, typename Acc, typename MeansT>
std::tuple<at::Tensor, at::Tensor, at::Tensor> hybrid_memory_loss_impl(
    const at::Tensor& f, const at::Tensor& memory, const at::Tensor& label_ptr,
    const at::Tensor& label_rows, const at::Tensor& targets, double temperature, double eps,
    int64_t block_size, bool compute_grad, const std::vector<LabelRun>& runs,
    const HybridMemoryShapes& sh) {
  constexpr bool kBf16Products = std::is_same<MeansT, smcr::bf16>::value;
  // a zero-copy block multiplies the memory itself, so it must be stored as the products
  // take it (float: float, bf16: bf16, double: double), which every supported pair is
  static_assert(std::is_same<T, MeansT>::value, "zero-copy blocks need MeansT == T");
  const int64_t B = sh.batch, D = sh.dim, M = sh.rows, L = sh.labels;
  const auto opts = f.options();
  const auto means_opts = opts.dtype(kBf16Products ? at::kBFloat16 : opts.dtype().toScalarType());
  const cudaStream_t stream = current_stream();
  if (B == 0 || L == 0) {  // nothing to stream: a zero loss (L = 0 only with B = 0: checked)
    return {at::zeros({}, opts), at::zeros({B}, opts),
            at::zeros({compute_grad ? B : 0, D}, opts)};
  }
  // Launches per call: per block of labels one means kernel (none for a zero-copy block),
  // one product, one softmax kernel and (with a gradient) one product; then the target
  // means, finalize and its mean. No fills: the first block starts the running state and
  // writes E = P C, and the mean kernel writes the loss.
  at::Tensor loss = at::empty({}, opts);
  at::Tensor per_sample = at::empty({B}, opts);
  at::Tensor grad_cache = at::empty({compute_grad ? B : 0, D}, opts);
  const int64_t* ptr = label_ptr.data_ptr<int64_t>();
  const int64_t* rows = label_rows.data_ptr<int64_t>();
  const int64_t* tgt = targets.data_ptr<int64_t>();
  const T* mem = reinterpret_cast<const T*>(memory.data_ptr());
  const Acc inv_temp = static_cast<Acc>(1.0 / temperature);
  const int64_t nb = std::max<int64_t>(1, std::min(block_size, L));
  // The runs of single-row labels (host data from smcr_ext.label_index) are multiplied
  // straight from the memory: no means kernel and no means traffic for them, and, needing
  // no means buffer, longer blocks (fewer launches, larger products): up to 32768 labels,
  // fewer when the batch is so large (B > 512 in float32) that their scores (and bf16
  // probabilities) would pass 64 MiB.
  const int64_t label_bytes = B * static_cast<int64_t>(sizeof(Acc) + (kBf16Products ? 2 : 0));
  const int64_t budget_labels = std::max<int64_t>(1, (int64_t{64} << 20) / label_bytes);
  const int64_t nb_run = std::max<int64_t>(nb, std::min<int64_t>({L, 32768, budget_labels}));
  const int64_t most = runs.empty() ? nb : nb_run;  // the longest block
  const at::Tensor fg = kBf16Products ? f.to(at::kBFloat16) : f;  // (B, D) product input
  at::Tensor means;  // (nb, D) MeansT, allocated on first use: none when runs cover every label
  at::Tensor scores = at::empty({B * most}, opts);
  at::Tensor probs = kBf16Products ? at::empty({B * most}, means_opts) : scores;
  at::Tensor state = at::empty({3, B}, opts);  // run_max, run_sum, target_logit
  at::Tensor run_max = state[0], run_sum = state[1], target_logit = state[2];
  at::Tensor expected = compute_grad ? at::empty({B, D}, opts) : at::Tensor();
  at::Tensor pc;  // (B, D) P C of a later block (bf16 products), allocated on first use
  for_each_label_block(L, nb, nb_run, runs, [&](int64_t l0, int64_t n, int64_t row0) {
    const bool first = l0 == 0;
    at::Tensor c;                                             // (n, D) MeansT
    at::Tensor s = scores.narrow(0, 0, B * n).view({B, n});  // (B, n) float
    at::Tensor p = probs.narrow(0, 0, B * n).view({B, n});   // (B, n) MeansT (may alias s)
    if (row0 >= 0) {
      c = memory.narrow(0, row0, n);
    } else {
      if (!means.defined()) means = at::empty({nb, D}, means_opts);
      c = means.narrow(0, 0, n);
      check_status(smcr::hybrid_memory_label_means_cuda<T, MeansT>(
          mem, M, D, ptr, rows, L, nullptr, l0, n, reinterpret_cast<MeansT*>(c.data_ptr()),
          stream));
    }
    mm_to_float(s, fg, c.t());
    check_status(smcr::hybrid_memory_softmax_block_cuda<Acc, MeansT>(
        s.data_ptr<Acc>(), reinterpret_cast<MeansT*>(p.data_ptr()), B, n, n, l0, ptr, tgt,
        inv_temp, run_max.data_ptr<Acc>(), run_sum.data_ptr<Acc>(),
        target_logit.data_ptr<Acc>(), compute_grad ? expected.data_ptr<Acc>() : nullptr, D,
        first, stream));
    if (!compute_grad) return;
    if (first) {
      mm_to_float(expected, p, c);  // E = P C
    } else if (kBf16Products) {
      if (!pc.defined()) pc = at::empty({B, D}, opts);
      mm_to_float(pc, p, c);  // (B, D) = P C
      expected.add_(pc);
    } else {
      expected.addmm_(s, c);  // E += P C
    }
  });
  at::Tensor target_means;
  if (compute_grad) {
    target_means = at::empty({B, D}, means_opts);
    check_status(smcr::hybrid_memory_label_means_cuda<T, MeansT>(
        mem, M, D, ptr, rows, L, tgt, 0, B, reinterpret_cast<MeansT*>(target_means.data_ptr()),
        stream));
  }
  check_status(smcr::hybrid_memory_finalize_cuda<Acc, MeansT>(
      B, D, run_max.data_ptr<Acc>(), run_sum.data_ptr<Acc>(), target_logit.data_ptr<Acc>(),
      compute_grad ? expected.data_ptr<Acc>() : nullptr,
      compute_grad ? reinterpret_cast<const MeansT*>(target_means.data_ptr()) : nullptr,
      inv_temp, static_cast<Acc>(eps), per_sample.data_ptr<Acc>(), loss.data_ptr<Acc>(),
      compute_grad ? grad_cache.data_ptr<Acc>() : nullptr, stream));
  return {loss, per_sample, grad_cache};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> hybrid_memory_loss_cuda(
    const at::Tensor& features, const at::Tensor& memory, const at::Tensor& label_ptr,
    const at::Tensor& label_rows, const at::Tensor& targets, double temperature, double eps,
    int64_t block_size, bool compute_grad, const c10::optional<at::Tensor>& runs) {
  const HybridMemoryShapes sh = check_hybrid_memory_loss(features, memory, label_ptr, label_rows,
                                                         targets, temperature, eps, block_size);
  // host data only: no synchronisation, and fine inside a CUDA graph capture
  const std::vector<LabelRun> r = checked_runs(runs, sh.labels, sh.rows);
  const c10::cuda::CUDAGuard guard(memory.device());
  const at::Tensor f = features.to(sh.acc).contiguous();
  // the label means are kept in the memory's type (bf16: the tensor-core products)
  return with_memory_types(memory.scalar_type(), [&](auto* t, auto* a) {
    using T = std::remove_pointer_t<decltype(t)>;
    using Acc = std::remove_pointer_t<decltype(a)>;
    return hybrid_memory_loss_impl<T, Acc, T>(f, memory, label_ptr, label_rows, targets,
                                              temperature, eps, block_size, compute_grad, r, sh);
  });
}

at::Tensor hybrid_memory_loss_backward_cuda(const at::Tensor& grad_loss,
                                            const c10::optional<at::Tensor>& grad_per_sample,
                                            const at::Tensor& grad_cache, at::ScalarType dtype) {
  check_hybrid_memory_backward(grad_loss, grad_per_sample, grad_cache);
  const c10::cuda::CUDAGuard guard(grad_cache.device());
  const int64_t B = grad_cache.size(0), D = grad_cache.size(1);
  const auto acc = grad_cache.scalar_type();
  const at::Tensor gl = grad_loss.to(acc).contiguous();
  const at::Tensor gps = optional_grad(grad_per_sample, acc);
  at::Tensor out = at::empty({B, D}, grad_cache.options());
  if (acc == at::kDouble) {
    check_status(smcr::hybrid_memory_backward_cuda<double>(
        B, D, gl.data_ptr<double>(), gps.defined() ? gps.data_ptr<double>() : nullptr,
        grad_cache.data_ptr<double>(), out.data_ptr<double>(), current_stream()));
  } else {
    check_status(smcr::hybrid_memory_backward_cuda<float>(
        B, D, gl.data_ptr<float>(), gps.defined() ? gps.data_ptr<float>() : nullptr,
        grad_cache.data_ptr<float>(), out.data_ptr<float>(), current_stream()));
  }
  return out.to(dtype);
}

// ------------------------------------------------------------------------ label means

// (B, D) means in the memory's dtype (the kernel accumulates in float, or double, and
// rounds once on the store); one launch, no synchronisation.
at::Tensor hybrid_memory_label_means_op_cuda(const at::Tensor& memory,
                                             const at::Tensor& label_ptr,
                                             const at::Tensor& label_rows,
                                             const at::Tensor& labels) {
  check_label_means(memory, label_ptr, label_rows, labels);
  const c10::cuda::CUDAGuard guard(memory.device());
  const int64_t M = memory.size(0), D = memory.size(1), L = label_ptr.numel() - 1;
  const int64_t B = labels.numel();
  at::Tensor out = at::empty({B, D}, memory.options());
  with_memory_types(memory.scalar_type(), [&](auto* t, auto*) {
    using T = std::remove_pointer_t<decltype(t)>;
    check_status(smcr::hybrid_memory_label_means_cuda<T, T>(
        typed_ptr<const T>(memory), M, D, label_ptr.data_ptr<int64_t>(),
        label_rows.data_ptr<int64_t>(), L, labels.data_ptr<int64_t>(), 0, B, typed_ptr<T>(out),
        current_stream()));
  });
  return out;
}

// ------------------------------------------------------------------------ update

void hybrid_memory_update_cuda(at::Tensor memory, const at::Tensor& rows,
                               const at::Tensor& features, double momentum) {
  const at::ScalarType acc = check_hybrid_memory_update(memory, rows, features, momentum);
  const c10::cuda::CUDAGuard guard(memory.device());
  const at::Tensor f = features.to(acc).contiguous();
  with_memory_types(memory.scalar_type(), [&](auto* t, auto* a) {
    using T = std::remove_pointer_t<decltype(t)>;
    using Acc = std::remove_pointer_t<decltype(a)>;
    check_status(smcr::hybrid_memory_update_cuda<T, Acc>(
        typed_ptr<T>(memory), memory.size(0), memory.size(1), rows.data_ptr<int64_t>(),
        f.data_ptr<Acc>(), f.size(0), static_cast<Acc>(momentum), current_stream()));
  });
}

// The cluster means of the labels of `rows`, written back to their rows: one launch, no
// synchronisation (bad rows and labels are skipped by the kernel).
void hybrid_memory_refresh_means_cuda(at::Tensor memory, const at::Tensor& rows,
                                      const at::Tensor& row_labels, const at::Tensor& label_ptr,
                                      const at::Tensor& label_rows) {
  check_refresh_means(memory, rows, row_labels, label_ptr, label_rows);
  const c10::cuda::CUDAGuard guard(memory.device());
  with_memory_types(memory.scalar_type(), [&](auto* t, auto*) {
    using T = std::remove_pointer_t<decltype(t)>;
    check_status(smcr::hybrid_memory_refresh_means_cuda<T>(
        typed_ptr<T>(memory), memory.size(0), memory.size(1), rows.data_ptr<int64_t>(),
        rows.numel(), row_labels.data_ptr<int64_t>(), label_ptr.data_ptr<int64_t>(),
        label_rows.data_ptr<int64_t>(), label_ptr.numel() - 1, current_stream()));
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
  at::Tensor gram = at::mm(x, x.t());  // (B, B), for mining
  at::Tensor loss = at::empty({}, opts);  // written by the mean kernel
  at::Tensor per = at::empty({B}, opts), dap = at::empty({B}, opts), dan = at::empty({B}, opts);
  at::Tensor coef = at::empty({B}, opts);
  at::Tensor pos = at::empty({B}, labels.options()), neg = at::empty({B}, labels.options());
  check_status(smcr::soft_triplet_forward_cuda<Acc>(
      x.data_ptr<Acc>(), teacher.defined() ? teacher.data_ptr<Acc>() : nullptr,
      gram.data_ptr<Acc>(), labels.data_ptr<int64_t>(), B, D, static_cast<Acc>(margin),
      per.data_ptr<Acc>(), loss.data_ptr<Acc>(), pos.data_ptr<int64_t>(),
      neg.data_ptr<int64_t>(), dap.data_ptr<Acc>(), dan.data_ptr<Acc>(), coef.data_ptr<Acc>(),
      current_stream()));
  return {loss, per, pos, neg, dap, dan, coef};
}

TripletOutputs soft_triplet_cuda(const at::Tensor& student,
                                 const c10::optional<at::Tensor>& teacher,
                                 const at::Tensor& labels, double margin) {
  const at::ScalarType acc = check_soft_triplet(student, teacher, labels, margin);
  const c10::cuda::CUDAGuard guard(student.device());
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
  check_status(smcr::soft_triplet_backward_cuda<Acc>(
      x.data_ptr<Acc>(), B, D, pos.data_ptr<int64_t>(), neg.data_ptr<int64_t>(),
      dap.data_ptr<Acc>(), dan.data_ptr<Acc>(), coef.data_ptr<Acc>(), gl.data_ptr<Acc>(),
      gpa.defined() ? gpa.data_ptr<Acc>() : nullptr, out.data_ptr<Acc>(),
      current_stream()));
  return out;
}

at::Tensor soft_triplet_backward_cuda(const at::Tensor& grad_loss,
                                      const c10::optional<at::Tensor>& grad_per_anchor,
                                      const at::Tensor& student, const at::Tensor& pos,
                                      const at::Tensor& neg, const at::Tensor& dist_ap,
                                      const at::Tensor& dist_an, const at::Tensor& coef,
                                      at::ScalarType dtype) {
  check_triplet_backward_args(grad_loss, grad_per_anchor, student, pos, neg, dist_ap, dist_an,
                              coef);
  const c10::cuda::CUDAGuard guard(student.device());
  const at::Tensor x = student.to(coef.scalar_type()).contiguous();
  at::Tensor out = coef.scalar_type() == at::kDouble
                       ? soft_triplet_backward_impl<double>(grad_loss, grad_per_anchor, x, pos,
                                                            neg, dist_ap, dist_an, coef)
                       : soft_triplet_backward_impl<float>(grad_loss, grad_per_anchor, x, pos,
                                                           neg, dist_ap, dist_an, coef);
  return out.to(dtype);
}

// ------------------------------------------------------------------------ value checks

// One memset and one kernel, whatever is checked; the result stays on the device (the
// caller's one read of it is the only synchronisation).
at::Tensor first_invalid_cuda(const at::Tensor& x, const c10::optional<at::Tensor>& y,
                              const c10::optional<at::Tensor>& index, int64_t bound,
                              const c10::optional<at::Tensor>& counts) {
  check_first_invalid(x, y, index, bound, counts);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty({4}, x.options().dtype(at::kLong));
  int64_t* o = out.data_ptr<int64_t>();
  const cudaStream_t stream = current_stream();
  with_first_invalid_args(first_invalid_args(x, y), index, counts,
                          [&](const auto* xp, int64_t xr, int64_t xc, const auto* yp, int64_t yr,
                              int64_t yc, const int64_t* idx, int64_t n, const int64_t* cnt) {
                            check_status(smcr::first_invalid_cuda(xp, xr, xc, yp, yr, yc, idx, n,
                                                                  bound, cnt, o, stream));
                          });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(smcr, CUDA, m) {
  m.impl("_first_invalid", &first_invalid_cuda);
  m.impl("hybrid_memory_label_index", &hybrid_memory_label_index_cuda);
  m.impl("hybrid_memory_loss", &hybrid_memory_loss_cuda);
  m.impl("_hybrid_memory_loss_backward", &hybrid_memory_loss_backward_cuda);
  m.impl("_hybrid_memory_label_means", &hybrid_memory_label_means_op_cuda);
  m.impl("hybrid_memory_update_", &hybrid_memory_update_cuda);
  m.impl("_hybrid_memory_refresh_means_", &hybrid_memory_refresh_means_cuda);
  m.impl("soft_triplet", &soft_triplet_cuda);
  m.impl("_soft_triplet_backward", &soft_triplet_backward_cuda);
}

}  // namespace smcr_glue
