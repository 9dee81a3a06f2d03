"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) on the project's sparse Jaccard kernel.

    d*(q, g) = (1 - lambda) * d_J(q, g) + lambda * d(q, g)          (Zhong et al., Eq. 14)

d_J is `smcr_ext.kreciprocal_jaccard` over the query and gallery features together, with
neighbour lists of k1 + 1 entries (the point itself and k1 others, as the original code's
full argsort gives) and the local query expansion over k2 neighbours. d is the original
query-gallery distance (`metric`), unscaled.

Difference from the original and torchreid's `re_ranking`, by design: the weights of the
k-reciprocal encodings are SpCL's softmax over -(2 - 2 cos) (unit features, squared
Euclidean distance), not exp(-d^2 / column max), and neighbourhoods are always built in
cosine geometry (the kernel L2-normalises). Results are close to, not equal to, torchreid's.
"""

from __future__ import annotations

from typing import Any

import torch

from .distance import _check_pair, distance_matrix

__all__ = ["re_ranking", "jaccard_query_gallery"]


def _check_int(v: Any, name: str, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    if v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    return v


def jaccard_query_gallery(
    query_features: Any,
    gallery_features: Any,
    k1: int = 20,
    k2: int = 6,
    knn_backend: str = "exact",
) -> torch.Tensor:
    """(Q, G) float32 k-reciprocal Jaccard distances of every query to every gallery item,
    computed on the joint set; pairs whose encodings share nothing are at 1."""
    import smcr_ext

    q, g = _check_pair(query_features, gallery_features, "cosine")
    nq, ng = q.shape[0], g.shape[0]
    k1 = _check_int(k1, "k1", 1)
    k2 = _check_int(k2, "k2", 1)
    if k2 > k1:
        raise ValueError(f"k2 must be <= k1={k1}, got {k2}")
    if k1 + 1 >= nq + ng:
        raise ValueError(
            f"k1 must be < N - 1 = {nq + ng - 1} (N = queries + gallery items), got {k1}"
        )
    x = torch.cat((q, g), dim=0).float()  # (N, D)
    graph = smcr_ext.kreciprocal_jaccard(
        x, k1=k1, k2=k2, max_dist=1.0, num_neighbors=k1 + 1, knn_backend=knn_backend
    )
    end = int(graph.indptr[nq])
    counts = graph.indptr[1 : nq + 1] - graph.indptr[:nq]
    rows = torch.repeat_interleave(torch.arange(nq, device=graph.device), counts)
    cols = graph.indices[:end]
    dist = graph.distances[:end]
    in_gallery = cols >= nq
    jac = torch.ones(nq, ng, dtype=torch.float32, device=graph.device)
    jac[rows[in_gallery], cols[in_gallery] - nq] = dist[in_gallery]
    return jac.to(q.device)


def re_ranking(
    query_features: Any,
    gallery_features: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: str = "cosine",
    original_dist: torch.Tensor | None = None,
    knn_backend: str = "exact",
) -> torch.Tensor:
    """Re-ranked (Q, G) distances (1 - lambda) * Jaccard + lambda * original.

    Args:
        query_features, gallery_features: (Q, D), (G, D) features.
        k1, k2, lambda_value: Zhong et al.'s parameters (defaults 20, 6, 0.3).
        metric: the original distance, "cosine" or "euclidean" (see `distance_matrix`).
        original_dist: a precomputed (Q, G) original distance, instead of `metric`'s.
        knn_backend: the kernel's kNN backend ("exact", "faiss", "ivf").

    Cost: one k-reciprocal graph over Q + G points (a (Q+G)^2 D kNN on the exact backend).
    """
    if (
        isinstance(lambda_value, bool)
        or not isinstance(lambda_value, (int, float))
        or not (0.0 <= lambda_value <= 1.0)
    ):
        raise ValueError(f"lambda_value must be a number in [0, 1], got {lambda_value!r}")
    q, g = _check_pair(query_features, gallery_features, metric)
    if original_dist is None:
        original_dist = distance_matrix(q, g, metric)
    elif not isinstance(original_dist, torch.Tensor) or tuple(original_dist.shape) != (
        q.shape[0],
        g.shape[0],
    ):
        raise ValueError(
            f"original_dist must be a ({q.shape[0]}, {g.shape[0]}) tensor, got "
            f"{getattr(original_dist, 'shape', type(original_dist).__name__)}"
        )
    jac = jaccard_query_gallery(q, g, k1=k1, k2=k2, knn_backend=knn_backend)
    orig = original_dist.to(device=jac.device, dtype=torch.float32)
    return jac.mul_(1.0 - lambda_value).add_(orig, alpha=float(lambda_value))
