"""Plain PyTorch references: the slowest obvious algorithms, float64-capable, dense.

They are the specification and the test oracle of the compiled kernels (never used in
training). Every function materialises N×N matrices: keep N small.
"""

from __future__ import annotations

import torch

__all__ = [
    "knn_reference",
    "kreciprocal_jaccard_reference",
    "cluster_iou_reference",
    "pseudo_labels_spcl_reference",
]


def knn_reference(features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact kNN by a full stable sort of every row of the distance matrix.

    Args:
        features: (N, D) unit rows, any float dtype.
        k: neighbours per row (the row itself included).
    Returns:
        indices (N, k) int64 sorted by (distance, index); distances (N, k) = 2 - 2<f_i, f_j>
        in the features' dtype.
    """
    dist = (2.0 - 2.0 * features @ features.T).clamp_min(0.0)  # (N, N)
    order = torch.sort(dist, dim=1, stable=True).indices[:, :k]
    return order, dist.gather(1, order)


def _reciprocal(rank: torch.Tensor, i: int, k: int) -> torch.Tensor:
    """R(i, k): members of the first min(k+1, K) entries of i's list that hold i in theirs."""
    width = min(k + 1, rank.shape[1])
    forward = rank[i, :width]
    backward = rank[forward, :width]
    return forward[(backward == i).any(dim=1)]


def kreciprocal_jaccard_reference(
    features: torch.Tensor, k1: int = 30, k2: int = 6, num_neighbors: int | None = None
) -> torch.Tensor:
    """Dense k-reciprocal Jaccard distance, written from SpCL's description.

    Shapes: features (N, D) unit rows (float64 recommended) -> (N, N) distances.
    With K = num_neighbors (default k1) columns of kNN per row (self included):
    R(i,k) over the first min(k+1, K) entries; expansion by R(c, round(k1/2)) when
    |R(c,k1/2) ∩ R(i,k1)| > 2/3 |R(c,k1/2)|; V[i] = softmax(-(2 - 2<f_i, f_j>)) over the
    expanded set; query expansion V[i] = mean of V over i's first k2 neighbours;
    distance = 1 - sum(min) / sum(max).
    """
    n = features.shape[0]
    width = k1 if num_neighbors is None else num_neighbors
    rank, _ = knn_reference(features, width)
    k1_half = int(round(k1 / 2))  # Python's round is half-to-even, like np.around
    V = torch.zeros(n, n, dtype=features.dtype)
    for i in range(n):
        r1 = _reciprocal(rank, i, k1)
        expansion = [r1]
        for c in r1.tolist():
            rc = _reciprocal(rank, c, k1_half)
            common = torch.isin(rc, r1).sum().item()
            if common > 2.0 / 3.0 * rc.numel():
                expansion.append(rc)
        e = torch.unique(torch.cat(expansion))
        d = 2.0 - 2.0 * features[i] @ features[e].T
        V[i, e] = torch.softmax(-d, dim=0)
    if k2 != 1:
        V = V[rank[:, :k2]].mean(dim=1)  # (N, N)
    mins = torch.minimum(V.unsqueeze(1), V.unsqueeze(0)).sum(-1)
    maxs = torch.maximum(V.unsqueeze(1), V.unsqueeze(0)).sum(-1)
    return (1.0 - mins / maxs).clamp_min(0.0)


def cluster_iou_reference(labels: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Per-point IoU of its cluster under `labels` with its cluster under `other`, from
    the N×N label-equality matrices (SpCL's formulation); -1 is a singleton."""
    n = labels.numel()

    def singletons(lab: torch.Tensor) -> torch.Tensor:
        lab = lab.clone()
        noise = lab < 0
        lab[noise] = lab.max().clamp_min(0) + 1 + torch.arange(int(noise.sum()))
        return lab

    a, b = singletons(labels), singletons(other)
    sa = (a.view(n, 1) == a.view(1, n)).double()
    sb = (b.view(n, 1) == b.view(1, n)).double()
    return torch.minimum(sa, sb).sum(-1) / torch.maximum(sa, sb).sum(-1)


def pseudo_labels_spcl_reference(
    labels_tight: torch.Tensor,
    labels: torch.Tensor,
    labels_loose: torch.Tensor,
    indep_threshold: float | None = None,
) -> tuple[torch.Tensor, float]:
    """SpCL's reliability filter over dense matrices, in its own order of operations.

    Returns (keep mask (N,) bool, independence threshold). Noise points are singleton
    clusters; R_comp = 1 - IoU(normal, tight), R_indep = 1 - IoU(normal, loose); cluster
    scores are minima over members; the threshold is the value at index round(0.9 n) of
    the sorted cluster R_indep over clusters with more than one member; a point keeps its
    cluster iff its cluster's R_indep <= threshold and its R_comp <= its cluster's R_comp.
    """
    n = labels.numel()
    lab = labels.clone()
    noise = lab < 0
    num = int(lab.max().clamp_min(-1)) + 1
    lab[noise] = num + torch.arange(int(noise.sum()))
    r_comp = (1.0 - cluster_iou_reference(labels, labels_tight)).float()
    r_indep = (1.0 - cluster_iou_reference(labels, labels_loose)).float()
    cl_comp: dict[int, float] = {}
    cl_indep: dict[int, float] = {}
    size: dict[int, int] = {}
    for i in range(n):
        c = int(lab[i])
        cl_comp[c] = min(cl_comp.get(c, 2.0), float(r_comp[i]))
        cl_indep[c] = min(cl_indep.get(c, 2.0), float(r_indep[i]))
        size[c] = size.get(c, 0) + 1
    if indep_threshold is None:
        vals = sorted(cl_indep[c] for c in sorted(cl_indep) if size[c] > 1)
        indep_threshold = vals[min(len(vals) - 1, int(round(len(vals) * 0.9)))]
    keep = torch.zeros(n, dtype=torch.bool)
    for i in range(n):
        c = int(lab[i])
        keep[i] = cl_indep[c] <= indep_threshold and float(r_comp[i]) <= cl_comp[c]
    return keep, indep_threshold
