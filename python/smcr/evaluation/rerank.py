"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) on the project's sparse Jaccard kernel.

    d*(q, g) = (1 - lambda) * d_J(q, g) + lambda * d(q, g)          (Zhong et al., Eq. 14)

d_J is `smcr_ext.kreciprocal_jaccard` over the query and gallery features together, with
neighbour lists of k1 + 1 entries (the point itself and k1 others, as the original code's
full argsort gives) and the local query expansion over k2 neighbours. d is the original
query-gallery distance (`metric`), unscaled.

A query's own image in the gallery (`same_image`: a folder evaluated against itself, or
`evaluate(..., exclude=...)`) is one point of the joint set, not two: the gallery copy is
left out of the graph and its column reads the query point's distances. Otherwise the copy
would sit in its query's k-reciprocal neighbourhood at distance 0 (always reciprocal),
take one of the k1 slots of every point near that image (an image counted twice) and bias
every encoding around it, while the final ranking leaves it out anyway. With query and
gallery disjoint, as on Market-1501 and DukeMTMC-reID, nothing changes (bit for bit).

Difference from the original and torchreid's `re_ranking`, by design: the weights of the
k-reciprocal encodings are SpCL's softmax over -(2 - 2 cos) (unit features, squared
Euclidean distance), not exp(-d^2 / column max), and neighbourhoods are always built in
cosine geometry (the kernel L2-normalises). Results are close to, not equal to, torchreid's.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from .distance import _check_pair, distance_matrix, numpy_to_tensor
from .metrics import check_exclude, check_int

__all__ = ["re_ranking", "jaccard_query_gallery"]


# 1 - cos above which a same_image pair is refused as two different images. Features of one
# file extracted twice differ by float rounding (1 - cos ~ 1e-7 in float16); two frames of
# one person are typically 1e-2 or more apart.
_SAME_IMAGE_TOL = 1e-3


def _check_same_image(q: torch.Tensor, g: torch.Tensor, pairs: torch.Tensor) -> None:
    """Every (query, gallery) pair must carry (nearly) the same feature: merging two
    different images into one point of the graph would be wrong, not just different."""
    qi, gj = pairs[:, 0].to(q.device), pairs[:, 1].to(g.device)
    qn = torch.nn.functional.normalize(q[qi].double(), dim=1)  # (K, D)
    gn = torch.nn.functional.normalize(g[gj].double(), dim=1)
    gap = 1.0 - (qn * gn).sum(dim=1)  # (K,) cosine distance
    bad = gap > _SAME_IMAGE_TOL
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0])
        i, j = pairs[k].tolist()
        raise ValueError(
            "same_image pairs (evaluate's exclude pairs when rerank=True) must be one image "
            f"each, but query {i} and gallery item {j} have features at cosine distance "
            f"{float(gap[k]):.3g} (> {_SAME_IMAGE_TOL}); leave pairs of different images out "
            "of the ranking with evaluate_distmat(re_ranking(...), ..., exclude=pairs)"
        )


