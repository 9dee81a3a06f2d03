"""Query-gallery distance matrices: cosine and (squared) Euclidean, by one GEMM."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["METRICS", "as_features", "distance_matrix", "distance_blocks"]

METRICS = ("cosine", "euclidean")


def as_features(x: Any, name: str) -> torch.Tensor:
    """An (N, D) floating tensor (NumPy arrays are wrapped), else a clear error."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row, got shape {tuple(x.shape)}")
    x = x.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return x


def _check_pair(query: Any, gallery: Any, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    q = as_features(query, "query_features")
    g = as_features(gallery, "gallery_features")
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"query_features and gallery_features must have the same width D, got "
            f"{q.shape[1]} and {g.shape[1]}"
        )
    if q.device != g.device:
        raise ValueError(f"query_features is on {q.device} but gallery_features on {g.device}")
    if q.dtype != g.dtype:
        dt = torch.promote_types(q.dtype, g.dtype)
        q, g = q.to(dt), g.to(dt)
    return q, g


def _prepare(q: torch.Tensor, g: torch.Tensor, metric: str):
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        g = torch.nn.functional.normalize(g, dim=1)
        return q, g, None, None
    return q, g, q.pow(2).sum(1), g.pow(2).sum(1)


def _block(q, g, qsq, gsq, metric: str) -> torch.Tensor:
    if metric == "cosine":
        d = torch.mm(q, g.t())  # (b, G) cosine similarity
        one = torch.ones((), dtype=d.dtype, device=d.device)
        return torch.add(one, d, alpha=-1, out=d)  # 1 - cos, in place, one pass
    d = torch.addmm(qsq[:, None] + gsq[None, :], q, g.t(), beta=1.0, alpha=-2.0)
    return d


def distance_matrix(query: Any, gallery: Any, metric: str = "cosine") -> torch.Tensor:
    """(Q, G) distances between the rows of `query` (Q, D) and `gallery` (G, D).

    metric "cosine": 1 - cos(q, g) in [0, 2] (rows L2-normalised here);
    "euclidean": the squared Euclidean distance |q|^2 + |g|^2 - 2 q.g, as torchreid's
    `compute_distance_matrix` (its ranking is the Euclidean distance's).
    float16/bfloat16 inputs are computed in float32; float64 stays float64.
    """
    q, g = _check_pair(query, gallery, metric)
    q, g, qsq, gsq = _prepare(q, g, metric)
    return _block(q, g, qsq, gsq, metric)


def distance_blocks(
    query: Any, gallery: Any, metric: str = "cosine", block_rows: int = 1024
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (row0, rows [row0, row0 + b) of `distance_matrix(query, gallery, metric)`),
    so that a large matrix never has to be held whole."""
    q, g = _check_pair(query, gallery, metric)
    q, g, qsq, gsq = _prepare(q, g, metric)
    for r0 in range(0, q.shape[0], block_rows):
        r1 = min(q.shape[0], r0 + block_rows)
        yield r0, _block(q[r0:r1], g, None if qsq is None else qsq[r0:r1], gsq, metric)
