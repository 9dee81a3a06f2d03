"""smcr: unsupervised domain-adaptive person re-ID that learns from synthetic data.

The SMCR method (synthetic pretraining, DTHR + RIHR hybrid refinement, collaborative
refinement) over fast, exact, sparse pseudo-label kernels (CPU + CUDA). Sub-packages:

    smcr.synth      procedural synthetic person data with automatic labels (GSPR-like)
    smcr.data       readers (Market-1501, DukeMTMC-reID, MSMT17, synthetic, custom),
                    dataset, identity sampler, augmentation
    smcr.cluster    PseudoLabeler: k-reciprocal Jaccard + DBSCAN + reliability criteria
    smcr.reference  dense PyTorch references of the kernels (test oracles)
    smcr.simulate   re-ID-like feature sets for tests and benchmarks
"""

from __future__ import annotations

from smcr_ext import backends

from .cluster import ClusteringCollapsed, PseudoLabeler, PseudoLabels

__version__ = "0.1.0"

__all__ = [
    "ClusteringCollapsed",
    "PseudoLabeler",
    "PseudoLabels",
    "__version__",
    "backends",
]
