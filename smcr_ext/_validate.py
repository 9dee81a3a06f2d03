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
    DLPack-capable array is wrapped without a copy where its layout allows (a copy is made
    for negative strides and non-native byte order, which torch cannot view)."""
    if isinstance(x, torch.Tensor):
        return x
    if type(x).__module__.startswith("numpy"):
        return _from_numpy(x, name)
    strides = getattr(x, "strides", None)
    if hasattr(x, "__dlpack__") and not (
        isinstance(strides, tuple) and any(isinstance(s, int) and s < 0 for s in strides)
    ):
        # torch.from_dlpack aborts the process (not an exception) on negative strides, so
        # such arrays never reach it.
        try:
            return torch.from_dlpack(x)
        except Exception:
            pass
    raise TypeError(
        f"{name} must be a torch.Tensor or a DLPack array (numpy, cupy), got {type(x).__name__}"
    )


def _from_numpy(x: Any, name: str) -> torch.Tensor:
    import warnings

    import numpy as np

    if not isinstance(x, np.ndarray):  # a NumPy scalar
        x = np.asarray(x)
    if x.dtype.kind not in "biufc" or x.dtype.itemsize > 16:
        raise TypeError(f"{name} must hold numbers, got a numpy array of dtype {x.dtype}")
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if any(s < 0 for s in x.strides):
        # torch.from_dlpack aborts the process on negative strides (e.g. a[::-1]).
        x = np.ascontiguousarray(x)
    if x.flags.writeable:
        try:
            return torch.from_dlpack(x)
        except Exception:  # e.g. a dtype DLPack cannot carry
            pass
    with warnings.catch_warnings():  # a read-only array: the ops never write to inputs
        warnings.simplefilter("ignore", UserWarning)
        try:
            return torch.from_numpy(x)
        except TypeError as e:
            raise TypeError(f"{name}: {e}") from None


# Ints reach the C++ ops as int64.
_INT64_MAX = 2**63 - 1


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int within [low, high] (inclusive), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if high is None or high > _INT64_MAX:
        high = _INT64_MAX
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
    are); an all-zero row cannot be normalised and is an error. Rows far outside float32's
    range (1e30, 1e-30, float64 1e300) are normalised without over- or underflow.
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
    x = x.detach()
    finite = torch.isfinite(x).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()[:5].tolist()
        raise ValueError(f"{name} must be finite; rows {bad} hold NaN or Inf")
    x32 = x.to(torch.float32)
    if normalize:
        norms = x32.norm(dim=1)
        # The plain float32 path, unless a norm (or a value) over- or underflows float32:
        # then each row is scaled by its largest |value| first (rows of 1e30 or 1e-30, or
        # float64 rows beyond float32's range, are fine).
        if bool(torch.isfinite(norms).all()) and bool((norms > 1e-18).all()):
            if bool(((norms - 1.0).abs() > 1e-3).any()):
                x32 = x32 / norms.unsqueeze(1)
            return x32.contiguous()
        scale = x.abs().amax(dim=1)
        if bool((scale == 0).any()):
            bad = torch.nonzero(scale == 0).flatten()[:5].tolist()
            raise ValueError(f"{name} rows {bad} are all zero and cannot be L2-normalised")
        y = x / scale.unsqueeze(1)
        y = y / y.norm(dim=1, keepdim=True)
        return y.to(torch.float32).contiguous()
    if not bool(torch.isfinite(x32).all()):
        raise ValueError(f"{name} must be finite in float32; some values overflow it")
    return x32.contiguous()
