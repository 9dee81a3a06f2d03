"""The hybrid memory of SMCR's two branches (SpCL's HybridMemory): one row per source class
(its L2-normalised centroid) and one row per target image, each row with a label in one
shared label space, the joint contrastive loss over it, and its explicit momentum update.

Layout:
    rows   [0, C_s)          source-class centroids, row c carries label c
    rows   [C_s, C_s + N_t)  target instances, one row per target image, carrying C_s + (its
                             cluster), or a label of its own when un-clustered (SpCL's labels)
A source sample of class y uses row y; the row of target image k (its dataset index) is
``target_row[k]`` (:meth:`HybridMemory.source_rows`, :meth:`HybridMemory.target_rows`).
Unlike SpCL, the target rows are kept in label order: every relabelling permutes them so
that each cluster's rows are consecutive and the un-clustered images (a label each) follow
on consecutive rows. The label means of those single-row labels are then slices of the
memory itself, which the loss multiplies in place instead of copying them (on a mid-training
clustering, most of the memory). Before the first relabelling, target image k is on row
C_s + k.

A training step reads:
    loss_joint = memory(features, rows)     # Eq. 4-5 / 9-10 (no state change)
    loss.backward(); optimizer.step()
    memory.update(features, rows)           # momentum update, explicit, after the backward
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

import smcr_ext
from smcr_ext.losses import _first_invalid, _raise_bad_values

__all__ = ["HybridMemory", "RelabelStats", "class_centroids"]


@dataclass(frozen=True)
class RelabelStats:
    """What a relabelling produced, to be logged every epoch (a collapse into all outliers or
    one giant cluster is visible here first)."""

    num_clusters: int
    num_outliers: int
    largest_cluster: int
    num_labels: int


def class_centroids(features: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None
                    ) -> torch.Tensor:
    """L2-normalised per-class mean of `features` (N, D) with integer `labels` (N,) in
    [0, num_classes). Every class must have at least one sample. Returns (C, D) float32
    (float64 for float64 features)."""
    if features.dim() != 2 or labels.dim() != 1 or labels.numel() != features.shape[0]:
        raise ValueError(
            f"need features (N, D) and labels (N,), got shapes {tuple(features.shape)} and "
            f"{tuple(labels.shape)}"
        )
    acc = torch.float64 if features.dtype == torch.float64 else torch.float32
    labels = labels.to(device=features.device, dtype=torch.int64)
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"labels must be >= 0, got {int(labels.min())}")
    c = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    sums = torch.zeros(c, features.shape[1], dtype=acc, device=features.device)
    sums.index_add_(0, labels, features.to(acc))
    counts = torch.bincount(labels, minlength=c)
    if counts.numel() > c:
        raise ValueError(f"labels must be < num_classes = {c}, got {int(labels.max())}")
    if bool((counts == 0).any()):
        empty = torch.nonzero(counts == 0).flatten()[:5].tolist()
        raise ValueError(f"classes {empty} have no sample, so no centroid")
    return nn.functional.normalize(sums / counts.unsqueeze(1).to(acc), dim=1)


class HybridMemory(nn.Module):
    """Memory bank (M, D) of source-class centroids and target instance features, its row
    labels, and the joint contrastive loss over it.

    Args:
        num_features: D.
        num_source_classes: C_s (0 for a target-only memory).
        num_target: N_t, the number of target training images.
        temperature: tau of the loss (0.05). momentum: of the update (0.2: the new feature
            gets weight 0.8). eps: SpCL's masked-softmax epsilon (1e-6).
        dtype: the memory's dtype: float32, or bfloat16 to halve its size (float64 for tests).
        device: where the memory lives.
        process_group: the torch.distributed group whose ranks share the memory (default:
            the world, when torch.distributed is initialised).
        validate: check rows, targets and features for bad values before every call (one or
            two host synchronisations per call on CUDA); shapes are always checked.

    Under torch.distributed every rank holds the whole memory; :meth:`update` gathers the
    features and rows of all ranks and applies them in rank order (rank 0's batch first,
    each batch in order), so every rank applies identical updates and the copies stay equal.
    The loss uses the local batch only; DDP averages the gradients as usual.
    """

    features: torch.Tensor
    labels: torch.Tensor
    target_row: torch.Tensor

    def __init__(
        self,
        num_features: int,
        num_source_classes: int,
        num_target: int,
        *,
        temperature: float = 0.05,
        momentum: float = 0.2,
        eps: float = 1e-6,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        process_group: dist.ProcessGroup | None = None,
        validate: bool = True,
    ) -> None:
        super().__init__()
        if num_features < 1 or num_source_classes < 0 or num_target < 0:
            raise ValueError(
                f"need num_features >= 1, num_source_classes >= 0 and num_target >= 0, got "
                f"{num_features}, {num_source_classes}, {num_target}"
            )
        if num_source_classes + num_target < 1:
            raise ValueError("the memory needs at least one row (source classes or targets)")
        if dtype not in (torch.float32, torch.bfloat16, torch.float64):
            raise ValueError(f"dtype must be float32, bfloat16 or float64, got {dtype}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if not temperature > 0.0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.num_features = int(num_features)
        self.num_source_classes = int(num_source_classes)
        self.num_target = int(num_target)
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.process_group = process_group
        self.validate = bool(validate)
        m = self.num_source_classes + self.num_target
        self.register_buffer("features", torch.zeros(m, num_features, dtype=dtype, device=device))
        self.register_buffer("labels", torch.arange(m, dtype=torch.int64, device=device))
        # the memory row of every target image (dataset index k), permuted by relabel
        self.register_buffer("target_row", torch.arange(
            self.num_source_classes, m, dtype=torch.int64, device=device))
        self._index: smcr_ext.LabelIndex | None = None
        self._index_key: tuple | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_features(
        cls,
        source_features: torch.Tensor | None,
        source_labels: torch.Tensor | None,
        target_features: torch.Tensor,
        **kwargs,
    ) -> HybridMemory:
        """Build the memory from one pass of the model over both training sets (SpCL's
        initialisation): source rows = L2-normalised class centroids of `source_features`
        (N_s, D) with class ids `source_labels` (N_s,) in [0, C_s); target rows =
        L2-normalised `target_features` (N_t, D). Every target image starts as its own class
        (labels C_s + k) until :meth:`relabel`. `source_features=None` gives a target-only
        memory. Other keyword arguments go to the constructor (dtype, device, ...)."""
        if target_features.dim() != 2:
            raise ValueError(f"target_features must be (N_t, D), got {tuple(target_features.shape)}")
        d = target_features.shape[1]
        if source_features is None:
            centroids = target_features.new_zeros(0, d)
        else:
            if source_labels is None:
                raise ValueError("source_labels are needed with source_features")
            centroids = class_centroids(source_features, source_labels)
            if centroids.shape[1] != d:
                raise ValueError(
                    f"source and target features must have the same D, got {centroids.shape[1]} "
                    f"and {d}"
                )
        kwargs.setdefault("device", target_features.device)
        memory = cls(d, centroids.shape[0], target_features.shape[0], **kwargs)
        rows = torch.cat([centroids.to(torch.float64),
                          nn.functional.normalize(target_features.to(torch.float64), dim=1)])
        if not bool(torch.isfinite(rows).all()):
            raise ValueError("source or target features hold NaN or Inf")
        with torch.no_grad():
            memory.features.copy_(rows)
        return memory

    def relabel(self, target_labels: torch.Tensor) -> RelabelStats:
        """Set the target rows' labels from a clustering of the target images.

        Args:
            target_labels: (N_t,) integer cluster ids, -1 for un-clustered images (DBSCAN's
                noise). Cluster ids are compacted in increasing order; every un-clustered
                image becomes a class of its own, after the clusters (SpCL's labelling).

        Returns:
            RelabelStats(num_clusters, num_outliers, largest_cluster, num_labels).
        """
        t = torch.as_tensor(target_labels)
        if t.dim() != 1 or t.numel() != self.num_target:
            raise ValueError(
                f"target_labels must be (N_t,) = ({self.num_target},), got shape {tuple(t.shape)}"
            )
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TypeError(f"target_labels must hold integers, got {t.dtype}")
        t = t.to(device=self.labels.device, dtype=torch.int64)
        if t.numel() and int(t.min()) < -1:
            raise ValueError(f"target_labels must be >= -1 (-1 = un-clustered), got {int(t.min())}")
        clustered = t >= 0
        ids, compact, sizes = torch.unique(t[clustered], return_inverse=True, return_counts=True)
        k = ids.numel()
        new = torch.empty_like(t)
        new[clustered] = compact
        n_out = int((~clustered).sum())
        new[~clustered] = k + torch.arange(n_out, device=t.device)
        # Store the target rows in label order: image order[j] moves to row C_s + j. The
        # sort is stable, so the permutation depends only on the labels (identical on every
        # rank) and the un-clustered images keep their dataset order.
        c_s = self.num_source_classes
        order = torch.argsort(new, stable=True)
        with torch.no_grad():
            self.features[c_s:] = self.features[self.target_row[order]]
            self.labels[c_s:] = c_s + new[order]
            self.target_row[order] = torch.arange(c_s, c_s + self.num_target,
                                                  device=self.target_row.device)
        self._index = None
        return RelabelStats(k, n_out, int(sizes.max()) if k else 0,
                            self.num_source_classes + k + n_out)

    # ------------------------------------------------------------------ rows

    def source_rows(self, class_ids: torch.Tensor) -> torch.Tensor:
        """Memory rows of source samples: their class ids (on the memory's device)."""
        ids = torch.as_tensor(class_ids, device=self.labels.device)
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"class_ids must be an integer tensor, got {ids.dtype}")
        return ids.to(torch.int64)

    def target_rows(self, indices: torch.Tensor) -> torch.Tensor:
        """Memory rows of target images, from their dataset indices (on the memory's
        device)."""
        idx = torch.as_tensor(indices, device=self.target_row.device)
        if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
            raise TypeError(f"indices must be an integer tensor, got {idx.dtype}")
        return self.target_row[idx.to(torch.int64)]

    @property
    def target_features(self) -> torch.Tensor:
        """(N_t, D) copy of the target rows in dataset order (what each epoch clusters)."""
        return self.features[self.target_row]

    @property
    def target_labels(self) -> torch.Tensor:
        """(N_t,) labels of the target images, in dataset order."""
        return self.labels[self.target_row]

    @property
    def label_index(self) -> smcr_ext.LabelIndex:
        """The rows grouped by label, rebuilt only when the labels change."""
        key = (self.labels.device, self.labels.data_ptr(), self.labels._version)
        if self._index is None or self._index_key != key:
            self._index = smcr_ext.label_index(self.labels)
            self._index_key = key
        return self._index

    # ------------------------------------------------------------------ loss and update

    def forward(self, features: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Joint contrastive loss (scalar) of `features` (B, D), whose memory rows are `rows`
        (B,); the target of each is the label of its row. No state changes here."""
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
        if features.device != self.features.device:
            raise ValueError(f"features must be on the memory's device {self.features.device}, "
                             f"got {features.device}")
        rows = torch.as_tensor(rows, device=self.labels.device)
        if rows.is_floating_point() or rows.is_complex() or rows.dtype == torch.bool:
            raise TypeError(f"rows must be an integer tensor, got {rows.dtype}")
        if rows.dim() != 1 or rows.numel() != features.shape[0]:
            raise ValueError(
                f"rows must be (B,) = ({features.shape[0]},), got shape {tuple(rows.shape)}"
            )
        m = self.labels.numel()
        if self.validate and features.dim() == 2 and features.is_floating_point():
            # the op wrappers' one-op check: the targets are the labels of valid rows, so each
            # is carried by a row and needs no check of its own
            rows = rows.to(torch.int64).contiguous()
            bad_row, _, out_of_range, _ = _first_invalid(features.detach(), None, rows, m)
            _raise_bad_values(features, "features", bad_row, rows, "rows", out_of_range,
                              f"in [0, M = {m})")
        else:  # unchecked rows: clamped, so that a bad one cannot index out of bounds
            rows = rows.clamp(0, m - 1)
        targets = self.labels[rows]
        # shapes and dtypes (and, with validate=False, nothing else) are checked by the wrapper
        return smcr_ext.hybrid_memory_loss(
            features, self.features, self.label_index, targets, self.temperature, eps=self.eps,
            validate=False,
        ).loss

    @torch.no_grad()
    def update(self, features: torch.Tensor, rows: torch.Tensor, *,
               validate: bool | None = None) -> None:
        """Momentum update of the rows of this step's samples (after the backward): gathers
        (features, rows) from every rank, then applies them in rank order, each batch in
        order; a row listed twice gets both updates in that order.

        validate: check the values first (default: this memory's `validate`). A training
        loop that passes the very features and rows that went through :meth:`forward` in
        this step (checked there, on every rank) may pass False to spare the check's host
        synchronisation on CUDA; shapes are always checked."""
        features = features.detach()
        rows = torch.as_tensor(rows, device=features.device).to(torch.int64)
        features, rows = self._gather(features, rows)
        smcr_ext.hybrid_memory_update_(self.features, rows, features, self.momentum,
                                       validate=self.validate if validate is None else validate)

    def _gather(self, features: torch.Tensor, rows: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if not (dist.is_available() and dist.is_initialized()):
            return features, rows
        group = self.process_group
        world = dist.get_world_size(group)
        if world == 1:
            return features, rows
        n = torch.tensor([features.shape[0]], dtype=torch.int64, device=features.device)
        sizes = [torch.zeros_like(n) for _ in range(world)]
        dist.all_gather(sizes, n, group=group)
        sizes_host = [int(s) for s in sizes]
        most = max(sizes_host)
        pad_f = features.new_zeros(most, features.shape[1])
        pad_f[: features.shape[0]] = features
        pad_r = rows.new_zeros(most)
        pad_r[: rows.shape[0]] = rows
        all_f = [torch.empty_like(pad_f) for _ in range(world)]
        all_r = [torch.empty_like(pad_r) for _ in range(world)]
        dist.all_gather(all_f, pad_f, group=group)
        dist.all_gather(all_r, pad_r, group=group)
        feats = torch.cat([f[:k] for f, k in zip(all_f, sizes_host, strict=True)])
        rws = torch.cat([r[:k] for r, k in zip(all_r, sizes_host, strict=True)])
        return feats, rws

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + "target_row"
        c_s, m = self.num_source_classes, self.num_source_classes + self.num_target
        if key in state_dict:
            t = torch.as_tensor(state_dict[key])
            if t.shape != (self.num_target,) or not torch.equal(
                    t.detach().cpu().sort().values, torch.arange(c_s, m, dtype=t.dtype)):
                error_msgs.append(f"{key} must be a permutation of the target rows [{c_s}, {m})")
                return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if key not in state_dict and prefix + "features" in state_dict:
            # saved before the rows were kept in label order: target image k on row C_s + k
            if key in missing_keys:
                missing_keys.remove(key)
            with torch.no_grad():
                self.target_row.copy_(torch.arange(c_s, m))
        self._index = None

    def extra_repr(self) -> str:
        return (
            f"rows={self.features.shape[0]} (source classes {self.num_source_classes}, targets "
            f"{self.num_target}), dim={self.num_features}, dtype={self.features.dtype}, "
            f"temperature={self.temperature}, momentum={self.momentum}"
        )
