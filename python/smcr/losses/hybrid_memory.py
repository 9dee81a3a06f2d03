"""The hybrid memory of SMCR's two branches (SpCL's HybridMemory): one row per source class
(its L2-normalised centroid) and one row per target image, each row with a label in one
shared label space, the joint contrastive loss over it, and its explicit momentum update.

Layout: the memory keeps one row per label for the loss, and the rows of clustered target
images after them. With C_s source classes, k clusters, n_out un-clustered and n_in clustered
target images (L = C_s + k + n_out labels, P = L + n_in rows):
    rows [0, C_s)           source-class centroids; row c carries label c
    rows [C_s, C_s + k)     the mean of each cluster's rows (label C_s + j), derived: kept
                            equal to the mean of the cluster's image rows after every update
    rows [C_s + k, L)       un-clustered target images, a label each (row = label)
    rows [L, P)             clustered target images, grouped by cluster (label C_s + j)
So row c < L is exactly label c's mean, and the loss (SpCL's: each cluster scored by the mean
of its rows) reads L rows, contiguous, in place, instead of the whole memory: on a
mid-training clustering of 126k images about a third of it. Source samples use row = class
id; target image k uses row ``target_row[k]`` (:meth:`HybridMemory.source_rows`,
:meth:`HybridMemory.target_rows`); every relabelling rebuilds the layout. Before the first
one (k = 0) target image k is on row C_s + k, SpCL's layout.

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


def _nonfinite_rows(x: torch.Tensor) -> list[int]:
    """The first (up to 5) rows of the 2-D float tensor x holding NaN or Inf: one scan, no
    (M, D) mask, when there is none."""
    if _first_invalid(x.detach())[0] < 0:
        return []
    return torch.nonzero(~torch.isfinite(x).all(dim=1)).flatten()[:5].tolist()


def _rows_or_minus_one(ids: torch.Tensor, n: int, table: torch.Tensor | None) -> torch.Tensor:
    """table[ids] (ids itself without a table) where ids is in [0, n), else -1; no host
    synchronisation, no out-of-bounds read."""
    rows = ids if table is None or n == 0 else table[ids.clamp(0, n - 1)]
    return torch.where((ids >= 0) & (ids < n), rows, torch.full_like(rows, -1))


def _as_rows(rows, device: torch.device, batch: int) -> torch.Tensor:
    """`rows` as a contiguous (B,) int64 tensor on `device` (TypeError for rows that are not
    integers, ValueError for another shape), dispatching no conversion it does not need."""
    if not (isinstance(rows, torch.Tensor) and rows.device == device):
        rows = torch.as_tensor(rows, device=device)
    if rows.is_floating_point() or rows.is_complex() or rows.dtype == torch.bool:
        raise TypeError(f"rows must be an integer tensor, got {rows.dtype}")
    if rows.dim() != 1 or rows.numel() != batch:
        raise ValueError(f"rows must be (B,) = ({batch},), got shape {tuple(rows.shape)}")
    if rows.dtype != torch.int64:
        rows = rows.to(torch.int64)
    return rows if rows.is_contiguous() else rows.contiguous()


class HybridMemory(nn.Module):
    """Memory bank of source-class centroids and target instance features, its row labels,
    and the joint contrastive loss over it (module docstring: the layout).

    Args:
        num_features: D.
        num_source_classes: C_s (0 for a target-only memory).
        num_target: N_t, the number of target training images.
        temperature: tau of the loss (0.05). momentum: of the update (0.2: the new feature
            gets weight 0.8). eps: SpCL's masked-softmax epsilon (1e-6).
        dtype: the memory's dtype: float32, or bfloat16 to halve its size (float64 for tests).
            A bfloat16 memory keeps its cluster means rounded to bfloat16 too.
        device: where the memory lives.
        process_group: the torch.distributed group whose ranks share the memory (default:
            the world, when torch.distributed is initialised).
        validate: check rows and features for bad values before every call (one host
            synchronisation per call on CUDA); shapes are always checked.

    Buffers (read-only for users; in the state dict): ``features`` (P, D), ``labels`` (P,)
    the label of each row, ``target_row`` (N_t,) the row of each target image.

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
        self.register_buffer("target_row", torch.arange(
            self.num_source_classes, m, dtype=torch.int64, device=device))
        self._num_labels = m
        self._clear_caches()

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
        """Set the target images' labels from a clustering and rebuild the layout.

        Args:
            target_labels: (N_t,) integer cluster ids, -1 for un-clustered images (DBSCAN's
                noise). Cluster ids are compacted in increasing order; every un-clustered
                image becomes a class of its own, after the clusters, in dataset order
                (SpCL's labelling).

        Returns:
            RelabelStats(num_clusters, num_outliers, largest_cluster, num_labels).

        The target rows move (the order is a stable sort of the new labels, so every rank
        builds the same layout) and a row per cluster holding its mean is added; the memory
        briefly holds the old and the new bank. A bank holding NaN or Inf (from an update
        with validate=False) is refused with a ValueError.
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
        # The loss and update check features, not the bank (O(M D) per step); once per
        # labelling a NaN that got in (an update with validate=False) is caught here.
        rows = _nonfinite_rows(self.features)
        if rows:
            raise ValueError(
                f"the memory holds NaN or Inf on rows {rows}: it was updated with "
                "non-finite features (update(..., validate=False)?); rebuild it with "
                "HybridMemory.from_features"
            )
        clustered = t >= 0
        ids, compact, sizes = torch.unique(t[clustered], return_inverse=True, return_counts=True)
        k = ids.numel()
        cluster = torch.full_like(t, -1)
        cluster[clustered] = compact
        n_out = self.num_target - int(sizes.sum())
        self._arrange(cluster, k)
        return RelabelStats(k, n_out, int(sizes.max()) if k else 0,
                            self.num_source_classes + k + n_out)

    @torch.no_grad()
    def _arrange(self, cluster: torch.Tensor, k: int) -> None:
        """The layout for compact cluster ids `cluster` (N_t,) in [0, k), -1 = un-clustered."""
        c_s, n_t, dev = self.num_source_classes, self.num_target, self.features.device
        # un-clustered images first (key -1, in dataset order), then the clusters in order
        order = torch.argsort(cluster, stable=True)
        n_out = n_t - int((cluster >= 0).sum())
        n_labels = c_s + k + n_out
        p = c_s + k + n_t
        feats = self.features.new_empty(p, self.num_features)
        feats[:c_s] = self.features[:c_s]
        torch.index_select(self.features, 0, self.target_row[order], out=feats[c_s + k:])
        labels = torch.empty(p, dtype=torch.int64, device=dev)
        labels[:n_labels] = torch.arange(n_labels, device=dev)  # row c < L is label c
        labels[n_labels:] = c_s + cluster[order[n_out:]]
        target_row = torch.empty_like(self.target_row)
        target_row[order] = torch.arange(c_s + k, p, device=dev)
        self.features, self.labels = feats, labels
        self.target_row.copy_(target_row)
        self._num_labels = n_labels
        self._clear_caches()
        if k:
            means = smcr_ext.label_means(feats, self._means_index(),
                                         torch.arange(c_s, c_s + k, device=dev))
            feats[c_s:c_s + k] = means

    # ------------------------------------------------------------------ rows

    @property
    def num_clusters(self) -> int:
        """k: the clusters of the current labelling (their mean rows are [C_s, C_s + k))."""
        return self.features.shape[0] - self.num_source_classes - self.num_target

    @property
    def num_labels(self) -> int:
        """L: the labels of the loss (rows [0, L) are their means)."""
        return self._num_labels

    def source_rows(self, class_ids: torch.Tensor) -> torch.Tensor:
        """Memory rows of source samples: their class ids (on the memory's device)."""
        return self._rows(class_ids, "class_ids", self.num_source_classes, None)

    def target_rows(self, indices: torch.Tensor) -> torch.Tensor:
        """Memory rows of target images, from their dataset indices (on the memory's
        device)."""
        return self._rows(indices, "indices", self.num_target, self.target_row)

    def _rows(self, ids, name: str, n: int, table: torch.Tensor | None) -> torch.Tensor:
        """Rows of ids in [0, n) (through `table` when given). Out-of-range ids raise a
        ValueError when they are on the CPU; on a device they map to row -1, which the
        forward's check reports, so that nothing reads out of bounds and no host
        synchronisation is added here."""
        ids = torch.as_tensor(ids)
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got {ids.dtype}")
        ids = ids.to(torch.int64)
        if ids.device.type == "cpu" and ids.numel():
            bad = ((ids < 0) | (ids >= n)).nonzero().flatten()
            if bad.numel():
                i = int(bad[0])
                raise ValueError(f"{name} must be in [0, {n}); {name}[{i}] = {int(ids[i])}")
        return _rows_or_minus_one(ids.to(self.labels.device), n, table)

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
        """The loss's label index: label c is row c, for c < L (one zero-copy run)."""
        if self._loss_index is None:
            self._loss_index = smcr_ext.label_index(
                torch.arange(self._num_labels, device=self.labels.device))
        return self._loss_index

    def _means_index(self) -> smcr_ext.LabelIndex:
        """The rows of every label among the sample rows (the mean rows carry the spare
        label L), to recompute cluster means."""
        if self._cluster_index is None:
            c_s, k = self.num_source_classes, self.num_clusters
            lab = self.labels.clone()
            lab[c_s:c_s + k] = self._num_labels
            self._cluster_index = smcr_ext.label_index(lab, self._num_labels + 1)
        return self._cluster_index

    def _sample_rows(self) -> torch.Tensor:
        """(P,) int64: 1 for rows of samples, 0 for the rows that hold cluster means."""
        if self._is_sample is None:
            c_s, k = self.num_source_classes, self.num_clusters
            is_sample = torch.ones_like(self.labels)
            is_sample[c_s:c_s + k] = 0
            self._is_sample = is_sample
        return self._is_sample

    def _clear_caches(self) -> None:
        self._loss_index: smcr_ext.LabelIndex | None = None
        self._cluster_index: smcr_ext.LabelIndex | None = None
        self._is_sample: torch.Tensor | None = None

    def _check_features(self, features) -> None:
        """A (B, D) tensor on the memory's device (dtypes and D are checked by the ops)."""
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
        if features.device != self.features.device:
            raise ValueError(f"features must be on the memory's device {self.features.device}, "
                             f"got {features.device}")
        if features.dim() != 2:
            raise ValueError(f"features must be 2-D (B, D), got shape {tuple(features.shape)}")

    def _check_rows(self, features: torch.Tensor, rows: torch.Tensor) -> None:
        """One check, one host synchronisation: finite features, rows in [0, P) that are
        rows of samples."""
        p = self.features.shape[0]
        bad_row, _, out_of_range, mean_row = _first_invalid(features.detach(), None, rows, p,
                                                            self._sample_rows())
        _raise_bad_values(features, "features", bad_row, rows, "rows", out_of_range,
                          f"in [0, M = {p})")
        if mean_row >= 0:
            c_s = self.num_source_classes
            raise ValueError(
                f"rows must be rows of samples, not the rows [{c_s}, {c_s + self.num_clusters})"
                f" that hold the cluster means; rows[{mean_row}] = {int(rows[mean_row])} (use "
                "source_rows / target_rows)")

    # ------------------------------------------------------------------ loss and update

    def forward(self, features: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Joint contrastive loss (scalar) of `features` (B, D), whose memory rows are `rows`
        (B,); the target of each is the label of its row. No state changes here."""
        self._check_features(features)
        rows = _as_rows(rows, self.features.device, features.shape[0])
        if self.validate and features.is_floating_point():
            # the targets are the labels of valid rows, so each is carried by a row and
            # needs no check of its own
            self._check_rows(features, rows)
        else:  # unchecked rows: clamped, so that a bad one cannot index out of bounds
            rows = rows.clamp(0, self.features.shape[0] - 1)
        targets = self.labels[rows]
        # the loss reads only rows [0, L): one row per label, label c on row c
        # (shapes and dtypes, and with validate=False nothing else, are checked by the op)
        return smcr_ext.hybrid_memory_loss(
            features, self.features[:self._num_labels], self.label_index, targets,
            self.temperature, eps=self.eps, validate=False,
        ).loss

    @torch.no_grad()
    def update(self, features: torch.Tensor, rows: torch.Tensor, *,
               validate: bool | None = None) -> None:
        """Momentum update of the rows of this step's samples (after the backward): gathers
        (features, rows) from every rank, then applies them in rank order, each batch in
        order; a row listed twice gets both updates in that order. Then the mean rows of the
        clusters touched are recomputed from their image rows (ascending row order).

        validate: check the values first (default: this memory's `validate`). A training
        loop that passes the very features and rows that went through :meth:`forward` in
        this step (checked there, on every rank) may pass False to spare the check's host
        synchronisation on CUDA; shapes are always checked."""
        self._check_features(features)
        features = features.detach()
        rows = _as_rows(rows, self.features.device, features.shape[0])
        features, rows = self._gather(features, rows)
        check = self.validate if validate is None else validate
        if check and features.is_floating_point():
            self._check_rows(features, rows)
        smcr_ext.hybrid_memory_update_(self.features, rows, features, self.momentum,
                                       validate=False)
        if self.num_clusters:
            # label c's mean lives on row c: recompute those of the updated rows' clusters
            # (one kernel; a single-row label is its own mean and is left alone)
            index = self._means_index()
            torch.ops.smcr._hybrid_memory_refresh_means_(
                self.features, rows, self.labels, index.label_ptr, index.label_rows)

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
        # The saved layout may have another number of rows (one per cluster of its labelling):
        # the buffers take its shape before the base class copies into them.
        fkey, lkey, tkey = prefix + "features", prefix + "labels", prefix + "target_row"
        if fkey not in state_dict or lkey not in state_dict:  # the base class reports it
            super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                          missing_keys, unexpected_keys, error_msgs)
            return
        c_s, n_t = self.num_source_classes, self.num_target
        m = c_s + n_t
        feats, labels = state_dict[fkey], state_dict[lkey]
        p = feats.shape[0] if feats.dim() == 2 else -1
        if p < m or labels.shape != (p,):
            error_msgs.append(f"{fkey} {tuple(feats.shape)} and {lkey} {tuple(labels.shape)} "
                              f"must have P >= M = {m} rows and one label per row")
            return
        rows = _nonfinite_rows(feats) if feats.is_floating_point() else []
        if rows:
            error_msgs.append(f"{fkey} holds NaN or Inf on rows {rows}")
            return
        old = tkey not in state_dict  # saved before the layout: SpCL's, image k on row C_s + k
        if old and p != m:
            error_msgs.append(f"{fkey} has {p} rows but no {tkey}: a memory in SpCL's layout "
                              f"has M = {m}")
            return
        k = p - m
        if not old:
            lab = labels.detach().cpu().to(torch.int64)
            t = torch.as_tensor(state_dict[tkey]).detach().cpu()
            n_labels = int(lab.max()) + 1 if p else 0
            members = lab[n_labels:]
            if not (t.shape == (n_t,) and c_s + k <= n_labels <= p
                    and torch.equal(t.sort().values, torch.arange(c_s + k, p, dtype=t.dtype))
                    and torch.equal(lab[:n_labels], torch.arange(n_labels))
                    and bool(((members >= c_s) & (members < c_s + k)).all())):
                error_msgs.append(f"{prefix or 'memory '}features, labels and target_row are not a layout "
                                  "of this class (rows [0, L) one per label, then the cluster "
                                  "members; target_row a permutation of the image rows)")
                return
        with torch.no_grad():  # the saved shape (D is checked by the base class)
            self.features = self.features.new_empty(p, self.num_features)
            self.labels = self.labels.new_empty(p)
        n_errors = len(error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        self._clear_caches()
        if len(error_msgs) > n_errors:
            return
        if not old:
            self._num_labels = n_labels
            return
        if tkey in missing_keys:
            missing_keys.remove(tkey)
        with torch.no_grad():
            self.target_row.copy_(torch.arange(c_s, m))
        self._num_labels = m
        # rebuild the layout from the saved labels: a label on two or more image rows is a
        # cluster (a single-image cluster gives the same loss as an un-clustered image)
        tl = self.labels[c_s:] - c_s
        if tl.numel() and bool((tl < 0).any()):
            error_msgs.append(f"{lkey}: target rows must carry labels >= C_s = {c_s}")
            return
        counts = torch.bincount(tl) if tl.numel() else tl
        multi = counts[tl] >= 2 if tl.numel() else tl.bool()
        if bool(multi.any()):
            _, compact = torch.unique(tl[multi], return_inverse=True)
            cluster = torch.full_like(tl, -1)
            cluster[multi] = compact
            self._arrange(cluster, int(compact.max()) + 1)

    def extra_repr(self) -> str:
        return (
            f"rows={self.features.shape[0]} (source classes {self.num_source_classes}, targets "
            f"{self.num_target}), dim={self.num_features}, dtype={self.features.dtype}, "
            f"temperature={self.temperature}, momentum={self.momentum}"
        )
