"""Identity sampler: P identities x K instances, the K preferring cameras other than the first.

SpCL's ``RandomMultipleGallerySampler`` (spcl/utils/data/sampler.py) takes, per identity, one
anchor and then K-1 more images from cameras other than the anchor's, falling back to
same-camera images. Two quirks are fixed here: an identity always contributes exactly K
indices (SpCL gives a single-image identity only one, which shifts every later batch off the
P x K grid), and the other-camera draw is without replacement whenever K-1 images exist
(SpCL tests ``>= K`` instead of ``>= K - 1``). Samples with pid < 0 are skipped, as in SpCL.
Deterministic for a given ``seed`` and epoch (``set_epoch``).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence

import numpy as np
import torch


def _check_seed(value: object, name: str) -> int:
    """`value` as a Python int >= 0 (NumPy's seed sequences take no negative entropy)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


def _check_ids(values: Sequence[int], name: str) -> np.ndarray:
    """`values` as a 1-D int64 array; floats must hold whole numbers (no silent truncation)."""
    try:
        arr = np.asarray(values.tolist() if isinstance(values, torch.Tensor) else values)
    except ValueError as e:  # ragged nesting
        raise ValueError(f"{name} must be a 1-D sequence of ints: {e}") from e
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of ints, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name} must hold whole numbers, got {arr[i]!r} at index {i}")
    elif arr.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be a 1-D sequence of ints, got {arr.dtype} values such as {arr[0]!r}"
        )
    return arr.astype(np.int64)


class RandomMultipleGallerySampler(torch.utils.data.Sampler[int]):
    """Yields ``num_ids * num_instances`` dataset indices, grouped K by K per identity, in a
    random identity order; use a batch size of P * K to get P identities per batch."""

    def __init__(
        self, pids: Sequence[int], camids: Sequence[int], num_instances: int = 4, seed: int = 0
    ) -> None:
        pids_arr = _check_ids(pids, "pids")
        camids_arr = _check_ids(camids, "camids")
        if len(pids_arr) != len(camids_arr):
            raise ValueError(
                f"pids and camids must have the same length, got {len(pids_arr)} and "
                f"{len(camids_arr)}"
            )
        if (
            isinstance(num_instances, bool)
            or not isinstance(num_instances, int)
            or num_instances < 1
        ):
            raise ValueError(f"num_instances must be an int >= 1, got {num_instances!r}")
        self.num_instances = num_instances
        self.seed = _check_seed(seed, "seed")
        self.epoch = 0
        self.pids = pids_arr
        self.camids = camids_arr
        index_of: dict[int, list[int]] = {}
        for i, p in enumerate(self.pids.tolist()):
            if p >= 0:
                index_of.setdefault(p, []).append(i)
        if not index_of:
            raise ValueError("pids has no identity >= 0 to sample")
        self.identities = sorted(index_of)
        self.index_of = {p: np.asarray(v, np.int64) for p, v in index_of.items()}

    @classmethod
    def from_samples(
        cls, samples, num_instances: int = 4, seed: int = 0
    ) -> RandomMultipleGallerySampler:
        """Build from (path, pid, camid) samples."""
        return cls([s[1] for s in samples], [s[2] for s in samples], num_instances, seed)

    def set_epoch(self, epoch: int) -> None:
        """Change the random stream (call once per epoch); `epoch` is an int >= 0."""
        self.epoch = _check_seed(epoch, "epoch")

    def __len__(self) -> int:
        return len(self.identities) * self.num_instances

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        K = self.num_instances
        out: list[int] = []
        for pid in (self.identities[i] for i in rng.permutation(len(self.identities))):
            idx = self.index_of[pid]
            anchor = int(idx[rng.integers(len(idx))])
            rest = idx[idx != anchor]
            other = rest[self.camids[rest] != self.camids[anchor]]
            same = rest[self.camids[rest] == self.camids[anchor]]
            need = K - 1
            pick: list[int] = []
            if need > 0:
                take = rng.permutation(other)[:need].tolist()
                pick += take
                if len(pick) < need:
                    pick += rng.permutation(same)[: need - len(pick)].tolist()
                if len(pick) < need:  # too few images: repeat, other cameras first
                    pool = other if len(other) else (same if len(same) else np.array([anchor]))
                    pick += rng.choice(pool, size=need - len(pick), replace=True).tolist()
            out.append(anchor)
            out += [int(x) for x in pick]
        return iter(out)
