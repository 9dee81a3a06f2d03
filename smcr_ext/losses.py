"""The training losses' kernels: the hybrid-memory joint contrastive loss (SMCR Eq. 4-5 and
9-10, SpCL's HybridMemory) with its explicit momentum update, and the batch-hard soft
triplet loss (SMCR Eq. 12-15, MMT's SoftTripletLoss).

Every function validates its arguments before any kernel runs (a ValueError or TypeError
naming the argument and showing the bad value; on CUDA all value checks of one call cost a
single host synchronisation) and works on CPU and, when the extension was built with CUDA,
on CUDA tensors.

Precision: a float64 memory goes with float64 features and float64 arithmetic (tests,
gradcheck). Otherwise the memory is float32 or bfloat16 (half the bytes of a 126k x 2048
bank), features may be float16, bfloat16 or float32, and all arithmetic accumulates in
float32 with a log-sum-exp-stable softmax, so half-precision inputs cannot overflow. Losses
are returned in float32 (float64); gradients in the features' dtype. On CUDA with a
bfloat16 memory the two matrix products run on tensor cores in bfloat16 with float32
accumulation.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from . import _C  # noqa: F401  (loads the compiled ops into torch.ops.smcr)
from ._validate import as_tensor

__all__ = [
    "HybridMemoryLoss",
    "LabelIndex",
    "SoftTripletOutput",
    "hybrid_memory_loss",
    "hybrid_memory_update_",
    "label_index",
    "label_means",
    "soft_triplet",
]

_ops = torch.ops.smcr

_MEMORY_DTYPES = (torch.float32, torch.bfloat16, torch.float64)
# Smallest normal and largest finite values of the accumulation dtypes.
_F32_TINY, _F32_MAX = 1.1754943508222875e-38, 3.4028234663852886e38
_F64_TINY, _F64_MAX = 2.2250738585072014e-308, 1.7976931348623157e308
_FEATURE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LabelIndex:
    """The memory rows of every label, grouped (a stable counting sort of `row_labels`).

    Build it once per labelling with :func:`label_index` and pass it as `row_labels` to
    :func:`hybrid_memory_loss` to skip the per-call grouping (``smcr.losses.HybridMemory``
    does this).

    row_labels: (M,) int64, the label of each memory row, in [0, num_labels)
    label_ptr:  (L + 1,) int64; the rows of label c are label_rows[label_ptr[c]:label_ptr[c+1]]
    label_rows: (M,) int64, rows sorted by label, ascending within a label
    counts:     (L,) int64, rows per label (0 = an absent label, masked out of the softmax)
    runs:       (K, 3) int64 on the CPU, or None: (label0, count, row0) of every run of at
                least ZERO_COPY_MIN_RUN consecutive labels that each have one row, those rows
                being consecutive from row0, sorted by label0. The loss multiplies such runs
                straight from the memory instead of copying them into label means; host data,
                so that needs no device read. Most of a memory whose rows are stored in label
                order (as smcr.losses.HybridMemory stores them) is in runs.
    """

    row_labels: torch.Tensor
    label_ptr: torch.Tensor
    label_rows: torch.Tensor
    counts: torch.Tensor
    runs: torch.Tensor | None = None
    # True when `label_index` built it; the kernels index memory rows through label_ptr,
    # label_rows and runs, so any other LabelIndex is rebuilt from its row_labels first.
    validated: bool = field(default=False, repr=False, compare=False)

    @property
    def num_labels(self) -> int:
        return self.label_ptr.numel() - 1

    @property
    def num_rows(self) -> int:
        return self.row_labels.numel()

    @property
    def device(self) -> torch.device:
        return self.row_labels.device


class HybridMemoryLoss(NamedTuple):
    """loss: 0-dim mean of per_sample; per_sample: (B,) -log(p_i + eps). Both differentiable
    with respect to the features, float32 (float64 for float64 inputs)."""

    loss: torch.Tensor
    per_sample: torch.Tensor


class SoftTripletOutput(NamedTuple):
    """loss: 0-dim mean over valid anchors (0 when there is none); per_anchor: (B,), 0 for an
    anchor without a positive or a negative. pos_index / neg_index: (B,) int64 hardest
    positive / negative mined on the student (-1 for invalid anchors); dist_ap / dist_an: (B,)
    the student's distances to them (not differentiable; use `loss` / `per_anchor`)."""

    loss: torch.Tensor
    per_anchor: torch.Tensor
    pos_index: torch.Tensor
    neg_index: torch.Tensor
    dist_ap: torch.Tensor
    dist_an: torch.Tensor


