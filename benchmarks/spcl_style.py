"""The SpCL-style pseudo-label step, re-written from its description for side-by-side
measurement (benchmarks only; see /work/shared/REFERENCE.md §1.3–1.4).

What every public implementation does each epoch: exact kNN (faiss), per-row Python
loops building a dense N×N V, dense query expansion, an inverted index over the dense
columns, a dense N×N Jaccard matrix, scikit-learn DBSCAN on it three times, and N×N
label-equality matrices for the reliability IoUs. Float32 throughout, like SpCL.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import DBSCAN


def _knn(features: torch.Tensor, k: int) -> np.ndarray:
    try:
        import faiss  # SpCL's search_option=3: CPU IndexFlatL2

        x = features.numpy()
        index = faiss.IndexFlatL2(x.shape[1])
        index.add(x)
        _, idx = index.search(x, k)
        return idx
    except ImportError:
        sims = features @ features.T
        return torch.topk(sims, k, dim=1).indices.numpy()


def _k_reciprocal_neigh(initial_rank: np.ndarray, i: int, k1: int) -> np.ndarray:
    forward = initial_rank[i, : k1 + 1]
    backward = initial_rank[forward, : k1 + 1]
    fi = np.where(backward == i)[0]
    return forward[fi]


def jaccard_dense(
    features: torch.Tensor, k1: int = 30, k2: int = 6, seconds: dict | None = None
) -> np.ndarray:
    n = features.shape[0]
    t0 = time.perf_counter()
    initial_rank = _knn(features, k1)
    if seconds is not None:
        seconds["knn"] = time.perf_counter() - t0
    V = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        k_reciprocal_index = _k_reciprocal_neigh(initial_rank, i, k1)
        expansion = k_reciprocal_index
        for candidate in k_reciprocal_index:
            cand = _k_reciprocal_neigh(initial_rank, candidate, int(np.around(k1 / 2)))
            if len(np.intersect1d(cand, k_reciprocal_index)) > 2 / 3 * len(cand):
                expansion = np.append(expansion, cand)
        expansion = np.unique(expansion)
        dist = 2 - 2 * torch.mm(features[i].unsqueeze(0), features[expansion].t())
        V[i, expansion] = F.softmax(-dist, dim=1).view(-1).numpy()
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(n):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
        del V_qe
    inv_index = [np.where(V[:, i] != 0)[0] for i in range(n)]
    jaccard = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        temp_min = np.zeros((1, n), dtype=np.float32)
        nz = np.where(V[i, :] != 0)[0]
        images = [inv_index[c] for c in nz]
        for j in range(len(nz)):
            temp_min[0, images[j]] += np.minimum(V[i, nz[j]], V[images[j], nz[j]])
        jaccard[i] = 1 - temp_min / (2 - temp_min)
    del inv_index, V
    jaccard[jaccard < 0] = 0.0
    return jaccard


def pseudo_labels(
    features: torch.Tensor,
    k1: int = 30,
    k2: int = 6,
    eps: float = 0.6,
    eps_gap: float = 0.02,
    min_samples: int = 4,
) -> tuple[np.ndarray, dict[str, float]]:
    """Returns (labels with un-clustered instances as their own ids, seconds per stage)."""
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    dist = jaccard_dense(features, k1, k2, seconds)
    seconds["jaccard"] = time.perf_counter() - t0 - seconds["knn"]
    t0 = time.perf_counter()
    labs = []
    for e in (eps - eps_gap, eps, eps + eps_gap):
        labs.append(
            DBSCAN(eps=e, min_samples=min_samples, metric="precomputed", n_jobs=-1).fit_predict(
                dist
            )
        )
    seconds["dbscan"] = time.perf_counter() - t0
    del dist
    t0 = time.perf_counter()

    def singletons(lab: np.ndarray) -> torch.Tensor:
        lab = lab.copy()
        num = lab.max() + 1
        noise = lab < 0
        lab[noise] = num + np.arange(noise.sum())
        return torch.from_numpy(lab)

    tight, normal, loose = (singletons(lab) for lab in labs)
    n = normal.numel()
    sim = normal.expand(n, n).eq(normal.expand(n, n).t()).float()
    sim_tight = tight.expand(n, n).eq(tight.expand(n, n).t()).float()
    sim_loose = loose.expand(n, n).eq(loose.expand(n, n).t()).float()
    r_comp = 1 - torch.min(sim, sim_tight).sum(-1) / torch.max(sim, sim_tight).sum(-1)
    r_indep = 1 - torch.min(sim, sim_loose).sum(-1) / torch.max(sim, sim_loose).sum(-1)
    del sim, sim_tight, sim_loose
    comp: dict[int, list[float]] = {}
    indep: dict[int, list[float]] = {}
    for c, rc, ri in zip(normal.tolist(), r_comp.tolist(), r_indep.tolist(), strict=True):
        comp.setdefault(c, []).append(rc)
        indep.setdefault(c, []).append(ri)
    keys = sorted(comp)
    comp_c = {c: min(comp[c]) for c in keys}
    indep_c = {c: min(indep[c]) for c in keys}
    noins = sorted(indep_c[c] for c in keys if len(comp[c]) > 1)
    thr = noins[min(len(noins) - 1, int(np.round(len(noins) * 0.9)))]
    out = normal.numpy().copy()
    nxt = out.max() + 1
    for i, c in enumerate(normal.tolist()):
        if not (indep_c[c] <= thr and r_comp[i].item() <= comp_c[c]):
            out[i] = nxt
            nxt += 1
    seconds["reliability"] = time.perf_counter() - t0
    return out, seconds
