"""smcr_ext: the compiled kernels of smcr as typed, validated Python functions.

The ops live in ``torch.ops.smcr`` (CPU always, CUDA when the extension was built with
it); the functions here check their arguments, accept DLPack arrays (NumPy, CuPy) as
well as tensors, and are what the training library calls.
"""

from __future__ import annotations

import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C
from .cluster import (
    ClusterReliability,
    JaccardGraph,
    KnnResult,
    cluster_reliability,
    dbscan,
    knn,
    kreciprocal_jaccard,
)
from .losses import (  # noqa: F401  (the two backward ops are private but reachable)
    HybridMemoryLoss,
    LabelIndex,
    SoftTripletOutput,
    _hybrid_memory_loss_backward,
    _soft_triplet_backward,
    hybrid_memory_loss,
    hybrid_memory_update_,
    label_index,
    label_means,
    soft_triplet,
)

__all__ = [
    "ClusterReliability",
    "HybridMemoryLoss",
    "JaccardGraph",
    "KnnResult",
    "LabelIndex",
    "SoftTripletOutput",
    "backends",
    "cluster_reliability",
    "dbscan",
    "hybrid_memory_loss",
    "hybrid_memory_update_",
    "knn",
    "kreciprocal_jaccard",
    "label_index",
    "label_means",
    "soft_triplet",
]


def backends() -> dict:
    """What this installation can run, so no optional path is ever taken silently.

    Returns a dict with: ``cpu`` (always True), ``cuda_compiled`` (CUDA kernels built),
    ``cuda_version`` (their CUDA version, or ""), ``cuda_available`` (compiled and a
    device visible), ``openmp`` (CPU kernels use OpenMP), ``openmp_threads``,
    ``faiss`` (faiss version string, or None when faiss is not importable).
    """

    try:
        import faiss  # noqa: F401

        faiss_version = getattr(faiss, "__version__", "unknown")
    except ImportError:
        faiss_version = None
    cuda_compiled = bool(_C.with_cuda())
    return {
        "cpu": True,
        "cuda_compiled": cuda_compiled,
        "cuda_version": _C.cuda_version(),
        "cuda_available": cuda_compiled and torch.cuda.is_available(),
        "openmp": bool(_C.with_openmp()),
        "openmp_threads": int(_C.openmp_threads()),
        "faiss": faiss_version,
    }
