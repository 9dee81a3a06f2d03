// Hybrid-memory joint contrastive loss (SMCR Eq. 4-5 and 9-10; SpCL's HybridMemory) and the
// memory's momentum update, as framework-free kernels.
//
// The memory holds M rows (source-class centroids, then one row per target image), each with
// a label in [0, L). For a batch of B features f_i with target labels y_i:
//
//   s_ic  = mean over rows j with label c of <f_i, m_j> / tau       (c present; absent c masked)
//   Z_i   = sum_c exp(s_ic)
//   p_i   = exp(s_iy) / (Z_i + eps)
//   loss_i = -log(p_i + eps),   loss = mean_i loss_i                  (SpCL: eps = 1e-6)
//
// evaluated as the log-sum-exp-stable   loss_i = -logaddexp(s_iy - logaddexp(log Z_i, log eps),
// log eps), with eps = 0 giving the plain softmax cross-entropy. Since the mean is linear,
// s_ic = <f_i, C_c> / tau with C_c the mean of label c's rows, so the loss needs the B x L
// products with label means, never the B x M row scores.
//
// How the pieces stream (the caller loops over blocks of labels [l0, l0 + n), doing the
// matrix products with its own GEMM, BLAS or cuBLAS, as the torch glue does):
//   1. hybrid_memory_label_index_*   rows grouped by label (CSR), once per labelling
//   2. hybrid_memory_label_means_*   C_blk (n, D) = label means of the block      [reads M once]
//   3. caller: S_blk (B, n) = F C_blk^T
//   4. hybrid_memory_softmax_block_* online log-sum-exp (running max and sum per sample);
//      writes P_blk = exp(s - running max) and rescales E by exp(old max - new max)
//   5. caller: E += P_blk C_blk (= on the first block)         (only when a gradient is wanted)
//   6. hybrid_memory_finalize_*      per-sample loss, mean loss and the gradient cache
//        G_i = d loss_i / d f_i = w_i (sum_c q_ic C_c - C_{y_i}) / tau,
//        q_ic = exp(s_ic) / (Z_i + eps),   w_i = p_i / (p_i + eps)
//   7. hybrid_memory_backward_*      d L / d f_i = (g_loss / B + g_per_sample_i) G_i
// Only one (n, D) block of means and one (B, n) block of scores exist at a time: no B x M or
// B x L buffer. The forward reads the memory once and the backward does not read it at all
// (the gradient is accumulated in the same pass, flash-attention style). The memory gets no
// gradient: it is a buffer, changed only by hybrid_memory_update_* (SpCL treats it the same).
//
// Determinism: every sum has a fixed order that depends only on the inputs and the block
// size (never on the thread count); no atomics are used. CPU and CUDA use different
// reduction trees for the per-sample sums, so they agree to rounding (about 1e-6 relative
// in float32), not bitwise.
//
// Types: T is the memory's element type, Acc the accumulation type. Supported pairs:
// (float, float), (bf16, float), (double, double). Features, scores, means and all outputs
// are Acc (the CUDA glue may keep a bf16 memory's means and probabilities in bf16 for
// tensor-core GEMMs, see hybrid_memory.cu).
#pragma once

#include "common.h"
#include "losses_common.h"

