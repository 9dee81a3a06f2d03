"""Training data in memory: a domain's images decoded once at the network's input size,
identity (P x K) batch streams, and batched augmentation with seeded generators.

Every random draw of a training step comes from a generator seeded by (run seed, stage,
epoch, iteration, stream), so an epoch replays exactly after a resume.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import ReidDataset, ReidSample, open_rgb, read_dataset
from ..data.sampler import RandomMultipleGallerySampler
from ..data.transforms import EvalTransform, TrainTransform

__all__ = ["Domain", "PKStream", "load_domain", "load_split", "seeded", "align_to"]


def seeded(*key: int) -> torch.Generator:
    """A CPU generator seeded by a tuple of ints (stable across runs and platforms)."""
    h = hashlib.sha256(repr(tuple(int(k) for k in key)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(h[:8], "little") & ((1 << 63) - 1))


@dataclass
class Domain:
    """A set of images in memory. images: (N, 3, H, W) uint8 at the training size;
    pids: (N,) int64 (0..C-1 for a labelled train set, raw ids for query/gallery);
    camids: (N,) int64; names: N file names."""

    name: str
    images: torch.Tensor
    pids: torch.Tensor
    camids: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return int(self.pids.max()) + 1 if len(self) else 0

    def subset(self, idx: torch.Tensor, name: str | None = None) -> Domain:
        return Domain(name or self.name, self.images[idx], self.pids[idx], self.camids[idx],
                      [self.names[i] for i in idx.tolist()])


def _decode(path: str, size: tuple[int, int]) -> np.ndarray:
    im = open_rgb(path)  # CorruptImageError naming the file if it does not decode
    if im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def load_domain(samples: list[ReidSample], size: tuple[int, int], name: str) -> Domain:
    """Decode `samples` (path, pid, camid) at `size` (H, W) with a thread pool."""
    if not samples:
        raise ValueError(f"domain {name!r} has no images")
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        arrays = list(pool.map(lambda s: _decode(s.path, size), samples))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
    return Domain(
        name,
        images,
        torch.tensor([s.pid for s in samples], dtype=torch.int64),
        torch.tensor([s.camid for s in samples], dtype=torch.int64),
        [Path(s.path).name for s in samples],
    )


def load_split(root: str | os.PathLike, fmt: str, size: tuple[int, int], name: str
               ) -> tuple[ReidDataset, Domain, Domain, Domain]:
    """(dataset, train, query, gallery) of a dataset root; train ids relabelled 0..C-1."""
    ds = read_dataset(root, fmt)
    return (
        ds,
        load_domain(ds.train, size, f"{name}/train"),
        load_domain(ds.query, size, f"{name}/query"),
        load_domain(ds.gallery, size, f"{name}/gallery"),
    )


def align_to(reference: Domain, other: Domain) -> Domain:
    """`other` reordered to `reference`'s file names (a translated copy of the same set)."""
    pos = {n: i for i, n in enumerate(other.names)}
    missing = [n for n in reference.names if n not in pos]
    if missing:
        raise ValueError(
            f"{other.name} lacks {len(missing)} images of {reference.name} (e.g. {missing[0]}); "
            "is it a translation of the same dataset?"
        )
    idx = torch.tensor([pos[n] for n in reference.names], dtype=torch.int64)
    out = other.subset(idx)
    out.pids = reference.pids.clone()  # the translation keeps the labels
    out.camids = reference.camids.clone()
    return out


class PKStream:
    """Endless P x K batches of dataset indices for given labels (SpCL's identity sampler,
    restarted when exhausted); deterministic for (seed, epoch)."""

    def __init__(self, labels: torch.Tensor, camids: torch.Tensor, batch: int, num_instances: int,
                 seed: int, epoch: int) -> None:
        self.sampler = RandomMultipleGallerySampler(
            labels.tolist(), camids.tolist(), num_instances=num_instances,
            seed=int(seeded(seed, epoch).initial_seed() % (1 << 31)),
        )
        self.batch = batch
        self.epoch = epoch
        self._pass = 0
        self._buf: list[int] = []

    def next(self) -> torch.Tensor:
        while len(self._buf) < self.batch:
            self.sampler.set_epoch(self._pass)
            self._pass += 1
            self._buf.extend(iter(self.sampler))
        out, self._buf = self._buf[: self.batch], self._buf[self.batch :]
        return torch.tensor(out, dtype=torch.int64)


def augment(images: torch.Tensor, size: tuple[int, int], generator: torch.Generator,
            device: torch.device) -> torch.Tensor:
    """SpCL's training augmentation on a uint8 batch, on `device`."""
    x = TrainTransform(size=tuple(size))(images, generator=generator)  # uint8 in
    return x.to(device, non_blocking=True)


def eval_batches(domain: Domain, size: tuple[int, int], batch: int, device: torch.device):
    """Normalised (B, 3, H, W) batches of a domain, in order."""
    tf = EvalTransform(size=tuple(size))
    for s in range(0, len(domain), batch):
        yield tf(domain.images[s : s + batch]).to(device, non_blocking=True)
