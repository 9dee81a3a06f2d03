"""Pseudo labels for the target domain (paper §IV-C "Pseudo-label Generator", Eq. 6–7).

features → sparse k-reciprocal Jaccard graph → DBSCAN at (eps − gap, eps, eps + gap)
→ per-point reliability (IoU with the tight and the loose clustering) → labels in which
noise and unreliable points become classes of their own (un-clustered instances).

Everything is sparse: memory is O(N·k1) after the features, never N×N.
"""

from __future__ import annotations

import logging
import numbers
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

import smcr_ext
from smcr_ext._validate import as_tensor, check_int

__all__ = ["ClusteringCollapsed", "PseudoLabeler", "PseudoLabels"]

log = logging.getLogger("smcr.cluster")

Criterion = Literal["spcl", "paper", "none"]
CollapsePolicy = Literal["raise", "keep_previous"]
KNN_BACKENDS = ("exact", "faiss", "ivf")


class ClusteringCollapsed(RuntimeError):
    """Clustering produced no usable structure: zero clusters, or one cluster holding more
    than `max_cluster_fraction` of the points. Carries the offending PseudoLabels."""

    def __init__(self, message: str, result: PseudoLabels | None = None):
        super().__init__(message)
        self.result = result


@dataclass
class PseudoLabels:
    """Result of one clustering round.

    labels: (N,) int64 — clusters are 0 .. num_clusters-1 (in the order of DBSCAN's
        clusters), then every un-clustered instance (noise or unreliable) has its own id
        num_clusters .. num_clusters + num_outliers - 1, in point order.
    dbscan_labels: (3, N) int64 raw DBSCAN labels at (eps - gap, eps, eps + gap), or (1, N)
        for criterion "none".
    """

    labels: torch.Tensor
    num_clusters: int
    num_outliers: int
    largest_cluster: int
    indep_threshold: float | None
    comp_threshold: float | None
    dbscan_labels: torch.Tensor
    seconds: dict[str, float] = field(default_factory=dict)
    kept_previous: bool = False

    @property
    def num_classes(self) -> int:
        return self.num_clusters + self.num_outliers


def _compact(labels: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, int, int, int]:
    """Final labels: kept points with >= 2 kept members per cluster keep their cluster
    (renumbered 0.. in DBSCAN order); everything else becomes its own class."""
    n = labels.numel()
    lab = torch.where(keep & (labels >= 0), labels, torch.full_like(labels, -1))
    if bool((lab >= 0).any()):
        counts = torch.bincount(lab[lab >= 0], minlength=int(lab.max()) + 1)
        lab = torch.where(
            (lab >= 0) & (counts[lab.clamp_min(0)] >= 2), lab, torch.full_like(lab, -1)
        )
    clustered = lab >= 0
    if bool(clustered.any()):
        uniq, inv = torch.unique(lab[clustered], return_inverse=True)
        num_clusters = uniq.numel()
        largest = int(torch.bincount(inv).max())
    else:
        num_clusters, largest, inv = 0, 0, None
    out = torch.empty(n, dtype=torch.int64, device=labels.device)
    if inv is not None:
        out[clustered] = inv
    num_outliers = int((~clustered).sum())
    out[~clustered] = num_clusters + torch.arange(num_outliers, device=labels.device)
    return out, num_clusters, num_outliers, largest


def _singleton_ids(labels: torch.Tensor) -> torch.Tensor:
    """Cluster ids where each noise point is a cluster of its own (after the real ones)."""
    ids = labels.clone()
    noise = ids < 0
    base = int(ids.max().clamp_min(-1)) + 1
    ids[noise] = base + torch.arange(int(noise.sum()), device=ids.device)
    return ids


def _segment_min(values: torch.Tensor, ids: torch.Tensor, num: int) -> torch.Tensor:
    out = torch.full((num,), float("inf"), dtype=values.dtype, device=values.device)
    return out.scatter_reduce(0, ids, values, reduce="amin", include_self=True)


def _segment_max(values: torch.Tensor, ids: torch.Tensor, num: int) -> torch.Tensor:
    out = torch.full((num,), -float("inf"), dtype=values.dtype, device=values.device)
    return out.scatter_reduce(0, ids, values, reduce="amax", include_self=True)


def _percentile_value(sorted_vals: torch.Tensor, fraction: float) -> float:
    """SpCL's threshold pick: sorted_vals[min(n - 1, round(fraction * n))]."""
    n = sorted_vals.numel()
    return float(sorted_vals[min(n - 1, int(round(n * fraction)))])