namespace smcr {

// ---------------------------------------------------------------------------------------
// 1. Label index: the rows of every label, in ascending row order (a stable counting sort).
// Args:
//   row_labels  (M) int64 in [0, L)
//   label_ptr   (L + 1) int64 out; rows of label c are label_rows[label_ptr[c] : label_ptr[c+1]]
//               (an empty range = an absent label)
//   label_rows  (M) int64 out
Status hybrid_memory_label_index_cpu(const index_t* row_labels, index_t num_rows,
                                     index_t num_labels, index_t* label_ptr, index_t* label_rows);

// ---------------------------------------------------------------------------------------
// 2. Label means. For k in [0, count): label c = labels ? labels[k] : label0 + k, and
//   means[k, :] = (sum over its rows j, in ascending order, of memory[j, :]) / n_c,
// or zeros when c is absent or outside [0, L).
// Args:
//   memory  (M, D) T, row-major
//   means   (count, D) Acc out
template <typename T, typename Acc>
Status hybrid_memory_label_means_cpu(const T* memory, index_t num_rows, index_t dim,
                                     const index_t* label_ptr, const index_t* label_rows,
                                     index_t num_labels, const index_t* labels, index_t label0,
                                     index_t count, Acc* means);

// ---------------------------------------------------------------------------------------
// 4. One block of the online softmax over labels [label0, label0 + count).
// Args:
//   scores        (B, count) Acc, leading dimension ld: <f_i, C_c> (not yet divided by tau)
//   probs         (B, count) Acc out, leading dimension ld: exp(s_ic - new running max_i),
//                 0 for absent labels. May alias scores.
//   run_max, run_sum (B) Acc in/out: running max of s_ic and sum of exp(s_ic - run_max);
//                 start at -inf and 0.
//   target_logit  (B) Acc out: s_{i, y_i} is written when y_i falls in this block.
//   expected      (B, D) Acc in/out or null: multiplied row-wise by exp(old max - new max)
//                 so that the caller's E += P C keeps E = sum_c exp(s_ic - run_max_i) C_c.
//   first_block   true for the first block of a pass: the running state is not read but
//                 started here (run_max, run_sum as if -inf and 0 came in; target_logit set
//                 to 0 unless y_i falls in this block), and expected is neither read nor
//                 rescaled: the caller writes E = P C instead of adding. This saves the
//                 caller the fills of four buffers (on CUDA, four launches per call).
template <typename Acc>
Status hybrid_memory_softmax_block_cpu(const Acc* scores, Acc* probs, index_t batch,
                                       index_t count, index_t ld, index_t label0,
                                       const index_t* label_ptr, const index_t* targets,
                                       Acc inv_temp, Acc* run_max, Acc* run_sum,
                                       Acc* target_logit, Acc* expected, index_t dim,
                                       bool first_block);

// ---------------------------------------------------------------------------------------
// 6. Per-sample losses, their mean, and (when expected, target_means and grad_cache are all
// given) the gradient cache G (B, D) Acc defined above.
// Args:
//   target_means (B, D) Acc: C_{y_i} (hybrid_memory_label_means_* with labels = targets)
//   per_sample   (B) Acc out;  loss (1) Acc out: sum_i per_sample_i / B, summed in order i.
template <typename Acc>
Status hybrid_memory_finalize_cpu(index_t batch, index_t dim, const Acc* run_max,
                                  const Acc* run_sum, const Acc* target_logit,
                                  const Acc* expected, const Acc* target_means, Acc inv_temp,
                                  Acc eps, Acc* per_sample, Acc* loss, Acc* grad_cache);

// ---------------------------------------------------------------------------------------
// 7. Backward: grad_features[i, :] = (grad_loss[0] / B + grad_per_sample[i]) G[i, :].
// grad_per_sample may be null (zero).
template <typename Acc>
Status hybrid_memory_backward_cpu(index_t batch, index_t dim, const Acc* grad_loss,
                                  const Acc* grad_per_sample, const Acc* grad_cache,
                                  Acc* grad_features);

// ---------------------------------------------------------------------------------------
// Whole forward with a built-in blocked product (for C++ users without a BLAS, and the C++
// tests); the torch glue runs steps 2-6 itself with at::mm. Same outputs as step 6;
// grad_cache may be null.
template <typename T, typename Acc>
Status hybrid_memory_loss_cpu(const Acc* features, index_t batch, const T* memory,
                              index_t num_rows, index_t dim, const index_t* label_ptr,
                              const index_t* label_rows, index_t num_labels,
                              const index_t* targets, Acc temperature, Acc eps,
                              index_t block_labels, Acc* per_sample, Acc* loss, Acc* grad_cache);

// ---------------------------------------------------------------------------------------
// Momentum update, in place, in batch order:
//   for i = 0 .. B-1:  r = rows[i];  v = momentum * memory[r] + (1 - momentum) * features[i];
//                      memory[r] = v / max(||v||, 1e-12)
// A row listed several times receives its updates one after another in batch order (SpCL's
// loop), each written back (and, for a bf16 memory, rounded) before the next. Distinct rows
// are independent and run in parallel; the result does not depend on the thread count, and
// rows not listed are never touched. ||v|| is accumulated in double.
// Args:
//   memory   (M, D) T in/out;  rows (B) int64 in [0, M);  features (B, D) Acc;
//   momentum in [0, 1] (SpCL: 0.2, the new feature gets weight 0.8)
template <typename T, typename Acc>
Status hybrid_memory_update_cpu(T* memory, index_t num_rows, index_t dim, const index_t* rows,
                                const Acc* features, index_t batch, Acc momentum);

// Cluster-mean refresh, in place, after an update (smcr.losses.HybridMemory's layout keeps
// label c's mean on row c). For every distinct label c = row_labels[rows[i]]:
//   memory[c, :] = the mean of label c's rows in (label_ptr, label_rows),
// summed in ascending row order and divided exactly as hybrid_memory_label_means_* does, then
// stored in T (bf16: rounded once), so the rows hold what label_means would return. Labels
// with no row in the index, and labels whose only row is row c itself (a row that is its own
// mean), are left alone. The index is not the loss's: it lists each label's member rows and
// leaves the mean rows out (HybridMemory gives them a spare label).
// Contract: no row written is a member of a label refreshed in the same call. The CPU kernel
// computes every mean before it writes any row; the CUDA kernel reads and writes in
// parallel, so there a broken contract gives meaningless means (never an out-of-bounds
// access).
// Args:
//   memory (M, D) T in/out;  rows (B) int64 in [0, M) (the rows just updated, duplicates
//   allowed);  row_labels (M) int64: labels in [0, min(L, M));  label_ptr (L + 1),
//   label_rows: a label index (hybrid_memory_label_index) whose rows are in [0, M).
// The CPU kernel rejects rows or labels out of range; the CUDA kernel skips them.
template <typename T, typename Acc>
Status hybrid_memory_refresh_means_cpu(T* memory, index_t num_rows, index_t dim,
                                       const index_t* rows, index_t batch,
                                       const index_t* row_labels, const index_t* label_ptr,
                                       const index_t* label_rows, index_t num_labels);

// Zero-copy runs: run_length[c] = the number of labels c, c+1, ... that each have exactly one
// row, those rows being consecutive (row(c+1) = row(c) + 1), i.e. labels whose means are a
// contiguous slice of the memory itself; 0 when label c is not a singleton. (L) int64 out.
// The torch glue feeds such slices to the GEMM directly instead of copying them (the source
// classes always form one; with no clusters, every label is in one): on CPU from this, or
// from the op's `runs` argument, which the CUDA glue needs (host data; smcr_ext.label_index
// computes it once per labelling).
Status hybrid_memory_singleton_runs_cpu(const index_t* label_ptr, const index_t* label_rows,
                                        index_t num_labels, index_t* run_length);

// Checks that every target is a present label: Ok, or an error naming the first bad one.
Status hybrid_memory_check_targets_cpu(const index_t* targets, index_t batch,
                                       const index_t* label_ptr, index_t num_labels);

// ---------------------------------------------------------------------------------------
// CUDA versions (hybrid_memory.cu): same contracts, device pointers, work queued on `stream`.
// Scalars (grad_loss) are device pointers, so nothing synchronises with the host. The CUDA
// kernels do not validate device data (the Python wrapper does, before any kernel runs) but
// never read or write out of bounds on bad labels or rows: they skip them.
// MeansT / ProbT: float for a float memory, float or bf16 for a bf16 memory (bf16 lets the
// glue run the two products on tensor cores with float32 accumulation), double for double.
Status hybrid_memory_label_index_cuda(const index_t* row_labels, index_t num_rows,
                                      index_t num_labels, index_t* label_ptr, index_t* label_rows,
                                      Allocator& scratch, cudaStream_t stream);

template <typename T, typename MeansT>
Status hybrid_memory_label_means_cuda(const T* memory, index_t num_rows, index_t dim,
                                      const index_t* label_ptr, const index_t* label_rows,
                                      index_t num_labels, const index_t* labels, index_t label0,
                                      index_t count, MeansT* means, cudaStream_t stream);

template <typename Acc, typename ProbT>
Status hybrid_memory_softmax_block_cuda(const Acc* scores, ProbT* probs, index_t batch,
                                        index_t count, index_t ld, index_t label0,
                                        const index_t* label_ptr, const index_t* targets,
                                        Acc inv_temp, Acc* run_max, Acc* run_sum,
                                        Acc* target_logit, Acc* expected, index_t dim,
                                        bool first_block, cudaStream_t stream);

template <typename Acc, typename MeansT>
Status hybrid_memory_finalize_cuda(index_t batch, index_t dim, const Acc* run_max,
                                   const Acc* run_sum, const Acc* target_logit,
                                   const Acc* expected, const MeansT* target_means, Acc inv_temp,
                                   Acc eps, Acc* per_sample, Acc* loss, Acc* grad_cache,
                                   cudaStream_t stream);

template <typename Acc>
Status hybrid_memory_backward_cuda(index_t batch, index_t dim, const Acc* grad_loss,
                                   const Acc* grad_per_sample, const Acc* grad_cache,
                                   Acc* grad_features, cudaStream_t stream);

template <typename T, typename Acc>
Status hybrid_memory_update_cuda(T* memory, index_t num_rows, index_t dim, const index_t* rows,
                                 const Acc* features, index_t batch, Acc momentum,
                                 cudaStream_t stream);

template <typename T>
Status hybrid_memory_refresh_means_cuda(T* memory, index_t num_rows, index_t dim,
                                        const index_t* rows, index_t batch,
                                        const index_t* row_labels, const index_t* label_ptr,
                                        const index_t* label_rows, index_t num_labels,
                                        cudaStream_t stream);

}  // namespace smcr
