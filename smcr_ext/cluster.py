"""The pseudo-label engine's kernels: exact kNN, sparse k-reciprocal Jaccard distance,
multi-eps DBSCAN over a sparse graph, and O(N) cluster reliability.

Every function accepts CPU tensors, CUDA tensors and DLPack arrays (NumPy, CuPy) and
returns torch tensors on the input's device. Nothing here ever builds an N×N matrix:
memory is O(N·k + block²) for the kNN and O(nnz) after it.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from . import _C  # noqa: F401  (loads the compiled ops into torch.ops.smcr)
from ._validate import as_tensor, check_features, check_int, check_positive_float

__all__ = [
    "KnnResult",
    "JaccardGraph",
    "ClusterReliability",
    "knn",
    "kreciprocal_jaccard",
    "dbscan",
    "cluster_reliability",
]

_ops = torch.ops.smcr


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class KnnResult:
    """k nearest neighbours of every row of `features` (the row itself included).

    indices:   (N, k) int64, sorted by distance ascending, ties by smaller index
    distances: (N, k) float32 squared Euclidean distances 2 - 2<f_i, f_j> of unit rows
    features:  (N, D) float32 unit rows the lists were computed from (kept so that the
               Jaccard step can reach expansion members outside the lists)
    """

    indices: torch.Tensor
    distances: torch.Tensor
    features: torch.Tensor | None = None
    # True when `knn` made this result from features it validated and normalised, so the
    # Jaccard step need not check the same (N, D) matrix again.
    validated: bool = field(default=False, repr=False, compare=False)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.indices, self.distances))


@dataclass(frozen=True)
class JaccardGraph:
    """A sparse symmetric neighbour graph in CSR form.

    indptr:    (N + 1,) int64
    indices:   (nnz,) int64, row i's neighbours, sorted by (distance, index) ascending,
               the point itself first at distance 0
    distances: (nnz,) float32
    Pairs that are not stored are at distance 1 (the Jaccard distance of two points
    whose k-reciprocal encodings share nothing).
    """

    indptr: torch.Tensor
    indices: torch.Tensor
    distances: torch.Tensor
    # True when `kreciprocal_jaccard` made this graph (symmetric, no duplicate pairs, by
    # construction), so `dbscan` need not check that again.
    validated: bool = field(default=False, repr=False, compare=False)

    @property
    def num_nodes(self) -> int:
        return self.indptr.numel() - 1

    @property
    def nnz(self) -> int:
        return self.indices.numel()

    @property
    def device(self) -> torch.device:
        return self.indptr.device

    def to(self, device: str | torch.device) -> JaccardGraph:
        return JaccardGraph(
            self.indptr.to(device),
            self.indices.to(device),
            self.distances.to(device),
            validated=self.validated,
        )

    def row(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.indices[a:b], self.distances[a:b]

    def to_dense(self, fill: float = 1.0) -> torch.Tensor:
        """(N, N) float32 matrix, absent pairs at `fill`. For tests and small N only."""
        n = self.num_nodes
        out = torch.full((n, n), fill, dtype=torch.float32, device=self.device)
        rows = torch.repeat_interleave(
            torch.arange(n, device=self.device), self.indptr[1:] - self.indptr[:-1]
        )
        out[rows, self.indices] = self.distances
        return out

    def to_scipy(self):
        """scipy.sparse.csr_matrix with explicit entries (zeros included)."""
        import scipy.sparse as sp

        n = self.num_nodes
        return sp.csr_matrix(
            (
                self.distances.cpu().numpy(),
                self.indices.cpu().numpy(),
                self.indptr.cpu().numpy(),
            ),
            shape=(n, n),
        )


@dataclass(frozen=True)
class ClusterReliability:
    """Per-point IoU of its cluster at the normal eps with its cluster at the tight
    (shrunk) and the loose (enlarged) eps; noise counts as a singleton cluster.

    iou_tight, iou_loose: (N,) float32 in (0, 1]. SpCL's scores are
    R_comp = 1 - iou_tight and R_indep = 1 - iou_loose.
    """

    iou_tight: torch.Tensor
    iou_loose: torch.Tensor

    @property
    def r_comp(self) -> torch.Tensor:
        return 1.0 - self.iou_tight

    @property
    def r_indep(self) -> torch.Tensor:
        return 1.0 - self.iou_loose


# --------------------------------------------------------------------------- kNN

_KNN_BACKENDS = ("exact", "faiss", "ivf")
_KNN_MAX_K_CUDA = 128  # kKnnMaxKCuda in csrc/kernels/knn.h


def _check_backend(value: Any, name: str) -> None:
    if not isinstance(value, str) or value not in _KNN_BACKENDS:
        raise ValueError(f"{name} must be one of {_KNN_BACKENDS}, got {value!r}")


def knn(
    features: Any,
    k: int,
    *,
    backend: str = "exact",
    block_size: int = 4096,
    nlist: int | None = None,
    nprobe: int | None = None,
    seed: int = 0,
) -> KnnResult:
    """k nearest neighbours of every row of `features` among all rows (itself included).

    Args:
        features: (N, D) floating tensor or DLPack array, finite; rows are L2-normalised
            here if they are not unit vectors already (the kernels assume unit rows).
        k: neighbours per row, 1 <= k < N (and k <= 128 for CUDA features).
        backend: "exact" (blocked matrix products and our selection kernel; CPU or CUDA;
            memory O(N·k + block_size²)), "faiss" (exact, faiss-cpu's IndexFlatIP; CPU
            only; needs the `faiss` extra), or "ivf" (approximate: an inverted file over
            k-means cells searched with batched matrix products, for N beyond ~50k on CPU;
            see `nlist`, `nprobe`).
        block_size: rows and columns per similarity block of the exact backend.
        nlist, nprobe: cells and cells searched per query of the "ivf" backend (defaults:
            nlist = round(4·sqrt(N)), nprobe = max(8, nlist // 16)).
        seed: seed of the "ivf" backend's k-means.

    Returns:
        KnnResult(indices (N, k) int64, distances (N, k) float32 = 2 - 2·cos), each row
        sorted by distance, ties by smaller index, on the device of `features`.
    """
    _check_backend(backend, "backend")
    x = check_features(features)
    n = x.shape[0]
    k = check_int(k, "k", low=1, high=n - 1)
    block_size = check_int(block_size, "block_size", low=1)
    seed = check_int(seed, "seed", low=-(2**63))
    if x.is_cuda and backend == "exact" and k > _KNN_MAX_K_CUDA:
        raise ValueError(f"k must be <= {_KNN_MAX_K_CUDA} for CUDA features, got {k}")
    if backend == "exact":
        idx, dist = _ops.knn(x, k, block_size)
    elif backend == "faiss":
        idx, dist = _knn_faiss(x, k)
    else:
        from ._ivf import knn_ivf

        idx, dist = knn_ivf(x, k, nlist=nlist, nprobe=nprobe, seed=seed)
    return KnnResult(idx, dist, x, validated=True)


def _knn_faiss(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        import faiss
    except ImportError as e:
        raise RuntimeError(
            "backend='faiss' needs faiss-cpu: pip install 'smcr[faiss]' (or faiss-cpu)"
        ) from e
    if x.device.type != "cpu":
        raise ValueError(
            f"backend='faiss' runs on CPU tensors only (faiss-cpu), got features on {x.device}; "
            "use backend='exact' on the GPU"
        )
    xn = x.numpy()
    index = faiss.IndexFlatIP(xn.shape[1])
    index.add(xn)
    sims, idx = index.search(xn, k)
    sims_t = torch.from_numpy(sims)
    idx_t = torch.from_numpy(idx).to(torch.int64)
    # faiss breaks ties arbitrarily: order each row by (similarity desc, index asc).
    order = torch.argsort(idx_t, dim=1, stable=True)
    sims_t, idx_t = sims_t.gather(1, order), idx_t.gather(1, order)
    order = torch.argsort(-sims_t, dim=1, stable=True)
    sims_t, idx_t = sims_t.gather(1, order), idx_t.gather(1, order)
    return idx_t, (2.0 - 2.0 * sims_t).clamp_min_(0.0)


# --------------------------------------------------------------------------- Jaccard


def kreciprocal_jaccard(
    features: Any,
    k1: int = 30,
    k2: int = 6,
    max_dist: float = 1.0,
    *,
    knn_result: KnnResult | tuple[Any, Any] | None = None,
    num_neighbors: int | None = None,
    knn_backend: str = "exact",
) -> JaccardGraph:
    """Sparse k-reciprocal Jaccard distance graph (Zhong et al., CVPR 2017, as SpCL).

    Args:
        features: (N, D) features (L2-normalised here if needed), or the KnnResult of
            `knn(features, k1)`, which carries its features.
        k1: size of the k-reciprocal neighbourhood (SpCL: 30; test-time re-ranking: 20).
        k2: size of the local query expansion, 1 <= k2 <= k1 (SpCL: 6).
        max_dist: keep pairs with Jaccard distance <= max_dist. The default 1.0 keeps every
            pair whose encodings overlap, so the graph is lossless (absent pairs are at 1);
            clustering passes its largest eps to keep the graph small.
        knn_result: precomputed neighbour lists for `features`, as a KnnResult or an
            (indices, distances) pair of (N, K) tensors, K >= num_neighbors (the first
            num_neighbors columns are used); distances must be 2 - 2·cos.
        num_neighbors: width of the kNN lists (the point itself included). Default k1,
            which reproduces SpCL's faiss search (k1 columns, self among them); k1 + 1
            reproduces the original re-ranking code (self plus k1 others).
        knn_backend: backend of the kNN step when `knn_result` is not given.

    Returns:
        JaccardGraph on the features' device; rows sorted by (distance, index), the point
        itself first at distance 0. Exact to float32 rounding against the dense definition.
    """
    trusted = False
    if isinstance(features, KnnResult):
        if knn_result is not None:
            raise ValueError("give the KnnResult either as features or as knn_result, not both")
        if features.features is None:
            raise ValueError("features is a KnnResult without its features; pass the features too")
        trusted = features.validated
        knn_result, features = features, features.features
    x = features if trusted else check_features(features)
    n = x.shape[0]
    k1 = check_int(k1, "k1", low=1, high=n - 1)
    k2 = check_int(k2, "k2", low=1, high=k1)
    width = (
        k1 if num_neighbors is None else check_int(num_neighbors, "num_neighbors", low=k2, high=n)
    )
    if width < k2:
        raise ValueError(f"num_neighbors must be >= k2={k2}, got {width}")
    if (
        isinstance(max_dist, bool)
        or not isinstance(max_dist, numbers.Real)
        or not (0.0 <= float(max_dist) <= 1.0)
    ):
        raise ValueError(f"max_dist must be a number in [0, 1], got {max_dist!r}")
    if knn_result is None:
        _check_backend(knn_backend, "knn_backend")
        if width >= n:
            raise ValueError(f"num_neighbors must be < N={n} to compute the kNN, got {width}")
        idx, dist = knn(x, width, backend=knn_backend)
    else:
        if isinstance(knn_result, KnnResult):
            idx, dist = knn_result.indices, knn_result.distances
        elif isinstance(knn_result, (tuple, list)) and len(knn_result) == 2:
            idx, dist = knn_result
        else:
            raise TypeError(
                "knn_result must be a KnnResult or an (indices, distances) pair, got "
                f"{type(knn_result).__name__}"
                + (f" of length {len(knn_result)}" if isinstance(knn_result, (tuple, list)) else "")
            )
        idx = as_tensor(idx, "knn_result indices")
        dist = as_tensor(dist, "knn_result distances")
        if idx.dtype.is_floating_point or idx.is_complex() or idx.dtype == torch.bool:
            raise TypeError(f"knn_result indices must hold integers, got {idx.dtype}")
        if not dist.dtype.is_floating_point:
            raise TypeError(f"knn_result distances must be floating-point, got {dist.dtype}")
        if idx.dim() != 2 or idx.shape[0] != n or idx.shape[1] < width:
            raise ValueError(
                f"knn_result indices must be (N={n}, K>={width}), got shape {tuple(idx.shape)}"
            )
        if dist.shape != idx.shape:
            raise ValueError(
                f"knn_result distances must have the shape of its indices {tuple(idx.shape)}, "
                f"got {tuple(dist.shape)}"
            )
        if idx.device != x.device or dist.device != x.device:
            raise ValueError(
                f"knn_result must be on the features' device {x.device}, got {idx.device}"
            )
        idx = idx[:, :width].to(torch.int64).contiguous()
        dist = dist[:, :width].to(torch.float32).contiguous()
        if not trusted:
            _check_knn_lists(idx, dist, n)
    indptr, indices, distances = _ops.kreciprocal_jaccard(
        x, idx.contiguous(), dist.contiguous(), k1, k2, float(max_dist)
    )
    return JaccardGraph(indptr, indices, distances, validated=True)


def _check_knn_lists(idx: torch.Tensor, dist: torch.Tensor, n: int) -> None:
    """Caller-given kNN lists: what the Jaccard kernel assumes of them (ids in range, each
    row free of repeats and sorted by a finite distance)."""
    if bool(((idx < 0) | (idx >= n)).any()):
        raise ValueError(f"knn_result indices must lie in [0, {n})")
    if not bool(torch.isfinite(dist).all()):
        rows = torch.nonzero(~torch.isfinite(dist).all(dim=1)).flatten()[:5].tolist()
        raise ValueError(f"knn_result distances must be finite; rows {rows} hold NaN or Inf")
    if bool((dist < -1e-3).any()):
        raise ValueError(
            f"knn_result distances must be squared distances 2 - 2·cos >= 0, got "
            f"{float(dist.min())}"
        )
    if dist.shape[1] > 1:
        unsorted = (dist[:, 1:] < dist[:, :-1]).any(dim=1)
        if bool(unsorted.any()):
            rows = torch.nonzero(unsorted).flatten()[:5].tolist()
            raise ValueError(
                f"knn_result rows must be sorted by distance ascending; rows {rows} are not"
            )
        srt = torch.sort(idx, dim=1).values
        repeated = (srt[:, 1:] == srt[:, :-1]).any(dim=1)
        if bool(repeated.any()):
            rows = torch.nonzero(repeated).flatten()[:5].tolist()
            raise ValueError(f"knn_result rows must not repeat an index; rows {rows} do")


# --------------------------------------------------------------------------- DBSCAN


def _graph_arrays(indptr: Any, indices: Any, distances: Any, validated: bool) -> JaccardGraph:
    ip = as_tensor(indptr, "graph indptr")
    ix = as_tensor(indices, "graph indices")
    ds = as_tensor(distances, "graph distances")
    for t, what in ((ip, "graph indptr"), (ix, "graph indices")):
        if t.dtype.is_floating_point or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{what} must hold integers, got {t.dtype}")
    if ds.is_complex() or ds.dtype == torch.bool:
        raise TypeError(f"graph distances must be real numbers, got {ds.dtype}")
    if not (ip.device == ix.device == ds.device):
        raise ValueError(
            f"graph arrays must be on one device, got {ip.device}, {ix.device}, {ds.device}"
        )
    if ds.dtype.is_floating_point and ds.dtype != torch.float32:
        ds64 = ds.to(torch.float64)
        if bool((torch.isfinite(ds64) & (ds64.abs() > 3.0e38)).any()):
            raise ValueError("graph distances must fit float32 (|d| <= 3e38)")
    return JaccardGraph(
        ip.to(torch.int64).contiguous(),
        ix.to(torch.int64).contiguous(),
        ds.to(torch.float32).contiguous(),
        validated=validated,
    )


def _as_graph(graph: Any) -> JaccardGraph:
    if isinstance(graph, JaccardGraph):
        ok = all(
            isinstance(t, torch.Tensor) and t.is_contiguous()
            for t in (graph.indptr, graph.indices, graph.distances)
        ) and (graph.indptr.dtype, graph.indices.dtype, graph.distances.dtype) == (
            torch.int64,
            torch.int64,
            torch.float32,
        )
        if ok:
            return graph
        return _graph_arrays(graph.indptr, graph.indices, graph.distances, graph.validated)
    if isinstance(graph, tuple) and len(graph) == 3:
        return _graph_arrays(*graph, validated=False)
    try:
        import scipy.sparse as sp

        if sp.issparse(graph):
            csr = sp.csr_matrix(graph)
            if csr.dtype.kind not in "biuf":
                raise TypeError(f"graph must hold real distances, got dtype {csr.dtype}")
            if csr.shape[0] != csr.shape[1]:
                raise ValueError(f"graph must be square, got shape {csr.shape}")
            csr.sort_indices()
            indptr = torch.from_numpy(csr.indptr.astype("int64"))
            indices = torch.from_numpy(csr.indices.astype("int64"))
            distances = torch.from_numpy(csr.data.astype("float32"))
            # Rows must be sorted by distance: sort within rows by (row, distance).
            rows = torch.repeat_interleave(torch.arange(csr.shape[0]), indptr[1:] - indptr[:-1])
            order = torch.argsort(distances, stable=True)
            order = order[torch.argsort(rows[order], stable=True)]
            return JaccardGraph(indptr, indices[order].contiguous(), distances[order].contiguous())
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(
        "graph must be a JaccardGraph, an (indptr, indices, distances) tuple or a "
        f"scipy.sparse matrix, got {type(graph).__name__}"
    )


def _check_graph(g: JaccardGraph, *, check_sorted: bool = True) -> None:
    n = g.num_nodes
    if g.indptr.dim() != 1 or n < 1:
        raise ValueError(
            f"graph indptr must be 1-D with N + 1 >= 2 entries, got {tuple(g.indptr.shape)}"
        )
    if g.indices.shape != g.distances.shape or g.indices.dim() != 1:
        raise ValueError(
            f"graph indices and distances must be 1-D of equal length, got "
            f"{tuple(g.indices.shape)} and {tuple(g.distances.shape)}"
        )
    if (
        int(g.indptr[0]) != 0
        or int(g.indptr[-1]) != g.nnz
        or bool((g.indptr[1:] < g.indptr[:-1]).any())
    ):
        raise ValueError("graph indptr must start at 0, end at nnz and never decrease")
    if g.nnz:
        if bool(((g.indices < 0) | (g.indices >= n)).any()):
            raise ValueError(f"graph indices must lie in [0, {n})")
        if not bool(torch.isfinite(g.distances).all()) or bool((g.distances < 0).any()):
            raise ValueError("graph distances must be finite and >= 0")
        if check_sorted:
            step = g.distances[1:] < g.distances[:-1]
            row_start = torch.zeros(g.nnz, dtype=torch.bool, device=g.device)
            starts = g.indptr[1:-1]
            row_start[starts[starts < g.nnz]] = True
            if bool((step & ~row_start[1:]).any()):
                raise ValueError("graph rows must be sorted by distance ascending")
        if not g.validated:
            _check_symmetric(g)


def _check_symmetric(g: JaccardGraph) -> None:
    """No (i, j) pair stored twice, and (j, i) stored with the same distance for every
    stored (i, j) (i != j): the kernel reads each point's neighbourhood from its own row
    only, so a one-sided or repeated pair would silently differ from scikit-learn."""
    n = g.num_nodes
    rows = torch.repeat_interleave(
        torch.arange(n, device=g.device), g.indptr[1:] - g.indptr[:-1], output_size=g.nnz
    )
    off = rows != g.indices  # the diagonal is implicit; a stored (i, i) is harmless
    r, c, d = rows[off], g.indices[off], g.distances[off]
    key = r * n + c
    key_sorted, order = torch.sort(key)
    if key_sorted.numel() > 1 and bool((key_sorted[1:] == key_sorted[:-1]).any()):
        i = int(key_sorted[1:][key_sorted[1:] == key_sorted[:-1]][0])
        raise ValueError(f"graph stores the pair ({i // n}, {i % n}) more than once")
    tkey_sorted, torder = torch.sort(c * n + r)
    if not bool(torch.equal(key_sorted, tkey_sorted)):
        bad = key_sorted[key_sorted != tkey_sorted][0] if key_sorted.numel() else None
        where = "" if bad is None else f", e.g. ({int(bad) // n}, {int(bad) % n})"
        raise ValueError(
            f"graph must be symmetric: some pairs are stored in one row only{where}"
        )
    # Equal up to rounding (a float32 Gram matrix need not be bitwise symmetric).
    if not bool(torch.allclose(d[order], d[torder], rtol=1e-5, atol=1e-6)):
        raise ValueError("graph must be symmetric: dist(i, j) != dist(j, i) for some pairs")


def dbscan(
    graph: Any,
    eps: float | Sequence[float],
    min_samples: int = 4,
) -> torch.Tensor:
    """DBSCAN over a sparse symmetric neighbour graph, for one or several eps at once.

    Labels equal scikit-learn's ``DBSCAN(eps, min_samples, metric="precomputed")`` on the
    same distances (clusters numbered in the order of their smallest core point, border
    points given to the first such cluster, noise -1), the eps boundary inclusive, each
    point its own neighbour. Pairs absent from the graph are not neighbours.

    Args:
        graph: a JaccardGraph, an (indptr, indices, distances) tuple, or a scipy.sparse
            matrix of distances (explicitly stored entries are the candidate pairs).
        eps: a radius > 0, or a sequence of them (one labelling each, computed together).
        min_samples: minimum neighbourhood size of a core point (itself included), >= 1.

    Returns:
        (N,) int64 labels for a single eps, (len(eps), N) for a sequence; the input is not
        modified.
    """
    g = _as_graph(graph)
    _check_graph(g)
    single = isinstance(eps, numbers.Real) and not isinstance(eps, bool)
    eps_list = [eps] if single else list(eps) if isinstance(eps, Sequence) else None
    if eps_list is None or not eps_list:
        raise TypeError(f"eps must be a number or a non-empty sequence of numbers, got {eps!r}")
    eps_list = [check_positive_float(e, "eps") for e in eps_list]
    min_samples = check_int(min_samples, "min_samples", low=1)
    labels = _ops.dbscan(g.indptr, g.indices, g.distances, eps_list, min_samples)
    return labels[0] if single else labels


# --------------------------------------------------------------------------- reliability


def _check_labels(
    labels: Any, name: str, n: int | None, device: torch.device | None
) -> torch.Tensor:
    t = as_tensor(labels, name)
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold integers, got {t.dtype}")
    if n is not None and t.numel() != n:
        raise ValueError(f"{name} must have N={n} entries like the first labels, got {t.numel()}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} must be on {device}, got {t.device}")
    t = t.to(torch.int64).contiguous()
    if t.numel() and int(t.min()) < -1:
        raise ValueError(f"{name} must be >= -1 (-1 = noise), got {int(t.min())}")
    if t.numel() and int(t.max()) >= t.numel():
        # Arbitrary ids: compact them to [0, N) keeping -1.
        valid = t >= 0
        _, inv = torch.unique(t[valid], return_inverse=True)
        t = t.clone()
        t[valid] = inv
    return t


def cluster_reliability(labels_tight: Any, labels: Any, labels_loose: Any) -> ClusterReliability:
    """Per-point IoU of each point's cluster under `labels` (normal eps) with its cluster
    under `labels_tight` (shrunk eps) and `labels_loose` (enlarged eps), in O(N).

    Args:
        labels_tight, labels, labels_loose: (N,) integer cluster labels, -1 = noise (a
            noise point is a singleton cluster).

    Returns:
        ClusterReliability(iou_tight, iou_loose), each (N,) float32.
    """
    lab = _check_labels(labels, "labels", None, None)
    tight = _check_labels(labels_tight, "labels_tight", lab.numel(), lab.device)
    loose = _check_labels(labels_loose, "labels_loose", lab.numel(), lab.device)
    return ClusterReliability(_ops.cluster_iou(lab, tight), _ops.cluster_iou(lab, loose))


# --------------------------------------------------------------------------- fake kernels


@torch.library.register_fake("smcr::knn")
def _knn_fake(features, k, block_size):
    n = features.shape[0]
    return features.new_empty((n, k), dtype=torch.int64), features.new_empty((n, k))


@torch.library.register_fake("smcr::knn_ivf")
def _knn_ivf_fake(features, cell_ptr, probes, k):
    n = features.shape[0]
    return features.new_empty((n, k), dtype=torch.int64), features.new_empty((n, k))


@torch.library.register_fake("smcr::kreciprocal_jaccard")
def _jaccard_fake(features, knn_indices, knn_distances, k1, k2, max_dist):
    n = features.shape[0]
    nnz = torch.library.get_ctx().new_dynamic_size()
    return (
        knn_indices.new_empty((n + 1,)),
        knn_indices.new_empty((nnz,)),
        features.new_empty((nnz,)),
    )


@torch.library.register_fake("smcr::dbscan")
def _dbscan_fake(indptr, indices, distances, eps, min_samples):
    return indptr.new_empty((len(eps), indptr.shape[0] - 1))


@torch.library.register_fake("smcr::cluster_iou")
def _cluster_iou_fake(labels, other):
    return labels.new_empty(labels.shape, dtype=torch.float32)
