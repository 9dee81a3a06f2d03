"""Images of the two domains for translator training, and the fingerprints of input lists.

A domain is a dataset root (any layout `smcr.data.read_dataset` opens) or a `ReidDataset`;
the translator trains on its `train` list. Images are decoded once, resized (bicubic,
antialiased) to `load_scale * image_size` and kept as a (N, 3, H, W) uint8 tensor; each
batch is then randomly cropped to `image_size`, flipped and scaled to [-1, 1].
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from smcr.data import ReidDataset, ReidSample, load_image, read_dataset, resize

from .config import TranslateError

__all__ = [
    "Domain",
    "augment_batch",
    "center_batch",
    "load_domain",
    "load_images",
    "load_size",
    "samples_fingerprint",
    "train_samples",
    "to_uint8",
]


@dataclass
class Domain:
    """One domain's training images.

    name: dataset name; root: its root folder; samples: the train list (pids relabelled
    0..K-1); images: (N, 3, Hl, Wl) uint8 at the load size; labels: (N,) int64 pids.
    """

    name: str
    root: Path
    samples: list[ReidSample]
    images: torch.Tensor
    labels: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def __len__(self) -> int:
        return len(self.samples)


def load_size(image_size: tuple[int, int], load_scale: float) -> tuple[int, int]:
    """(H, W) images are stored at before the random crop to `image_size`."""
    return tuple(int(round(s * load_scale)) for s in image_size)  # type: ignore[return-value]


def as_dataset(data: str | os.PathLike | ReidDataset, what: str = "data") -> ReidDataset:
    """`data` itself, or the dataset at that root (`read_dataset`, auto layout)."""
    if isinstance(data, ReidDataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        return read_dataset(data)
    raise TypeError(f"{what} must be a dataset root or a ReidDataset, got {type(data).__name__}")


class _Decode(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[str], size: tuple[int, int]) -> None:
        self.paths, self.size = list(paths), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = resize(load_image(self.paths[i]), self.size)  # (3, H, W) float 0-255
        return img.round_().clamp_(0, 255).to(torch.uint8)


def load_images(
    paths: Sequence[str], size: tuple[int, int], num_workers: int = 0, batch_size: int = 64
) -> torch.Tensor:
    """Decode and resize images to (N, 3, H, W) uint8 (bicubic, antialiased)."""
    if len(paths) == 0:
        return torch.zeros((0, 3, *size), dtype=torch.uint8)
    loader = torch.utils.data.DataLoader(
        _Decode(paths, size), batch_size=batch_size, num_workers=num_workers
    )
    return torch.cat(list(loader), 0)


def train_samples(
    data: str | os.PathLike | ReidDataset, max_images: int | None = None, what: str = "data"
) -> tuple[ReidDataset, list[ReidSample]]:
    """The dataset and its `train` list (optionally the first `max_images`), not loaded."""
    ds = as_dataset(data, what)
    samples = list(ds.train)
    if max_images is not None:
        if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
            raise TranslateError(f"max_images must be None or an int >= 1, got {max_images!r}")
        samples = samples[:max_images]
    if not samples:
        raise TranslateError(f"{what}: {ds.root} has no training images")
    return ds, samples


def load_domain(
    data: str | os.PathLike | ReidDataset,
    image_size: tuple[int, int],
    load_scale: float = 1.0,
    max_images: int | None = None,
    num_workers: int = 0,
    what: str = "data",
) -> Domain:
    """The `train` images of `data` (optionally its first `max_images`), loaded for training."""
    ds, samples = train_samples(data, max_images, what)
    images = load_images([s.path for s in samples], load_size(image_size, load_scale), num_workers)
    labels = torch.tensor([s.pid for s in samples], dtype=torch.int64)
    # relabel 0..K-1 in case of a subset (max_images) or a dataset read without relabelling
    _, labels = torch.unique(labels, return_inverse=True)
    return Domain(ds.name, Path(ds.root), samples, images, labels)


def samples_fingerprint(samples: Sequence[ReidSample], root: str | os.PathLike) -> str:
    """SHA-256 of the list as given: (path relative to root, pid, camid, file size) per line.

    Cheap (one stat per file) and independent of where the dataset lies; a change of any
    image's bytes that keeps its size is not seen (the content hash would read every image).
    """
    root = Path(root).resolve()
    h = hashlib.sha256()
    for s in samples:
        p = Path(s.path)
        try:
            rel = p.resolve().relative_to(root).as_posix()
        except ValueError:
            rel = p.resolve().as_posix()
        size = p.stat().st_size if p.is_file() else -1
        h.update(f"{rel}\t{s.pid}\t{s.camid}\t{size}\n".encode())
    return h.hexdigest()


def augment_batch(
    images: torch.Tensor,
    image_size: tuple[int, int],
    flip: bool,
    generator: torch.Generator,
) -> torch.Tensor:
    """(B, 3, Hl, Wl) uint8 -> (B, 3, H, W) float in [-1, 1]: random crop to `image_size`
    (when stored larger) and random horizontal flip, drawn per image from `generator`."""
    B, _, Hl, Wl = images.shape
    H, W = image_size
    x = images.float().div_(127.5).sub_(1.0)
    if (Hl, Wl) != (H, W):
        oy = torch.randint(0, Hl - H + 1, (B,), generator=generator)
        ox = torch.randint(0, Wl - W + 1, (B,), generator=generator)
        x = torch.stack([x[i, :, oy[i] : oy[i] + H, ox[i] : ox[i] + W] for i in range(B)])
    if flip:
        f = torch.rand(B, generator=generator) < 0.5  # (B,)
        if f.any():
            x[f] = x[f].flip(-1)
    return x


def center_batch(images: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, Hl, Wl) uint8 -> (B, 3, H, W) float in [-1, 1], centre crop, no flip."""
    _, _, Hl, Wl = images.shape
    H, W = image_size
    y0, x0 = (Hl - H) // 2, (Wl - W) // 2
    return images[:, :, y0 : y0 + H, x0 : x0 + W].float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> uint8 0-255 (same shape, on the CPU)."""
    return ((x.detach().float().cpu() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
