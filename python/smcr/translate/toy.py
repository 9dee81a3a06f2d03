"""Toy domains for tests and demos: the same kind of images in two colour styles.

Each identity is a smooth random colour field (a coarse random grid, bilinearly upsampled);
its images add small per-image noise and a random shift. Domain B applies a known colour
transform to its own (different) identities, so a translator must learn the transform
without ever seeing a pair. Written in the Market-1501 layout (PNG, names
`0001_c1s1_000000_00.png`), which `smcr.data.read_dataset` opens.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["colour_stats", "make_toy_domain", "toy_colour_transform"]

_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def toy_colour_transform(x: np.ndarray) -> np.ndarray:
    """The known transform of domain B on (..., 3) RGB floats in [0, 1]: channels rotated
    (R <- B, G <- R, B <- G), contrast halved and a warm cast added."""
    y = 0.5 * x[..., [2, 0, 1]] + np.array([0.45, 0.05, 0.30], np.float32)
    return np.clip(y, 0.0, 1.0)


def make_toy_domain(
    root: str | os.PathLike,
    num_ids: int = 8,
    images_per_id: int = 6,
    size: tuple[int, int] = (32, 16),
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    seed: int = 0,
    test_ids: int = 2,
) -> Path:
    """Write a toy dataset of `num_ids` train identities and `test_ids` test identities
    (query: one image per camera 1, gallery: the rest from cameras 2-3) and return its root."""
    if num_ids < 1 or images_per_id < 2 or test_ids < 1:
        raise ValueError(
            f"need num_ids >= 1, images_per_id >= 2, test_ids >= 1, got {num_ids}, "
            f"{images_per_id}, {test_ids}"
        )
    rng = np.random.default_rng(seed)
    root = Path(root)
    for d in _DIRS.values():
        (root / d).mkdir(parents=True, exist_ok=True)
    H, W = size
    t_grid = torch.from_numpy
    for pid in range(1, num_ids + test_ids + 1):
        coarse = rng.uniform(0.1, 0.9, size=(1, 3, 4, 2)).astype(np.float32)
        base = (
            torch.nn.functional.interpolate(
                t_grid(coarse), size=(H, W), mode="bilinear", align_corners=False
            )[0]
            .permute(1, 2, 0)
            .numpy()
        )  # (H, W, 3)
        for k in range(images_per_id):
            img = np.roll(base, int(rng.integers(-2, 3)), axis=0)
            img = np.clip(img + rng.normal(0, 0.03, size=img.shape).astype(np.float32), 0, 1)
            if transform is not None:
                img = transform(img)
            u8 = (img * 255).round().astype(np.uint8)
            if pid <= num_ids:
                subset, cam = "train", 1 + k % 3
            elif k == 0:
                subset, cam = "query", 1
            else:
                subset, cam = "gallery", 2 + k % 2
            name = f"{pid:04d}_c{cam}s1_{k:06d}_00.png"
            Image.fromarray(u8).save(root / _DIRS[subset] / name)
    return root


def colour_stats(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) images (any range) -> (6,): per-channel mean, then per-channel std."""
    x = images.float().transpose(0, 1).reshape(3, -1)  # (3, N*H*W)
    return torch.cat((x.mean(1), x.std(1)))
