"""SMCR's training losses: the hybrid memory's joint contrastive loss (Eq. 4-5, 9-10) and the
collaborative soft triplet loss (Eq. 12-15), on the fused kernels of ``smcr_ext``; the
plain-PyTorch references live in ``smcr.losses.reference``."""

from .hybrid_memory import HybridMemory, RelabelStats, class_centroids
from .soft_triplet import SoftTripletLoss

__all__ = ["HybridMemory", "RelabelStats", "SoftTripletLoss", "class_centroids"]
