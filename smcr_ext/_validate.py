"""Argument checks shared by the wrappers: every error names the argument and shows
the bad value, as ValueError (bad value) or TypeError (bad type)."""

from __future__ import annotations

import numbers
from typing import Any

import torch

__all__ = [
    "as_tensor",
    "check_features",
    "check_int",
    "check_positive_float",
]


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """A torch.Tensor view of `x`: tensors pass through; NumPy, CuPy and any other
    DLPack-capable array is wrapped without a copy where its layout allows."""
    if isinstance(x, torch.Tensor):
        return x
    if hasattr(x, "__dlpack__"):
        try:
            return torch.from_dlpack(x)
        except Exception:  # e.g. a read-only or non-native-byte-order numpy array
            pass
    if type(x).__module__.startswith("numpy"):
        import numpy as np

        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(
        f"{name} must be a torch.Tensor or a DLPack array (numpy, cupy), got {type(x).__name__}"
    )


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int within [low, high] (inclusive), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_positive_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (value > 0.0) or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_features(
    features: Any,
    name: str = "features",
    *,
    min_rows: int = 2,
    normalize: bool = True,
) -> torch.Tensor:
    """Validate an (N, D) feature matrix and return it as contiguous float32.

    Rows must be finite. When `normalize` is true, rows whose L2 norm is off 1 by more
    than 1e-3 are L2-normalised (the kernels assume unit vectors, as re-ID embeddings
    are); an all-zero row cannot be normalised and is an error.
    """
    x = as_tensor(features, name)
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    n, d = x.shape
    if n < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows (N >= {min_rows}), got N={n}")
    if d < 1:
        raise ValueError(f"{name} must have at least one column, got shape {tuple(x.shape)}")
    x = x.detach().to(torch.float32).contiguous()
    finite = torch.isfinite(x).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()[:5].tolist()
        raise ValueError(f"{name} must be finite; rows {bad} hold NaN or Inf")
    if normalize:
        norms = x.norm(dim=1)
        if bool((norms == 0).any()):
            bad = torch.nonzero(norms == 0).flatten()[:5].tolist()
            raise ValueError(f"{name} rows {bad} are all zero and cannot be L2-normalised")
        if bool(((norms - 1.0).abs() > 1e-3).any()):
            x = x / norms.unsqueeze(1)
    return x
