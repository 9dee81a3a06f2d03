"""A torch ``Dataset`` over re-ID samples returning ``(image, pid, camid, index)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import CorruptImageError, DatasetNotFoundError
from .readers import ReidSample


def load_image(path: str) -> torch.Tensor:
    """Decode ``path`` into a (3, H, W) uint8 tensor (RGB)."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except FileNotFoundError as e:
        raise DatasetNotFoundError(f"{path}: image file does not exist") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise CorruptImageError(f"{path}: cannot decode image (expected JPEG/PNG/BMP): {e}") from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()  # (3, H, W)


def verify_images(samples: Sequence[ReidSample]) -> int:
    """Fully decode every image; raise :class:`CorruptImageError` naming the first bad one."""
    for s in samples:
        load_image(s.path)
    return len(samples)


class ReidImageDataset(torch.utils.data.Dataset):
    """Images of a list of :class:`ReidSample`.

    ``__getitem__(i)`` returns ``(image, pid, camid, i)``: the image is the (3, H, W) uint8
    tensor passed through ``transform`` when one is given (see smcr.data.transforms). The
    explicit index lets memory banks address features by dataset position.
    """

    def __init__(
        self,
        samples: Sequence[ReidSample],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if len(samples) == 0:
            raise ValueError("samples must not be empty")
        for s in samples[:1]:
            if not isinstance(s, tuple) or len(s) != 3:
                raise TypeError(f"samples must be (path, pid, camid) tuples, got {s!r}")
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, pid, camid = self.samples[index]
        img = load_image(path)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(pid), int(camid), int(index)

    @property
    def pids(self) -> list[int]:
        """Identity of every sample."""
        return [s[1] for s in self.samples]

    @property
    def camids(self) -> list[int]:
        """0-based camera of every sample."""
        return [s[2] for s in self.samples]
