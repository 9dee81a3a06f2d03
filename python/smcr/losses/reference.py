"""Plain-PyTorch references of the training losses: the specification and the test oracle of
the fused kernels in ``smcr_ext.losses``, and the "plain formulation" they are benchmarked
against. Written from the paper (SMCR Eq. 4-5, 9-10, 12-15) and the descriptions of SpCL's
HybridMemory and MMT's SoftTripletLoss; slow on purpose (a B x M score matrix, a scatter into
a (#labels x B) matrix, an un-stabilised ``exp``, a Python loop for the update), and exact in
float64.
"""

from __future__ import annotations

import torch

__all__ = [
    "euclidean_dist",
    "hybrid_memory_loss_reference",
    "hybrid_memory_update_reference",
    "soft_triplet_reference",
]


def hybrid_memory_loss_reference(
    features: torch.Tensor,
    memory: torch.Tensor,
    row_labels: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 0.05,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SpCL's hybrid-memory loss, as SpCL computes it.

    Args:
        features: (B, D) float features f_i (differentiable).
        memory: (M, D) memory rows m_j, same dtype (treated as a constant).
        row_labels: (M,) int64 label of each row, >= 0.
        targets: (B,) int64 label of each feature (carried by at least one row).
        temperature: tau (0.05). eps: the masked softmax's and the log's epsilon (1e-6).

    Returns:
        (loss, per_sample): per_sample_i = -log(p_i + eps) with
        p_i = exp(s_{i,y_i}) / (sum_{c present} exp(s_ic) + eps), s_ic the mean of
        <f_i, m_j> / tau over the rows j of label c; loss = mean_i per_sample_i.
    """
    b = features.shape[0]
    logits = features @ memory.t() / temperature  # (B, M)
    num_labels = int(row_labels.max()) + 1
    sim = features.new_zeros(num_labels, b).index_add_(0, row_labels, logits.t().contiguous())
    nums = features.new_zeros(num_labels, 1).index_add_(
        0, row_labels, features.new_ones(memory.shape[0], 1)
    )
    mask = (nums > 0).to(features.dtype)  # (L, 1)
    sim = sim / (mask * nums + (1 - mask))  # (L, B) mean logit per label
    exps = torch.exp(sim.t()) * mask.t()  # (B, L)
    p = exps / (exps.sum(dim=1, keepdim=True) + eps)
    per_sample = -torch.log(p[torch.arange(b, device=features.device), targets] + eps)
    return per_sample.mean(), per_sample


@torch.no_grad()
def hybrid_memory_update_reference(
    memory: torch.Tensor, rows: torch.Tensor, features: torch.Tensor, momentum: float = 0.2
) -> None:
    """SpCL's sequential momentum update, in place: for each (r, f) of the batch in order,
    memory[r] = momentum * memory[r] + (1 - momentum) * f, then memory[r] /= ||memory[r]||."""
    for x, r in zip(features.to(memory.dtype), rows.tolist(), strict=True):
        memory[r] = momentum * memory[r] + (1.0 - momentum) * x
        memory[r] /= memory[r].norm()


def euclidean_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, M) Euclidean distances, MMT's way: sqrt(clamp(|x|^2 + |y|^2 - 2 x.y, 1e-12))."""
    xx = x.pow(2).sum(dim=1, keepdim=True)
    yy = y.pow(2).sum(dim=1, keepdim=True).t()
    return (xx + yy - 2.0 * x @ y.t()).clamp(min=1e-12).sqrt()


def soft_triplet_reference(
    student: torch.Tensor,
    teacher: torch.Tensor | None,
    labels: torch.Tensor,
    margin: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MMT's batch-hard soft triplet loss (SMCR's L_col).

    Mining on the student's distances: hardest positive = the farthest other sample with
    the anchor's label, hardest negative = the nearest sample with another label (first
    index on ties). P_i = softmax([d_ip, d_in]); target = softmax of the teacher's
    distances at the same indices (detached) or [margin, 1 - margin] without a teacher;
    loss_i = -sum_k target_ik log P_ik. Anchors without a positive other than themselves or
    without a negative contribute nothing and are left out of the mean (MMT would let such
    an anchor pick itself as positive).

    Returns:
        (loss, per_anchor, pos_index, neg_index); indices are -1 for invalid anchors.
    """
    b = student.shape[0]
    dist = euclidean_dist(student, student)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(b, dtype=torch.bool, device=student.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    inf = torch.finfo(dist.dtype).max
    pos = torch.where(pos_mask, dist, torch.full_like(dist, -inf)).argmax(dim=1)
    neg = torch.where(neg_mask, dist, torch.full_like(dist, inf)).argmin(dim=1)
    rows = torch.arange(b, device=student.device)
    log_p = torch.log_softmax(torch.stack([dist[rows, pos], dist[rows, neg]], dim=1), dim=1)
    if teacher is None:
        m = 0.0 if margin is None else margin
        target = log_p.new_tensor([m, 1.0 - m]).expand(b, 2)
    else:
        with torch.no_grad():
            td = euclidean_dist(teacher, teacher)
            target = torch.softmax(torch.stack([td[rows, pos], td[rows, neg]], dim=1), dim=1)
    per_anchor = -(target * log_p).sum(dim=1) * valid.to(log_p.dtype)
    loss = per_anchor.sum() / valid.sum().clamp(min=1)
    minus = torch.full_like(pos, -1)
    return loss, per_anchor, torch.where(valid, pos, minus), torch.where(valid, neg, minus)