class PseudoLabeler:
    """Stateful pseudo-label generator, one call per epoch (SpCL / SMCR semantics).

    Args:
        eps: DBSCAN radius on the Jaccard distance (SpCL: 0.6).
        eps_gap: the tight and loose clusterings use eps ∓ eps_gap (SpCL: 0.02).
        min_samples: DBSCAN core size, the point itself included (SpCL: 4).
        k1, k2: k-reciprocal neighbourhood and query expansion sizes (SpCL: 30, 6).
        criterion: "spcl" (default; SpCL's code, which the paper's Eq. 6–7 restate with the
            roles of the shrunk and enlarged clusterings swapped): R_comp = 1 - IoU(eps,
            eps-gap), R_indep = 1 - IoU(eps, eps+gap), cluster scores are member minima;
            the independence threshold is fixed at the first call as the value at index
            round(0.9 n) of the sorted cluster R_indep over multi-member clusters; a point
            keeps its cluster iff its cluster's R_indep <= threshold and its R_comp <= its
            cluster's R_comp. "paper": Eq. 6–7 read literally: c1 = IoU_s + IoU_e - η1,
            c2 = IoU_s - IoU_e - η2 with η1 = a + b, η2 = a - b, a = the top-90% cluster
            IoU_s of the first call (fixed), b = the maximum IoU_e within the point's
            cluster (every call); keep iff c1 > 0 and c2 > 0. "none": DBSCAN at eps only
            (the paper's "w/o criteria" ablation).
        percentile: the 0.9 above.
        knn_backend: "exact" (default), "faiss" or "ivf" (approximate, for very large N).
        collapse_policy: what to do when clustering collapses (zero clusters, or one
            cluster above `max_cluster_fraction` of the points): "raise" a
            ClusteringCollapsed, or "keep_previous" labels (with a warning) when a previous
            call produced labels for the same number of points.
        max_cluster_fraction: the giant-cluster limit of the collapse check.
    """

    def __init__(
        self,
        eps: float = 0.6,
        eps_gap: float = 0.02,
        min_samples: int = 4,
        k1: int = 30,
        k2: int = 6,
        criterion: Criterion = "spcl",
        percentile: float = 0.9,
        knn_backend: str = "exact",
        collapse_policy: CollapsePolicy = "raise",
        max_cluster_fraction: float = 0.5,
    ) -> None:
        for name, value in (
            ("eps", eps),
            ("eps_gap", eps_gap),
            ("percentile", percentile),
            ("max_cluster_fraction", max_cluster_fraction),
        ):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
        if criterion not in ("spcl", "paper", "none"):
            raise ValueError(f"criterion must be 'spcl', 'paper' or 'none', got {criterion!r}")
        if collapse_policy not in ("raise", "keep_previous"):
            raise ValueError(
                f"collapse_policy must be 'raise' or 'keep_previous', got {collapse_policy!r}"
            )
        if not (0.0 < float(eps) < 1.0):
            raise ValueError(f"eps must be in (0, 1) (a Jaccard distance), got {eps}")
        if not (0.0 <= float(eps_gap) < float(eps)):
            raise ValueError(f"eps_gap must be in [0, eps={eps}), got {eps_gap}")
        if criterion != "none" and float(eps_gap) == 0.0:
            raise ValueError("eps_gap must be > 0 for the reliability criteria")
        if float(eps) + float(eps_gap) > 1.0:
            raise ValueError(f"eps + eps_gap must be <= 1, got {eps} + {eps_gap}")
        if not (0.0 < float(percentile) <= 1.0):
            raise ValueError(f"percentile must be in (0, 1], got {percentile}")
        if not (0.0 < float(max_cluster_fraction) <= 1.0):
            raise ValueError(f"max_cluster_fraction must be in (0, 1], got {max_cluster_fraction}")
        # Integers are checked here, not at the first call (an epoch later in training):
        # 2.5 or "4" would otherwise be truncated or parsed silently.
        min_samples = check_int(min_samples, "min_samples", low=1)
        k1 = check_int(k1, "k1", low=1)
        k2 = check_int(k2, "k2", low=1, high=k1)
        if knn_backend not in KNN_BACKENDS:
            raise ValueError(f"knn_backend must be one of {KNN_BACKENDS}, got {knn_backend!r}")
        self.eps = float(eps)
        self.eps_gap = float(eps_gap)
        self.min_samples = min_samples
        self.k1 = k1
        self.k2 = k2
        self.criterion: Criterion = criterion
        self.percentile = float(percentile)
        self.knn_backend = knn_backend
        self.collapse_policy: CollapsePolicy = collapse_policy
        self.max_cluster_fraction = float(max_cluster_fraction)
        self.indep_threshold: float | None = None  # spcl: fixed at the first call
        self.comp_threshold: float | None = None  # paper: "a", fixed at the first call
        self.previous: torch.Tensor | None = None

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the thresholds fixed at the first call and the previous labels."""
        self.indep_threshold = None
        self.comp_threshold = None
        self.previous = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "indep_threshold": self.indep_threshold,
            "comp_threshold": self.comp_threshold,
            "previous": None if self.previous is None else self.previous.cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.indep_threshold = state.get("indep_threshold")
        self.comp_threshold = state.get("comp_threshold")
        prev = state.get("previous")
        self.previous = None if prev is None else torch.as_tensor(prev, dtype=torch.int64)

    # ------------------------------------------------------------------ main
    def __call__(self, features: Any) -> PseudoLabels:
        """Cluster (N, D) features (any device the kernels support) into pseudo labels."""
        seconds: dict[str, float] = {}
        x = as_tensor(features, "features")
        if x.dim() == 2 and x.shape[0] < 2:
            raise ValueError(
                f"features must hold at least 2 rows (points) to cluster, got shape "
                f"{tuple(x.shape)}"
            )
        if x.dim() == 2 and self.k1 >= x.shape[0]:
            n = x.shape[0]
            raise ValueError(f"k1 must be <= N - 1 = {n - 1} (N = number of points), got {self.k1}")
        # Stage timings must not absorb the previous stage's asynchronous GPU work.
        sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
        t0 = time.perf_counter()
        knn = smcr_ext.knn(x, self.k1, backend=self.knn_backend)  # validates the features once
        sync()
        seconds["knn"] = time.perf_counter() - t0
        n = knn.features.shape[0]

        t0 = time.perf_counter()
        if self.criterion == "none":
            eps_list = [self.eps]
        else:
            eps_list = [self.eps - self.eps_gap, self.eps, self.eps + self.eps_gap]
        graph = smcr_ext.kreciprocal_jaccard(knn, self.k1, self.k2, max_dist=max(eps_list))
        sync()
        seconds["jaccard"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        raw = smcr_ext.dbscan(graph, eps_list, self.min_samples)  # (len(eps), N)
        sync()
        seconds["dbscan"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if self.criterion == "none":
            keep = torch.ones(n, dtype=torch.bool, device=raw.device)
        else:
            keep = self._reliable(raw[0], raw[1], raw[2])
        labels, num_clusters, num_outliers, largest = _compact(
            raw[1 if len(eps_list) == 3 else 0], keep
        )
        sync()
        seconds["reliability"] = time.perf_counter() - t0
        result = PseudoLabels(
            labels=labels,
            num_clusters=num_clusters,
            num_outliers=num_outliers,
            largest_cluster=largest,
            indep_threshold=self.indep_threshold,
            comp_threshold=self.comp_threshold,
            dbscan_labels=raw,
            seconds=seconds,
        )
        log.info(
            "%d clusters, %d un-clustered instances (largest cluster %d of %d; "
            "R_indep threshold %s)",
            num_clusters,
            num_outliers,
            largest,
            n,
            "n/a" if self.indep_threshold is None else f"{self.indep_threshold:.4f}",
        )
        problem = None
        if num_clusters == 0:
            problem = f"clustering collapsed: 0 clusters, all {n} points un-clustered"
        elif largest > self.max_cluster_fraction * n:
            problem = (
                f"clustering collapsed: one cluster holds {largest} of {n} points "
                f"(> max_cluster_fraction={self.max_cluster_fraction})"
            )
        if problem is not None:
            if (
                self.collapse_policy == "keep_previous"
                and self.previous is not None
                and self.previous.numel() == n
            ):
                warnings.warn(
                    problem + "; keeping the previous labels", RuntimeWarning, stacklevel=2
                )
                prev = self.previous.to(labels.device)
                counts = torch.bincount(prev)
                result.labels = prev
                result.num_clusters = int((counts > 1).sum())
                result.num_outliers = int((counts == 1).sum())
                result.largest_cluster = int(counts.max())
                result.kept_previous = True
                return result
            raise ClusteringCollapsed(problem, result)
        self.previous = labels.detach().clone()
        return result

    # ------------------------------------------------------------------ criteria
    def _reliable(
        self, tight: torch.Tensor, normal: torch.Tensor, loose: torch.Tensor
    ) -> torch.Tensor:
        rel = smcr_ext.cluster_reliability(tight, normal, loose)
        ids = _singleton_ids(normal)
        num = int(ids.max()) + 1
        sizes = torch.bincount(ids, minlength=num)
        multi = sizes > 1
        if self.criterion == "spcl":
            r_comp, r_indep = rel.r_comp, rel.r_indep
            cluster_comp = _segment_min(r_comp, ids, num)
            cluster_indep = _segment_min(r_indep, ids, num)
            if self.indep_threshold is None:
                vals = torch.sort(cluster_indep[multi]).values
                if vals.numel() == 0:
                    return torch.zeros_like(normal, dtype=torch.bool)  # collapse is reported
                self.indep_threshold = _percentile_value(vals, self.percentile)
            return (cluster_indep[ids] <= self.indep_threshold) & (r_comp <= cluster_comp[ids])
        # "paper": Eq. 6–7 literally, IoU_s = tight (shrunk), IoU_e = loose (enlarged).
        iou_s, iou_e = rel.iou_tight, rel.iou_loose
        if self.comp_threshold is None:
            cluster_s = _segment_max(iou_s, ids, num)[multi]
            vals = torch.sort(cluster_s, descending=True).values
            if vals.numel() == 0:
                return torch.zeros_like(normal, dtype=torch.bool)
            self.comp_threshold = _percentile_value(vals, self.percentile)
        a = self.comp_threshold
        b = _segment_max(iou_e, ids, num)[ids]
        c1 = iou_s + iou_e - (a + b)
        c2 = iou_s - iou_e - (a - b)
        return (c1 > 0) & (c2 > 0)
