"""SMCR's collaborative loss L_col (Eq. 12-15): MMT's batch-hard soft triplet loss between a
branch's student embeddings and the other branch's mean-teacher embeddings."""

from __future__ import annotations

import torch
from torch import nn

import smcr_ext

__all__ = ["SoftTripletLoss"]


class SoftTripletLoss(nn.Module):
    """Batch-hard softmax triplet loss (see :func:`smcr_ext.soft_triplet`).

    ``SoftTripletLoss()`` is the soft version: ``loss(student, labels, teacher)`` pulls the
    student's softmax over (d+, d-) toward the detached teacher's at the student's hardest
    positive and negative. ``SoftTripletLoss(margin=0.0)`` is the hard version
    (softplus(d+ - d-) for margin 0, MMT's source pre-training triplet); it takes no teacher.
    Anchors without a positive or a negative in the batch contribute nothing.
    """

    def __init__(self, margin: float | None = None) -> None:
        super().__init__()
        if margin is not None and not 0.0 <= float(margin) <= 1.0:
            raise ValueError(f"margin must be None (soft version) or in [0, 1], got {margin!r}")
        self.margin = None if margin is None else float(margin)

    def forward(self, student: torch.Tensor, labels: torch.Tensor,
                teacher: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar loss of `student` (B, D) with (pseudo) `labels` (B,); `teacher` (B, D) is
        required by the soft version and refused by the hard one."""
        if self.margin is None and teacher is None:
            raise ValueError("the soft version (margin=None) needs a teacher")
        if self.margin is not None and teacher is not None:
            raise ValueError(
                f"the hard version (margin={self.margin}) takes no teacher; build "
                "SoftTripletLoss() for the soft version"
            )
        return smcr_ext.soft_triplet(student, teacher, labels, margin=self.margin).loss

    def extra_repr(self) -> str:
        return "soft" if self.margin is None else f"hard, margin={self.margin}"
