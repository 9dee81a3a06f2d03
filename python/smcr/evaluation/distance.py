"""Query-gallery distance matrices: cosine and (squared) Euclidean, by one GEMM."""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["METRICS", "as_features", "distance_matrix", "distance_blocks", "numpy_to_tensor"]

METRICS = ("cosine", "euclidean")


def numpy_to_tensor(a: np.ndarray, name: str) -> torch.Tensor:
    """A NumPy array as a tensor: negative strides and non-native byte order are copied
    (torch.from_numpy refuses both); dtypes torch cannot hold raise a TypeError naming
    `name`."""
    if a.dtype.kind not in "biufc":
        raise TypeError(f"{name} must hold numbers, got a numpy array of dtype {a.dtype}")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if any(s < 0 for s in a.strides):
        a = np.ascontiguousarray(a)
    try:
        return torch.from_numpy(a)
    except TypeError as e:  # e.g. float128, uint16 on old torch
        raise TypeError(f"{name}: numpy dtype {a.dtype} is not supported ({e})") from e


def as_features(x: Any, name: str) -> torch.Tensor:
    """An (N, D) finite floating tensor, D >= 1 (NumPy arrays are wrapped), else a clear
    error. float16/bfloat16 come back as float32."""
    if isinstance(x, np.ndarray):
        x = numpy_to_tensor(x, name)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"{name} must have at least one row and one column, got shape {tuple(x.shape)}"
        )
    x = x.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    finite = torch.isfinite(x).all(dim=1)  # (N,)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite).flatten()[:5].tolist()
        raise ValueError(f"{name} must be finite; rows {rows} hold NaN or Inf")
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


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows L2-normalised as `F.normalize` does (zero rows stay zero). `F.normalize` alone
    turns rows whose norm overflows the dtype (beyond ~1.8e19 in float32) or falls below
    its eps 1e-12 into zero or non-unit vectors (every cosine distance 1); those rows are
    scaled by their largest |entry| first. Other rows are exactly `F.normalize`'s."""
    y = torch.nn.functional.normalize(x, dim=1)
    norm = torch.linalg.vector_norm(x, dim=1)  # (N,)
    bad = ~torch.isfinite(norm) | ((norm < 1e-12) & (x != 0).any(dim=1))
    if bool(bad.any()):
        xb = x[bad]
        xb = xb / xb.abs().amax(dim=1, keepdim=True)  # largest |entry| 1: no overflow
        y[bad] = torch.nn.functional.normalize(xb, dim=1)
    return y


def _prepare(q: torch.Tensor, g: torch.Tensor, metric: str):
    if metric == "cosine":
        return _unit_rows(q), _unit_rows(g), None, None
    qsq, gsq = q.pow(2).sum(1), g.pow(2).sum(1)  # (Q,), (G,)
    # Every term of |q|^2 + |g|^2 - 2 q.g is at most (|q| + |g|)^2: if that fits the
    # dtype, no distance comes out inf or NaN (inf - inf) by overflow.
    qmax, gmax = float(qsq.double().sqrt().max()), float(gsq.double().sqrt().max())
    if not (qmax + gmax) ** 2 <= float(torch.finfo(q.dtype).max):
        raise ValueError(
            f"squared Euclidean distances of these features overflow {q.dtype} (largest "
            f"|entry| {float(q.abs().max()):.3g} in query_features, "
            f"{float(g.abs().max()):.3g} in gallery_features); scale them down, pass float64 "
            "features or use metric='cosine'"
        )
    return q, g, qsq, gsq


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
    if isinstance(block_rows, (bool, np.bool_)) or not isinstance(block_rows, numbers.Integral):
        raise TypeError(
            f"block_rows must be an int, got {type(block_rows).__name__} {block_rows!r}"
        )
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    block_rows = int(block_rows)
    q, g = _check_pair(query, gallery, metric)
    q, g, qsq, gsq = _prepare(q, g, metric)
    for r0 in range(0, q.shape[0], block_rows):
        r1 = min(q.shape[0], r0 + block_rows)
        yield r0, _block(q[r0:r1], g, None if qsq is None else qsq[r0:r1], gsq, metric)