# --------------------------------------------------------------------------- validation


def _check_real(value: Any, name: str, *, low: float, high: float | None = None,
                low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    bad = v != v or v in (float("inf"), float("-inf"))
    bad = bad or (v <= low if low_open else v < low) or (high is not None and v > high)
    if bad:
        lo = f"> {low}" if low_open else f">= {low}"
        rng = f"in [{low}, {high}]" if high is not None else f"a finite number {lo}"
        raise ValueError(f"{name} must be {rng}, got {value!r}")
    return v


def _check_matrix(x: Any, name: str, dtypes: tuple[torch.dtype, ...]) -> torch.Tensor:
    t = as_tensor(x, name)
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    if t.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype {names}; got {t.dtype}")
    if t.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {tuple(t.shape)}")
    return t


def _check_index_vector(x: Any, name: str, length: int | None, device: torch.device,
                        length_name: str = "") -> torch.Tensor:
    t = as_tensor(x, name)
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers, got {t.dtype}")
    if length is not None and t.numel() != length:
        raise ValueError(f"{name} must have {length_name} = {length} entries, got {t.numel()}")
    if t.device != device:
        raise ValueError(f"{name} must be on {device} like the other tensors, got {t.device}")
    if t.dtype != torch.int64:
        t = t.to(torch.int64)
    return t if t.is_contiguous() else t.contiguous()  # (no op dispatched when it is one)


def _check_pair(features: torch.Tensor, memory: torch.Tensor) -> None:
    if features.device != memory.device:
        raise ValueError(
            f"features and memory must be on the same device, got {features.device} and "
            f"{memory.device}"
        )
    if features.shape[1] != memory.shape[1]:
        raise ValueError(
            f"features and memory must have the same feature dimension D, got "
            f"{features.shape[1]} and {memory.shape[1]}"
        )
    if (features.dtype == torch.float64) != (memory.dtype == torch.float64):
        raise ValueError(
            f"features dtype {features.dtype} does not go with memory dtype {memory.dtype}: use "
            "float64 for both, or float16/bfloat16/float32 features with a float32 or bfloat16 "
            "memory"
        )


def _first_bad(mask: torch.Tensor) -> list[int]:
    return torch.nonzero(mask).flatten()[:5].tolist()


def _raise_nonfinite(x: torch.Tensor, name: str) -> None:
    rows = _first_bad(~torch.isfinite(x).all(dim=1))
    if rows:
        raise ValueError(f"{name} must be finite; rows {rows} hold NaN or Inf")


def _raise_bad_values(x: torch.Tensor, x_name: str, bad_row: int, index: torch.Tensor,
                      index_name: str, bad_index: int, range_text: str) -> None:
    """The errors of a _first_invalid result: a non-finite row of x, an index out of range."""
    if bad_row >= 0:
        _raise_nonfinite(x, x_name)
    if bad_index >= 0:
        raise ValueError(f"{index_name} must be {range_text}; {index_name}[{bad_index}] = "
                         f"{int(index[bad_index])}")


def _first_invalid(x: torch.Tensor, y: torch.Tensor | None = None,
                   index: torch.Tensor | None = None, bound: int = 0,
                   counts: torch.Tensor | None = None) -> list[int]:
    """Every value check of a call in one op (csrc/kernels/validate.h) and one read of its
    4-int result (the only host synchronisation on CUDA): the first non-finite row of x and
    of y, the first index outside [0, bound), the first index whose count is 0; -1 = none."""
    return _ops._first_invalid(x, y, index, bound, counts).tolist()


# --------------------------------------------------------------------------- label index


def label_index(row_labels: Any, num_labels: int | None = None) -> LabelIndex:
    """Group the memory rows by label (a stable counting sort), for :func:`hybrid_memory_loss`.

    Args:
        row_labels: (M,) integer labels of the memory rows, >= 0 (CPU or CUDA).
        num_labels: size L of the label space (default: max label + 1); labels in [0, L) that
            no row carries are absent and masked out of the softmax.

    Returns:
        LabelIndex on the device of `row_labels`.
    """
    lab = as_tensor(row_labels, "row_labels")
    lab = _check_index_vector(lab, "row_labels", None, lab.device)
    if lab.numel() == 0:
        raise ValueError("row_labels must hold at least one label, got an empty tensor")
    lo, hi = (int(v) for v in torch.stack([lab.min(), lab.max()]).tolist())
    if lo < 0:
        raise ValueError(f"row_labels must be >= 0, got {lo} at rows {_first_bad(lab < 0)}")
    if num_labels is None:
        num_labels = hi + 1
    elif isinstance(num_labels, bool) or not isinstance(num_labels, numbers.Integral):
        raise TypeError(f"num_labels must be an int, got {type(num_labels).__name__}")
    elif num_labels <= hi:
        raise ValueError(f"num_labels must be > the largest label {hi}, got {num_labels}")
    if num_labels > MAX_LABELS:
        raise ValueError(
            f"num_labels must be <= {MAX_LABELS} (the index holds 8 bytes per label); got "
            f"{num_labels}" + (f" from the largest label {hi}" if hi + 1 == num_labels else "")
            + ": relabel to dense ids, e.g. torch.unique(row_labels, return_inverse=True)"
        )
    ptr, rows = _ops.hybrid_memory_label_index(lab, int(num_labels))
    counts = ptr[1:] - ptr[:-1]
    return LabelIndex(lab, ptr, rows, counts, _singleton_runs(ptr, rows), validated=True)


def _trusted_index(index: LabelIndex, name: str) -> LabelIndex:
    """`index` itself when `label_index` built it, else the index rebuilt from its
    row_labels (a hand-made label_ptr / label_rows / runs could point outside the memory)."""
    if index.validated:
        return index
    try:
        return label_index(index.row_labels, index.num_labels)
    except (ValueError, TypeError) as e:
        raise type(e)(
            f"{name} is a LabelIndex not built by label_index, and its row_labels and "
            f"label_ptr disagree ({e}); build it with smcr_ext.label_index"
        ) from None


# Labels are dense ids: a label space beyond this is a labelling mistake (2**40 as a label),
# not a dataset (the largest re-ID sets have ~10**5 identities).
MAX_LABELS = 2**28


# Runs of single-row labels shorter than this are cheaper to copy into a block of label means
# than to multiply alone (the C++ loss uses the same value, kZeroCopyMinRun, when given no runs).
ZERO_COPY_MIN_RUN = 32


def _singleton_runs(ptr: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(K, 3) int64 CPU tensor of (label0, count, row0): the runs of at least
    ZERO_COPY_MIN_RUN labels c, c+1, ... that each have one row, on rows row0, row0+1, ...
    (the kernel the CPU loss uses when it is given no runs; a CUDA index is copied to the host
    for it, once per labelling)."""
    return _ops._hybrid_memory_singleton_runs(ptr.cpu(), rows.cpu(), ZERO_COPY_MIN_RUN)


# --------------------------------------------------------------------------- hybrid memory


def _default_block(memory: torch.Tensor) -> int:
    """Labels per streamed block. CUDA: ~32 MiB of label means, which stay in an H100's L2
    between the two products. CPU: ~16 MiB of float32 means (2048 labels at D = 2048):
    fewer, larger blocks are fewer fork/join points, which matters on a loaded machine, and
    beyond this size there is no gain."""
    d = memory.shape[1]
    if memory.device.type == "cuda":
        return max(256, min(16384, (32 << 20) // (d * memory.element_size())))
    return max(256, min(8192, (16 << 20) // (d * 4)))


def hybrid_memory_loss(
    features: Any,
    memory: Any,
    row_labels: Any,
    targets: Any,
    temperature: float = 0.05,
    *,
    eps: float = 1e-6,
    block_size: int | None = None,
    validate: bool = True,
) -> HybridMemoryLoss:
    """Joint contrastive loss over a hybrid memory (SMCR Eq. 4-5 / 9-10; SpCL's HybridMemory).

    For every feature f_i, the score of label c is the mean of <f_i, m_j> / temperature over
    the memory rows j carrying c; labels without a row are masked out; then
    p_i = exp(s_{i,y_i}) / (sum_c exp(s_ic) + eps) and per_sample_i = -log(p_i + eps), SpCL's
    exact formula, evaluated in a log-sum-exp-stable way (eps = 0: plain cross-entropy).

    The B x M score matrix and the per-label scatter are never materialised: the memory is
    streamed in blocks of `block_size` labels (label means, one product, an online softmax),
    and the gradient is accumulated in the same pass, so the backward
    (``torch.ops.smcr._hybrid_memory_loss_backward``) does not read the memory again. The
    memory receives no gradient; update it with :func:`hybrid_memory_update_` after the
    backward.

    Args:
        features: (B, D) float16/bfloat16/float32/float64 features, finite, usually
            L2-normalised (the op does not normalise them).
        memory: (M, D) contiguous float32/bfloat16 memory (float64 with float64 features),
            on the features' device.
        row_labels: (M,) integer label of every memory row, or a LabelIndex built from them.
        targets: (B,) integer labels of the features, each carried by at least one row.
        temperature: tau > 0 (SpCL and SMCR: 0.05).
        eps: the eps >= 0 of SpCL's masked softmax and log (1e-6).
        block_size: labels per streamed block (default: ~16 MiB of means on CPU, 2048 labels
            at D = 2048; ~32 MiB on CUDA).
        validate: check the values (finite features; targets in range and carried by a row)
            before any kernel runs, at the cost of one host synchronisation on CUDA. Shapes,
            dtypes and devices are always checked. With False, bad values give a meaningless
            loss but never an out-of-bounds access.

    Returns:
        HybridMemoryLoss(loss, per_sample).
    """
    f = _check_matrix(features, "features", _FEATURE_DTYPES)
    mem = _check_matrix(memory, "memory", _MEMORY_DTYPES)
    _check_pair(f, mem)
    if not mem.is_contiguous():
        raise ValueError("memory must be contiguous (it is streamed in place, never copied)")
    if f.shape[0] < 1:
        raise ValueError(f"features must have at least one row, got shape {tuple(f.shape)}")
    if isinstance(row_labels, LabelIndex):
        index = row_labels
        if index.num_rows != mem.shape[0]:
            raise ValueError(
                f"row_labels (a LabelIndex) covers {index.num_rows} rows but memory has "
                f"M = {mem.shape[0]}"
            )
        if index.device != mem.device:
            raise ValueError(f"row_labels must be on {mem.device}, got {index.device}")
        index = _trusted_index(index, "row_labels")
    else:
        lab = _check_index_vector(row_labels, "row_labels", mem.shape[0], mem.device, "M")
        index = label_index(lab)
    tgt = _check_index_vector(targets, "targets", f.shape[0], f.device, "B")
    temperature = _check_real(temperature, "temperature", low=0.0, low_open=True)
    eps = _check_real(eps, "eps", low=0.0)
    # The kernels accumulate in float32 (float64 for a float64 memory): 1 / temperature and
    # eps must be finite there, or the loss is silently NaN / -inf.
    fmin, fmax = (_F64_TINY, _F64_MAX) if mem.dtype == torch.float64 else (_F32_TINY, _F32_MAX)
    if temperature < fmin:
        raise ValueError(f"temperature must be >= {fmin:.8g} (1 / temperature must be finite "
                         f"in the {_acc(mem.dtype)} accumulation), got {temperature!r}")
    if eps > fmax:
        raise ValueError(f"eps must be <= {fmax:.8g} (finite in the {_acc(mem.dtype)} "
                         f"accumulation), got {eps!r}")
    if block_size is None:
        block_size = _default_block(mem)
    elif (isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral)
          or not 1 <= block_size <= 2**63 - 1):
        raise ValueError(f"block_size must be an int in [1, 2**63 - 1], got {block_size!r}")
    # Value checks: one op, one host synchronisation.
    num_labels = index.num_labels
    if validate:
        bad_row, _, out_of_range, absent = _first_invalid(f, None, tgt, num_labels, index.counts)
        _raise_bad_values(f, "features", bad_row, tgt, "targets", out_of_range,
                          f"labels in [0, {num_labels})")
        if absent >= 0:
            raise ValueError(
                f"targets must be labels carried by at least one memory row; "
                f"targets[{absent}] = {int(tgt[absent])} has no row"
            )
    compute_grad = torch.is_grad_enabled() and f.requires_grad
    if mem.requires_grad:
        mem = mem.detach()
    loss, per_sample, _ = _ops.hybrid_memory_loss(
        f, mem, index.label_ptr, index.label_rows, tgt, temperature, eps, int(block_size),
        compute_grad, index.runs,
    )
    return HybridMemoryLoss(loss, per_sample)


def hybrid_memory_update_(memory: torch.Tensor, rows: Any, features: Any,
                          momentum: float = 0.2, *, validate: bool = True) -> None:
    """Momentum update of memory rows, in place:
    ``memory[r] = normalize(momentum * memory[r] + (1 - momentum) * f)`` for each (r, f).

    Order: the batch is applied in order i = 0 .. B-1, as SpCL's loop does. A row listed
    several times gets its updates one after another (each renormalised and, for a bfloat16
    memory, rounded before the next), so the result is deterministic; distinct rows run in
    parallel. Only `memory`, and in it only the listed rows, change.

    Args:
        memory: (M, D) contiguous float32/bfloat16/float64 tensor, updated in place.
        rows: (B,) integer rows in [0, M).
        features: (B, D) finite features (detached here), on the memory's device.
        momentum: in [0, 1]; SpCL and SMCR use 0.2 (the new feature gets weight 0.8).
        validate: check that features are finite and rows in range first (one host
            synchronisation on CUDA); with False, bad rows are skipped on CUDA.
    """
    if not isinstance(memory, torch.Tensor):
        raise TypeError(f"memory must be a torch.Tensor (updated in place), got {type(memory).__name__}")
    mem = _check_matrix(memory, "memory", _MEMORY_DTYPES)
    if not mem.is_contiguous():
        raise ValueError("memory must be contiguous (it is updated in place)")
    f = _check_matrix(features, "features", _FEATURE_DTYPES)
    _check_pair(f, mem)
    r = _check_index_vector(rows, "rows", f.shape[0], mem.device, "B")
    momentum = _check_real(momentum, "momentum", low=0.0, high=1.0)
    if validate:
        bad_row, _, out_of_range, _ = _first_invalid(f, None, r, mem.shape[0])
        _raise_bad_values(f, "features", bad_row, r, "rows", out_of_range,
                          f"in [0, M = {mem.shape[0]})")
    with torch.no_grad():
        _ops.hybrid_memory_update_(memory, r, f, momentum)


# --------------------------------------------------------------------------- soft triplet


def soft_triplet(
    student: Any,
    teacher: Any | None,
    labels: Any,
    *,
    margin: float | None = None,
    validate: bool = True,
) -> SoftTripletOutput:
    """Batch-hard softmax triplet loss (MMT's SoftTripletLoss; SMCR's L_col, Eq. 12-15).

    Distances d_ij = sqrt(max(||x_i - x_j||^2, 1e-12)) on the student; for every anchor the
    hardest positive (largest distance, same label, not itself) and hardest negative
    (smallest distance, other label) are mined on the student, ties to the smaller index.
    With P_i = softmax([d_ip, d_in]):

    - soft version (`teacher` given): target t_i = softmax of the teacher's distances at the
      same indices (detached), loss_i = -sum_k t_ik log P_ik (the log on the student, MMT's
      form; the paper's Eq. 13-14 typos aside);
    - hard version (`teacher=None`): t_i = [margin, 1 - margin]; margin = 0 (the default)
      gives loss_i = softplus(d_ip - d_in).

    Mining compares the squared distances of the student's Gram matrix; where those could
    overflow (float32 rows of norm above ~6.5e18) it compares exact squared distances summed
    in double instead, so any finite rows are mined correctly; only distances beyond the
    accumulation dtype's range (float32 rows of norm near 1.7e38) come out infinite.

    An anchor without a positive (its identity appears once) or without a negative
    contributes nothing: loss_i = 0, no gradient, and the mean is taken over the valid
    anchors only (0 when none is valid).

    Args:
        student: (B, D) float tensor, finite; receives the gradient.
        teacher: (B, D) float tensor (the other branch's mean teacher), or None.
        labels: (B,) integer (pseudo) labels.
        margin: only for the hard version, in [0, 1] (default 0).
        validate: check that student and teacher are finite first (one host synchronisation
            on CUDA).

    Returns:
        SoftTripletOutput(loss, per_anchor, pos_index, neg_index, dist_ap, dist_an).
    """
    x = _check_matrix(student, "student", _FEATURE_DTYPES)
    if x.shape[0] < 1:
        raise ValueError(f"student must have at least one row, got shape {tuple(x.shape)}")
    t = None
    if teacher is not None:
        if margin is not None:
            raise ValueError(
                f"give a teacher (soft version) or a margin (hard version), not both; got "
                f"margin={margin!r}"
            )
        t = _check_matrix(teacher, "teacher", _FEATURE_DTYPES)
        if t.shape != x.shape:
            raise ValueError(
                f"teacher must have the student's shape {tuple(x.shape)}, got {tuple(t.shape)}"
            )
        if t.device != x.device:
            raise ValueError(f"teacher must be on the student's device {x.device}, got {t.device}")
        t = t.detach()
    m = 0.0 if margin is None else _check_real(margin, "margin", low=0.0, high=1.0)
    lab = _check_index_vector(labels, "labels", x.shape[0], x.device, "B")
    if validate:
        bad_student, bad_teacher, _, _ = _first_invalid(x, t)
        if bad_student >= 0:
            _raise_nonfinite(x, "student")
        if bad_teacher >= 0:
            _raise_nonfinite(t, "teacher")
    loss, per, pos, neg, dap, dan, _ = _ops.soft_triplet(x, t, lab, m)
    return SoftTripletOutput(loss, per, pos, neg, dap, dan)


def label_means(memory: torch.Tensor, index: LabelIndex, labels: Any) -> torch.Tensor:
    """(B, D) means of the memory rows of `labels` (B,) under `index` (zeros for a label
    outside [0, L) or with no row), in the memory's dtype: each summed in ascending row order
    in float32 (float64 for a float64 memory) and rounded once, as the loss computes its label
    means. One kernel, no host synchronisation; `smcr.losses.HybridMemory` fills the rows
    that hold cluster means with it at every relabelling (and after an update, rewrites the
    touched ones in place with the same sums: ``torch.ops.smcr._hybrid_memory_refresh_means_``)."""
    mem = _check_matrix(memory, "memory", _MEMORY_DTYPES)
    if not mem.is_contiguous():
        raise ValueError("memory must be contiguous")
    if not isinstance(index, LabelIndex):
        raise TypeError(f"index must be a LabelIndex, got {type(index).__name__}")
    if index.num_rows != mem.shape[0] or index.device != mem.device:
        raise ValueError(f"index must cover the memory's M = {mem.shape[0]} rows on "
                         f"{mem.device}, got {index.num_rows} rows on {index.device}")
    index = _trusted_index(index, "index")
    lab = as_tensor(labels, "labels")
    if lab.dim() != 1 or lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
        raise TypeError(f"labels must be a 1-D integer tensor, got {lab.dtype} of shape "
                        f"{tuple(lab.shape)}")
    lab = lab.to(device=mem.device, dtype=torch.int64).contiguous()
    return _ops._hybrid_memory_label_means(mem, index.label_ptr, index.label_rows, lab)


# --------------------------------------------------------------------------- backward ops


def _hybrid_memory_loss_backward(grad_loss: torch.Tensor, grad_per_sample: torch.Tensor | None,
                                 grad_cache: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The backward op of :func:`hybrid_memory_loss` (what autograd calls):
    d L / d f_i = (grad_loss / B + grad_per_sample_i) * grad_cache_i, where grad_cache (B, D)
    is d per_sample_i / d f_i, accumulated by the forward pass; returned in `dtype`.
    grad_per_sample None counts as zero (per_sample was not used)."""
    return _ops._hybrid_memory_loss_backward(grad_loss, grad_per_sample, grad_cache, dtype)


def _soft_triplet_backward(grad_loss: torch.Tensor, grad_per_anchor: torch.Tensor | None,
                           student: torch.Tensor, pos_index: torch.Tensor,
                           neg_index: torch.Tensor, dist_ap: torch.Tensor,
                           dist_an: torch.Tensor, grad_coef: torch.Tensor,
                           dtype: torch.dtype) -> torch.Tensor:
    """The backward op of :func:`soft_triplet` (what autograd calls), from the forward's
    mined indices, distances and d loss_i / d d_ip coefficients; returned in `dtype`.
    grad_per_anchor None counts as zero (per_anchor was not used)."""
    return _ops._soft_triplet_backward(grad_loss, grad_per_anchor, student, pos_index,
                                       neg_index, dist_ap, dist_an, grad_coef, dtype)


# --------------------------------------------------------------------------- fake kernels


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.register_fake("smcr::hybrid_memory_label_index")
def _label_index_fake(row_labels, num_labels):
    return row_labels.new_empty((num_labels + 1,)), row_labels.new_empty((row_labels.shape[0],))


@torch.library.register_fake("smcr::_hybrid_memory_singleton_runs")
def _singleton_runs_fake(label_ptr, label_rows, min_run):
    k = torch.library.get_ctx().new_dynamic_size()
    return label_ptr.new_empty((k, 3))


@torch.library.register_fake("smcr::hybrid_memory_loss")
def _hm_loss_fake(features, memory, label_ptr, label_rows, targets, temperature, eps,
                  block_size, compute_grad, runs=None):
    acc = _acc(memory.dtype)
    b, d = features.shape
    return (
        features.new_empty((), dtype=acc),
        features.new_empty((b,), dtype=acc),
        features.new_empty((b if compute_grad else 0, d), dtype=acc),
    )


@torch.library.register_fake("smcr::_hybrid_memory_loss_backward")
def _hm_backward_fake(grad_loss, grad_per_sample, grad_cache, dtype):
    return grad_cache.new_empty(grad_cache.shape, dtype=dtype)


@torch.library.register_fake("smcr::_hybrid_memory_label_means")
def _label_means_fake(memory, label_ptr, label_rows, labels):
    return memory.new_empty((labels.shape[0], memory.shape[1]))


@torch.library.register_fake("smcr::hybrid_memory_update_")
def _hm_update_fake(memory, rows, features, momentum):
    return None


@torch.library.register_fake("smcr::_hybrid_memory_refresh_means_")
def _hm_refresh_means_fake(memory, rows, row_labels, label_ptr, label_rows):
    return None


@torch.library.register_fake("smcr::_first_invalid")
def _first_invalid_fake(x, y, index, bound, counts):
    return x.new_empty((4,), dtype=torch.int64)


@torch.library.register_fake("smcr::soft_triplet")
def _triplet_fake(student, teacher, labels, margin):
    acc = _acc(student.dtype)
    b = student.shape[0]
    vec = student.new_empty((b,), dtype=acc)
    idx = labels.new_empty((b,))
    return (student.new_empty((), dtype=acc), vec, idx, idx.clone(), vec.clone(), vec.clone(),
            vec.clone())


@torch.library.register_fake("smcr::_soft_triplet_backward")
def _triplet_backward_fake(grad_loss, grad_per_anchor, student, pos_index, neg_index, dist_ap,
                           dist_an, grad_coef, dtype):
    return student.new_empty(student.shape, dtype=dtype)


# --------------------------------------------------------------------------- autograd
# hybrid_memory_loss and soft_triplet have their autograd in C++ (csrc/torch/autograd.cpp,
# a kernel at the Autograd key for every backend): each backward is one call of
# _hybrid_memory_loss_backward / _soft_triplet_backward on what the forward kept, with no
# Python in the step.