def jaccard_query_gallery(
    query_features: Any,
    gallery_features: Any,
    k1: int = 20,
    k2: int = 6,
    knn_backend: str = "exact",
    *,
    same_image: Any = None,
) -> torch.Tensor:
    """(Q, G) float32 k-reciprocal Jaccard distances of every query to every gallery item,
    computed on the joint set; pairs whose encodings share nothing are at 1.

    same_image: (K, 2) (query index, gallery index) pairs that are one image (the query's
    own file in the gallery). Each such gallery item is left out of the joint set, and its
    column holds the Jaccard distances to its query's point (to the first query listed
    with it): the graph holds every image once, as when query and gallery are disjoint.
    A pair whose features are not the same (cosine distance above 1e-3) is refused.
    """
    import smcr_ext

    q, g = _check_pair(query_features, gallery_features, "cosine")
    nq, ng = q.shape[0], g.shape[0]
    k1 = check_int(k1, "k1", 1)
    k2 = check_int(k2, "k2", 1)
    if k2 > k1:
        raise ValueError(f"k2 must be <= k1={k1}, got {k2}")
    pairs = check_exclude(same_image, nq, ng, "same_image")
    if pairs is None or pairs.numel() == 0:
        kept, owner = None, None
        n = nq + ng
    else:
        # owner[j]: the query whose point stands for gallery item j (nq: j is its own point).
        _check_same_image(q, g, pairs)
        owner = torch.full((ng,), nq, dtype=torch.int64)
        owner.scatter_reduce_(0, pairs[:, 1], pairs[:, 0], reduce="amin")
        kept = owner == nq  # (G,) gallery items that are points of the joint set
        n = nq + int(kept.sum())
    if k1 + 1 >= n:
        what = "queries + gallery items" + ("" if kept is None else " not a query's own image")
        raise ValueError(f"k1 must be < N - 1 = {n - 1} (N = {what}), got {k1}")
    gk = g if kept is None else g[kept.to(g.device)]
    x = torch.cat((q, gk), dim=0).float()  # (N, D)
    graph = smcr_ext.kreciprocal_jaccard(
        x, k1=k1, k2=k2, max_dist=1.0, num_neighbors=k1 + 1, knn_backend=knn_backend
    )
    end = int(graph.indptr[nq])
    counts = graph.indptr[1 : nq + 1] - graph.indptr[:nq]
    rows = torch.repeat_interleave(torch.arange(nq, device=graph.device), counts)
    cols = graph.indices[:end]
    dist = graph.distances[:end]
    in_gallery = cols >= nq
    jac = torch.ones(nq, n - nq, dtype=torch.float32, device=graph.device)  # (Q, G kept)
    jac[rows[in_gallery], cols[in_gallery] - nq] = dist[in_gallery]
    if kept is not None:
        in_query = ~in_gallery
        jac_qq = torch.ones(nq, nq, dtype=torch.float32, device=graph.device)  # (Q, Q)
        jac_qq[rows[in_query], cols[in_query]] = dist[in_query]
        full = torch.empty(nq, ng, dtype=torch.float32, device=graph.device)  # (Q, G)
        kept_d = kept.to(graph.device)
        full[:, kept_d] = jac
        full[:, ~kept_d] = jac_qq[:, owner[~kept].to(graph.device)]
        jac = full
    return jac.to(q.device)


def _check_lambda(v: Any) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"lambda_value must be a number in [0, 1], got {type(v).__name__} {v!r}")
    if not 0.0 <= float(v) <= 1.0:  # NaN fails too
        raise ValueError(f"lambda_value must be a number in [0, 1], got {v!r}")
    return float(v)


def re_ranking(
    query_features: Any,
    gallery_features: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: str = "cosine",
    original_dist: Any = None,
    knn_backend: str = "exact",
    *,
    same_image: Any = None,
) -> torch.Tensor:
    """Re-ranked (Q, G) distances (1 - lambda) * Jaccard + lambda * original.

    Args:
        query_features, gallery_features: (Q, D), (G, D) features.
        k1, k2, lambda_value: Zhong et al.'s parameters (defaults 20, 6, 0.3).
        metric: the original distance, "cosine" or "euclidean" (see `distance_matrix`).
        original_dist: a precomputed (Q, G) original distance (tensor or NumPy array;
            +inf allowed, NaN not), instead of `metric`'s.
        knn_backend: the kernel's kNN backend ("exact", "faiss", "ivf").
        same_image: (K, 2) (query index, gallery index) pairs that are one image (a query's
            own file in the gallery); see `jaccard_query_gallery`. Their own entries stay
            in the result: leave them out of the ranking (`evaluate(..., exclude=...)`).

    Cost: one k-reciprocal graph over Q + G points (a (Q+G)^2 D kNN on the exact backend).
    """
    lam = _check_lambda(lambda_value)
    q, g = _check_pair(query_features, gallery_features, metric)
    if original_dist is None:
        original_dist = distance_matrix(q, g, metric)
    else:
        if isinstance(original_dist, np.ndarray):
            original_dist = numpy_to_tensor(original_dist, "original_dist")
        if not isinstance(original_dist, torch.Tensor):
            raise TypeError(
                "original_dist must be a torch.Tensor or numpy array, got "
                f"{type(original_dist).__name__}"
            )
        if tuple(original_dist.shape) != (q.shape[0], g.shape[0]):
            raise ValueError(
                f"original_dist must be ({q.shape[0]}, {g.shape[0]}) (queries, gallery items), "
                f"got shape {tuple(original_dist.shape)}"
            )
        if original_dist.dtype.is_complex or original_dist.dtype == torch.bool:
            raise TypeError(f"original_dist must hold real numbers, got {original_dist.dtype}")
        if bool(torch.isnan(original_dist).any()):
            raise ValueError("original_dist must not contain NaN")
    jac = jaccard_query_gallery(q, g, k1=k1, k2=k2, knn_backend=knn_backend, same_image=same_image)
    orig = original_dist.detach().to(device=jac.device, dtype=torch.float32)
    jac.mul_(1.0 - lam)
    if lam == 0.0:
        return jac  # 0 * inf would be NaN where original_dist is +inf
    return jac.add_(orig, alpha=lam)
