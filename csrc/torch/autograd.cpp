// Autograd of the training-loss ops, in C++ (one kernel at the Autograd key for every backend).
//
// The forward ops already compute what their backward needs (hybrid_memory_loss: the (B, D)
// gradient cache; soft_triplet: the mined indices, distances and coefficients), so each
// backward is one call of its own op (_hybrid_memory_loss_backward, _soft_triplet_backward).
// Registering this in C++ rather than with torch.library.register_autograd in Python takes
// the Python autograd machinery (about 0.25 ms per forward + backward measured on a CPU,
// which on a GPU is host time the device waits for) out of every training step.
// Double backward is not supported: the backward ops have no autograd of their own.
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/zeros.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "glue.h"

namespace smcr_glue {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using HmTuple = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using HmSig = HmTuple(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                      const at::Tensor&, double, double, int64_t, bool,
                      const std::optional<at::Tensor>&);
using HmBackwardSig = at::Tensor(const at::Tensor&, const std::optional<at::Tensor>&,
                                 const at::Tensor&, at::ScalarType);
using StTuple = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                           at::Tensor>;
using StSig = StTuple(const at::Tensor&, const std::optional<at::Tensor>&, const at::Tensor&,
                      double);
using StBackwardSig = at::Tensor(const at::Tensor&, const std::optional<at::Tensor>&,
                                 const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                 const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                 at::ScalarType);

template <typename Sig>
c10::TypedOperatorHandle<Sig> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

// Gradients are not materialised (set_materialize_grads(false)): an output that was not used
// (per_sample, per_anchor, and the non-differentiable ones, in a usual step) gets an undefined
// gradient instead of a tensor of zeros, i.e. no fill per backward (on CUDA, one launch each,
// B x D for the gradient cache). The per-row gradient is passed on as None; the loss's, used
// in every real step, becomes a zero only when it is missing.
at::Tensor or_zeros(const at::Tensor& grad, at::IntArrayRef shape, const at::Tensor& like) {
  return grad.defined() ? grad : at::zeros(shape, like.options());
}

std::optional<at::Tensor> or_none(const at::Tensor& grad) {
  return grad.defined() ? std::optional<at::Tensor>(grad) : std::nullopt;
}

class HybridMemoryLossFn : public torch::autograd::Function<HybridMemoryLossFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& features,
                               const at::Tensor& memory, const at::Tensor& label_ptr,
                               const at::Tensor& label_rows, const at::Tensor& targets,
                               double temperature, double eps, int64_t block_size,
                               bool compute_grad, const std::optional<at::Tensor>& runs) {
    static const auto op = find_op<HmSig>("smcr::hybrid_memory_loss");
    at::AutoDispatchBelowADInplaceOrView below;
    auto [loss, per_sample, cache] = op.call(features, memory, label_ptr, label_rows, targets,
                                             temperature, eps, block_size, compute_grad, runs);
    ctx->set_materialize_grads(false);
    ctx->saved_data["compute_grad"] = compute_grad;
    ctx->saved_data["dtype"] = static_cast<int64_t>(features.scalar_type());
    ctx->save_for_backward({cache});
    ctx->mark_non_differentiable({cache});
    return {loss, per_sample, cache};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = find_op<HmBackwardSig>("smcr::_hybrid_memory_loss_backward");
    SMCR_CHECK(ctx->saved_data["compute_grad"].toBool(),
               "smcr::hybrid_memory_loss was run with compute_grad=False, so it kept no "
               "gradient; call smcr_ext.hybrid_memory_loss with features that require grad");
    const at::Tensor cache = ctx->get_saved_variables()[0];
    const at::Tensor grad_loss = or_zeros(grads[0], {}, cache);
    const std::optional<at::Tensor> grad_per_sample = or_none(grads[1]);
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    at::Tensor grad_features = op.call(grad_loss, grad_per_sample, cache, dtype);
    return {grad_features, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(),  at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

HmTuple hybrid_memory_loss_autograd(const at::Tensor& features, const at::Tensor& memory,
                                    const at::Tensor& label_ptr, const at::Tensor& label_rows,
                                    const at::Tensor& targets, double temperature, double eps,
                                    int64_t block_size, bool compute_grad,
                                    const std::optional<at::Tensor>& runs) {
  variable_list out = HybridMemoryLossFn::apply(features, memory, label_ptr, label_rows,
                                                targets, temperature, eps, block_size,
                                                compute_grad, runs);
  return {out[0], out[1], out[2]};
}

class SoftTripletFn : public torch::autograd::Function<SoftTripletFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& student,
                               const std::optional<at::Tensor>& teacher,
                               const at::Tensor& labels, double margin) {
    static const auto op = find_op<StSig>("smcr::soft_triplet");
    at::AutoDispatchBelowADInplaceOrView below;
    auto [loss, per_anchor, pos, neg, dap, dan, coef] = op.call(student, teacher, labels, margin);
    ctx->set_materialize_grads(false);
    ctx->saved_data["dtype"] = static_cast<int64_t>(student.scalar_type());
    ctx->save_for_backward({student, pos, neg, dap, dan, coef});
    ctx->mark_non_differentiable({pos, neg, dap, dan, coef});
    return {loss, per_anchor, pos, neg, dap, dan, coef};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = find_op<StBackwardSig>("smcr::_soft_triplet_backward");
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& coef = saved[5];
    const at::Tensor grad_loss = or_zeros(grads[0], {}, coef);
    const std::optional<at::Tensor> grad_per_anchor = or_none(grads[1]);
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    at::Tensor grad_student = op.call(grad_loss, grad_per_anchor, saved[0], saved[1], saved[2],
                                      saved[3], saved[4], coef, dtype);
    return {grad_student, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

StTuple soft_triplet_autograd(const at::Tensor& student, const std::optional<at::Tensor>& teacher,
                              const at::Tensor& labels, double margin) {
  variable_list out = SoftTripletFn::apply(student, teacher, labels, margin);
  return {out[0], out[1], out[2], out[3], out[4], out[5], out[6]};
}

}  // namespace
}  // namespace smcr_glue

TORCH_LIBRARY_IMPL(smcr, Autograd, m) {
  m.impl("hybrid_memory_loss", &smcr_glue::hybrid_memory_loss_autograd);
  m.impl("soft_triplet", &smcr_glue::soft_triplet_autograd);
}
