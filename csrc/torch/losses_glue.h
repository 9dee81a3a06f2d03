// Tensor checks and dtype rules shared by the CPU (losses.cpp) and CUDA (losses_cuda.cpp)
// glue of the training-loss kernels. The Python wrappers (smcr_ext/losses.py) validate the
// values first and raise ValueError; these checks guard direct torch.ops.smcr calls.
//
// Dtypes: the memory is float32, bfloat16 or float64. A float64 memory goes with float64
// features and float64 arithmetic; otherwise features may be float16, bfloat16 or float32
// and everything is computed in float32 (features are converted once, B x D). Losses and
// gradient caches are in the accumulation type; gradients are returned in the features'.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../kernels/hybrid_memory.h"
#include "../kernels/losses_common.h"
#include "glue.h"

namespace smcr_glue {

inline bool is_float_type(at::ScalarType t) {
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf || t == at::kDouble;
}

// Calls fn(static_cast<T*>(nullptr), static_cast<Acc*>(nullptr)) for a memory of dtype
// `memory_type` (the pointers only carry the types): float32 -> (float, float), bfloat16 ->
// (smcr::bf16, float), float64 -> (double, double); returns what fn returns.
template <typename Fn>
auto with_memory_types(at::ScalarType memory_type, Fn&& fn)
    -> decltype(fn(static_cast<float*>(nullptr), static_cast<float*>(nullptr))) {
  SMCR_CHECK(memory_type == at::kFloat || memory_type == at::kBFloat16 ||
                  memory_type == at::kDouble,
              "memory must be float32, bfloat16 or float64, got ", memory_type);
  switch (memory_type) {
    case at::kFloat:
      return fn(static_cast<float*>(nullptr), static_cast<float*>(nullptr));
    case at::kBFloat16:
      return fn(static_cast<smcr::bf16*>(nullptr), static_cast<float*>(nullptr));
    default:
      return fn(static_cast<double*>(nullptr), static_cast<double*>(nullptr));
  }
}

// Typed data pointers of a tensor whose dtype matches T (at::BFloat16 storage for smcr::bf16).
template <typename T>
T* typed_ptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

// The accumulation type of a (features, memory) pair, after checking that they go together.
inline at::ScalarType loss_acc_type(const at::Tensor& features, const at::Tensor& memory) {
  const auto ft = features.scalar_type(), mt = memory.scalar_type();
  SMCR_CHECK(mt == at::kFloat || mt == at::kBFloat16 || mt == at::kDouble,
              "memory must be float32, bfloat16 or float64, got ", mt);
  SMCR_CHECK(is_float_type(ft), "features must be a floating tensor, got ", ft);
  SMCR_CHECK((mt == at::kDouble) == (ft == at::kDouble), "features dtype ", ft,
              " does not go with memory dtype ", mt,
              ": use float64 for both, or float16/bfloat16/float32 features with a float32 or "
              "bfloat16 memory");
  return mt == at::kDouble ? at::kDouble : at::kFloat;
}

inline at::ScalarType acc_type_of(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_same_device(const at::Tensor& a, const char* an, const at::Tensor& b,
                              const char* bn) {
  SMCR_CHECK(a.device() == b.device(), an, " and ", bn, " must be on the same device, got ",
              a.device(), " and ", b.device());
}

// A 2-D contiguous memory and a label index (label_ptr, label_rows) over its rows.
inline void check_memory_and_index(const at::Tensor& memory, const at::Tensor& label_ptr,
                                   const at::Tensor& label_rows) {
  SMCR_CHECK(memory.dim() == 2, "memory must be 2-D (M, D), got shape ", memory.sizes());
  SMCR_CHECK(memory.is_contiguous(), "memory must be contiguous");
  check_int64_vector(label_ptr, "label_ptr");
  check_int64_vector(label_rows, "label_rows");
  SMCR_CHECK(label_ptr.numel() >= 1, "label_ptr must have L + 1 >= 1 entries");
  SMCR_CHECK(label_rows.numel() == memory.size(0), "label_rows must have one entry per memory ",
              "row (M = ", memory.size(0), "), got ", label_rows.numel());
}

struct HybridMemoryShapes {
  int64_t batch, dim, rows, labels;
  at::ScalarType acc;
};

inline HybridMemoryShapes check_hybrid_memory_loss(const at::Tensor& features,
                                                   const at::Tensor& memory,
                                                   const at::Tensor& label_ptr,
                                                   const at::Tensor& label_rows,
                                                   const at::Tensor& targets, double temperature,
                                                   double eps, int64_t block_size) {
  SMCR_CHECK(features.dim() == 2, "features must be 2-D (B, D), got shape ", features.sizes());
  check_memory_and_index(memory, label_ptr, label_rows);
  SMCR_CHECK(features.size(1) == memory.size(1), "features and memory must have the same ",
              "feature dimension D, got ", features.size(1), " and ", memory.size(1));
  SMCR_CHECK(features.size(1) >= 1, "feature dimension D must be >= 1");
  check_int64_vector(targets, "targets");
  SMCR_CHECK(targets.numel() == features.size(0), "targets must have one entry per feature ",
              "row (B = ", features.size(0), "), got ", targets.numel());
  check_same_device(features, "features", memory, "memory");
  check_same_device(label_ptr, "label_ptr", memory, "memory");
  check_same_device(label_rows, "label_rows", memory, "memory");
  check_same_device(targets, "targets", memory, "memory");
  SMCR_CHECK(temperature > 0.0 && std::isfinite(temperature),
              "temperature must be a finite number > 0, got ", temperature);
  SMCR_CHECK(eps >= 0.0 && std::isfinite(eps), "eps must be a finite number >= 0, got ", eps);
  SMCR_CHECK(block_size >= 1, "block_size must be >= 1, got ", block_size);
  // known on the host, so both backends refuse it even unvalidated (no target can be valid)
  SMCR_CHECK(features.size(0) == 0 || label_ptr.numel() > 1, "targets must be labels in ",
             "[0, L), but the label index is empty (L = 0) and B = ", features.size(0));
  return {features.size(0), features.size(1), memory.size(0), label_ptr.numel() - 1,
          loss_acc_type(features, memory)};
}

// ------------------------------------------------------------------------ zero-copy runs
//
// A run is a range of labels [label0, label0 + count) that each have exactly one memory row,
// those rows being consecutive from row0: their label means are the memory slice
// memory[row0 : row0 + count], which the loss multiplies in place instead of copying. The
// op's optional `runs` argument is a (K, 3) int64 CPU tensor of (label0, count, row0) rows,
// sorted by label0 and non-overlapping (smcr_ext.label_index computes it once per labelling;
// host data, so the CUDA loop can slice the memory without reading the device).
struct LabelRun {
  int64_t label0, count, row0;
};

// Runs shorter than this are cheaper to copy into a block of label means than to multiply
// alone (smcr_ext.losses.ZERO_COPY_MIN_RUN, which label_index passes, has the same value).
constexpr int64_t kZeroCopyMinRun = 32;

// The runs of at least min_run single-row labels on consecutive rows of a label index
// (host data), in label order.
inline std::vector<LabelRun> find_singleton_runs(const int64_t* label_ptr,
                                                 const int64_t* label_rows, int64_t num_labels,
                                                 int64_t min_run) {
  std::vector<int64_t> run_length(num_labels);
  check_status(smcr::hybrid_memory_singleton_runs_cpu(label_ptr, label_rows, num_labels,
                                                      run_length.data()));
  std::vector<LabelRun> runs;
  for (int64_t c = 0; c < num_labels;) {
    if (run_length[c] >= std::max<int64_t>(min_run, 1)) {
      runs.push_back({c, run_length[c], label_rows[label_ptr[c]]});
      c += run_length[c];
    } else {
      ++c;
    }
  }
  return runs;
}

// The runs of `runs` after the structural checks that keep every slice in bounds (labels in
// [0, L), rows in [0, M), sorted, non-overlapping). Whether the labels really are single-row
// labels on those rows is checked by check_runs_match on CPU; on CUDA that would need the
// device's label index, so wrong runs there give a wrong loss, never an out-of-bounds access.
inline std::vector<LabelRun> checked_runs(const c10::optional<at::Tensor>& runs,
                                          int64_t num_labels, int64_t num_rows) {
  std::vector<LabelRun> out;
  if (!runs.has_value()) return out;
  const at::Tensor& r = *runs;
  SMCR_CHECK(r.device().is_cpu(), "runs must be a CPU tensor (host data), got ", r.device());
  SMCR_CHECK(r.scalar_type() == at::kLong && r.dim() == 2 && r.size(1) == 3,
              "runs must be a (K, 3) int64 tensor of (label0, count, row0), got ", r.scalar_type(),
              " of shape ", r.sizes());
  const at::Tensor rc = r.contiguous();
  const int64_t* p = rc.data_ptr<int64_t>();
  out.reserve(static_cast<size_t>(rc.size(0)));
  int64_t next_label = 0;
  for (int64_t k = 0; k < rc.size(0); ++k) {
    const LabelRun run{p[3 * k], p[3 * k + 1], p[3 * k + 2]};
    SMCR_CHECK(run.count >= 1 && run.label0 >= next_label && run.label0 <= num_labels - run.count &&
                   run.row0 >= 0 && run.row0 <= num_rows - run.count,
               "runs[", k, "] = (", run.label0, ", ", run.count, ", ", run.row0,
               ") is not a run of labels in [0, L = ", num_labels, ") on rows in [0, M = ",
               num_rows, ") after the previous run (build runs with smcr_ext.label_index)");
    next_label = run.label0 + run.count;
    out.push_back(run);
  }
  return out;
}

// Checks on host copies of the label index (CPU) that every run holds single-row labels on
// its consecutive rows.
inline void check_runs_match(const std::vector<LabelRun>& runs, const int64_t* label_ptr,
                             const int64_t* label_rows) {
  for (size_t k = 0; k < runs.size(); ++k) {
    const LabelRun& run = runs[k];
    for (int64_t i = 0; i < run.count; ++i) {
      const int64_t c = run.label0 + i;
      SMCR_CHECK(label_ptr[c + 1] - label_ptr[c] == 1 && label_rows[label_ptr[c]] == run.row0 + i,
                 "runs[", k, "] does not match the label index: label ", c,
                 " is not a single-row label on row ", run.row0 + i,
                 " (build runs with smcr_ext.label_index from the same row labels)");
    }
  }
}

// The blocks of labels one loss pass streams, in label order: calls f(label0, n, row0) with
// row0 >= 0 for a zero-copy block (labels label0 .. label0 + n - 1 are rows row0 .. row0 +
// n - 1, n <= max_run) and row0 = -1 for a block whose means are computed (n <= max_block,
// never reaching into a run). Both glues stream through this, so the CPU tests cover the
// CUDA loop's order of blocks (up to max_run: 8,192 labels on CPU, 32,768 on CUDA, so a
// longer run is split at other points there; the CPU never takes runs of a bf16 memory).
template <typename F>
void for_each_label_block(int64_t num_labels, int64_t max_block, int64_t max_run,
                          const std::vector<LabelRun>& runs, F&& f) {
  size_t k = 0;
  for (int64_t l0 = 0; l0 < num_labels;) {
    if (k < runs.size() && l0 >= runs[k].label0) {
      const int64_t end = runs[k].label0 + runs[k].count;
      const int64_t n = std::min(max_run, end - l0);
      f(l0, n, runs[k].row0 + (l0 - runs[k].label0));
      l0 += n;
      if (l0 == end) ++k;
    } else {
      const int64_t stop = k < runs.size() ? runs[k].label0 : num_labels;
      const int64_t n = std::min(max_block, stop - l0);
      f(l0, n, int64_t{-1});
      l0 += n;
    }
  }
}

// Checks of _hybrid_memory_label_means: (M, D) memory, a label index over its rows, (B,)
// labels (any value: labels outside [0, L) or without rows give zeros).
inline void check_label_means(const at::Tensor& memory, const at::Tensor& label_ptr,
                              const at::Tensor& label_rows, const at::Tensor& labels) {
  check_memory_and_index(memory, label_ptr, label_rows);
  const auto mt = memory.scalar_type();
  SMCR_CHECK(mt == at::kFloat || mt == at::kBFloat16 || mt == at::kDouble,
              "memory must be float32, bfloat16 or float64, got ", mt);
  check_int64_vector(labels, "labels");
  check_same_device(label_ptr, "label_ptr", memory, "memory");
  check_same_device(label_rows, "label_rows", memory, "memory");
  check_same_device(labels, "labels", memory, "memory");
}

// Checks of _hybrid_memory_refresh_means_: (M, D) memory updated in place, (B,) rows,
// (M,) row labels and a label index over the memory's rows.
inline void check_refresh_means(const at::Tensor& memory, const at::Tensor& rows,
                                const at::Tensor& row_labels, const at::Tensor& label_ptr,
                                const at::Tensor& label_rows) {
  check_memory_and_index(memory, label_ptr, label_rows);
  check_int64_vector(rows, "rows");
  check_int64_vector(row_labels, "row_labels");
  SMCR_CHECK(row_labels.numel() == memory.size(0), "row_labels must have one entry per memory ",
              "row (M = ", memory.size(0), "), got ", row_labels.numel());
  for (const at::Tensor* t : {&rows, &row_labels, &label_ptr, &label_rows})
    check_same_device(*t, "rows, row_labels and the label index", memory, "memory");
}

inline at::ScalarType check_hybrid_memory_update(const at::Tensor& memory, const at::Tensor& rows,
                                                 const at::Tensor& features, double momentum) {
  SMCR_CHECK(memory.dim() == 2, "memory must be 2-D (M, D), got shape ", memory.sizes());
  SMCR_CHECK(memory.is_contiguous(), "memory must be contiguous (it is updated in place)");
  SMCR_CHECK(features.dim() == 2 && features.size(1) == memory.size(1),
              "features must be 2-D (B, D) with the memory's D = ", memory.size(1), ", got shape ",
              features.sizes());
  check_int64_vector(rows, "rows");
  SMCR_CHECK(rows.numel() == features.size(0), "rows must have one entry per feature row (B = ",
              features.size(0), "), got ", rows.numel());
  check_same_device(features, "features", memory, "memory");
  check_same_device(rows, "rows", memory, "memory");
  SMCR_CHECK(momentum >= 0.0 && momentum <= 1.0, "momentum must be in [0, 1], got ", momentum);
  return loss_acc_type(features, memory);
}

inline at::ScalarType check_soft_triplet(const at::Tensor& student,
                                         const c10::optional<at::Tensor>& teacher,
                                         const at::Tensor& labels, double margin) {
  SMCR_CHECK(student.dim() == 2 && student.size(1) >= 1, "student must be 2-D (B, D), got shape ",
              student.sizes());
  SMCR_CHECK(is_float_type(student.scalar_type()), "student must be a floating tensor, got ",
              student.scalar_type());
  if (teacher.has_value()) {
    SMCR_CHECK(teacher->sizes() == student.sizes(), "teacher must have the student's shape ",
                student.sizes(), ", got ", teacher->sizes());
    SMCR_CHECK(is_float_type(teacher->scalar_type()), "teacher must be a floating tensor");
    check_same_device(*teacher, "teacher", student, "student");
  } else {
    SMCR_CHECK(margin >= 0.0 && margin <= 1.0, "margin must be in [0, 1], got ", margin);
  }
  check_int64_vector(labels, "labels");
  SMCR_CHECK(labels.numel() == student.size(0), "labels must have one entry per student row ",
              "(B = ", student.size(0), "), got ", labels.numel());
  check_same_device(labels, "labels", student, "student");
  return acc_type_of(student);
}

inline void check_hybrid_memory_backward(const at::Tensor& grad_loss,
                                         const c10::optional<at::Tensor>& grad_per_sample,
                                         const at::Tensor& grad_cache) {
  SMCR_CHECK(grad_cache.dim() == 2 && grad_cache.is_contiguous() &&
                  (grad_cache.scalar_type() == at::kFloat ||
                   grad_cache.scalar_type() == at::kDouble),
              "grad_cache must be the contiguous (B, D) float32/float64 cache of the forward "
              "(run with compute_grad=True), got ", grad_cache.sizes(), " ",
              grad_cache.scalar_type());
  SMCR_CHECK(grad_loss.numel() == 1, "grad_loss must hold one value, got shape ",
              grad_loss.sizes());
  check_same_device(grad_loss, "grad_loss", grad_cache, "grad_cache");
  if (grad_per_sample.has_value()) {  // None: zero (that output was not used)
    SMCR_CHECK(grad_per_sample->dim() == 1 && grad_per_sample->numel() == grad_cache.size(0),
               "grad_per_sample must be (B,) with B = ", grad_cache.size(0), ", got shape ",
               grad_per_sample->sizes());
    check_same_device(*grad_per_sample, "grad_per_sample", grad_cache, "grad_cache");
  }
}

inline void check_triplet_backward_args(const at::Tensor& grad_loss,
                                        const c10::optional<at::Tensor>& grad_per_anchor,
                                        const at::Tensor& student, const at::Tensor& pos,
                                        const at::Tensor& neg, const at::Tensor& dap,
                                        const at::Tensor& dan, const at::Tensor& coef) {
  SMCR_CHECK(student.dim() == 2, "student must be 2-D (B, D), got shape ", student.sizes());
  const int64_t B = student.size(0);
  check_int64_vector(pos, "pos_index");
  check_int64_vector(neg, "neg_index");
  SMCR_CHECK(coef.scalar_type() == at::kFloat || coef.scalar_type() == at::kDouble,
              "grad_coef must be float32 or float64, got ", coef.scalar_type());
  for (const at::Tensor* t : {&dap, &dan, &coef})
    SMCR_CHECK(t->dim() == 1 && t->numel() == B && t->is_contiguous() &&
                    t->scalar_type() == coef.scalar_type(),
                "dist_ap, dist_an and grad_coef must be the forward's contiguous (B,) outputs, "
                "B = ", B);
  SMCR_CHECK(pos.numel() == B && neg.numel() == B,
              "pos_index and neg_index must be the forward's (B,) outputs, B = ", B);
  SMCR_CHECK(grad_loss.numel() == 1, "grad_loss must hold one value, got shape ",
              grad_loss.sizes());
  if (grad_per_anchor.has_value()) {  // None: zero (that output was not used)
    SMCR_CHECK(grad_per_anchor->dim() == 1 && grad_per_anchor->numel() == B,
               "grad_per_anchor must be (B,) with B = ", B, ", got shape ",
               grad_per_anchor->sizes());
    check_same_device(*grad_per_anchor, "backward inputs", student, "student");
  }
  for (const at::Tensor* t : {&grad_loss, &pos, &neg, &dap, &dan, &coef})
    check_same_device(*t, "backward inputs", student, "student");
}

// _first_invalid(x, y, index, bound, counts): see csrc/kernels/validate.h.
inline void check_first_invalid(const at::Tensor& x, const c10::optional<at::Tensor>& y,
                                const c10::optional<at::Tensor>& index, int64_t bound,
                                const c10::optional<at::Tensor>& counts) {
  SMCR_CHECK(x.dim() == 2 && is_float_type(x.scalar_type()),
             "x must be a 2-D floating tensor, got ", x.dim(), "-D ", x.scalar_type());
  if (y.has_value()) {
    SMCR_CHECK(y->dim() == 2 && is_float_type(y->scalar_type()),
               "y must be a 2-D floating tensor, got ", y->dim(), "-D ", y->scalar_type());
    check_same_device(*y, "y", x, "x");
  }
  SMCR_CHECK(bound >= 0, "bound must be >= 0, got ", bound);
  if (index.has_value()) {
    check_int64_vector(*index, "index");
    check_same_device(*index, "index", x, "x");
  }
  if (counts.has_value()) {
    SMCR_CHECK(index.has_value(), "counts needs an index");
    check_int64_vector(*counts, "counts");
    SMCR_CHECK(counts->numel() == bound, "counts must have bound = ", bound, " entries, got ",
               counts->numel());
    check_same_device(*counts, "counts", x, "x");
  }
}

// The inputs of one _first_invalid call as the kernels take them: x and y (when given)
// contiguous in one element type, float64 when either is float64, else float32 (half types
// widen exactly, so NaN and infinities survive).
struct FirstInvalidArgs {
  at::Tensor x, y;
  bool is_double = false;
};

inline FirstInvalidArgs first_invalid_args(const at::Tensor& x,
                                           const c10::optional<at::Tensor>& y) {
  FirstInvalidArgs a;
  a.is_double = x.scalar_type() == at::kDouble ||
                (y.has_value() && y->scalar_type() == at::kDouble);
  const at::ScalarType t = a.is_double ? at::kDouble : at::kFloat;
  a.x = x.to(t).contiguous();
  if (y.has_value()) a.y = y->to(t).contiguous();
  return a;
}

// Runs first_invalid_<device><T> (Fn: a callable templated on T, given the typed pointers).
template <typename Fn>
void with_first_invalid_args(const FirstInvalidArgs& a, const c10::optional<at::Tensor>& index,
                             const c10::optional<at::Tensor>& counts, Fn&& fn) {
  const int64_t* idx = index.has_value() ? index->data_ptr<int64_t>() : nullptr;
  const int64_t n = index.has_value() ? index->numel() : 0;
  const int64_t* cnt = counts.has_value() ? counts->data_ptr<int64_t>() : nullptr;
  const int64_t yr = a.y.defined() ? a.y.size(0) : 0, yc = a.y.defined() ? a.y.size(1) : 0;
  if (a.is_double) {
    fn(a.x.data_ptr<double>(), a.x.size(0), a.x.size(1),
       a.y.defined() ? a.y.data_ptr<double>() : nullptr, yr, yc, idx, n, cnt);
  } else {
    fn(a.x.data_ptr<float>(), a.x.size(0), a.x.size(1),
       a.y.defined() ? a.y.data_ptr<float>() : nullptr, yr, yc, idx, n, cnt);
  }
}

// An optional incoming gradient as a contiguous tensor of `acc` (undefined when absent).
inline at::Tensor optional_grad(const c10::optional<at::Tensor>& g, at::ScalarType acc) {
  return g.has_value() ? g->to(acc).contiguous() : at::Tensor();
}

}  // namespace smcr_glue
