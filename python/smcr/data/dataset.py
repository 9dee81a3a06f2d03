"""A torch ``Dataset`` over re-ID samples returning ``(image, pid, camid, index)``."""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import CorruptImageError, DatasetNotFoundError
from .readers import ReidSample


def _to_8bit(im: Image.Image) -> Image.Image:
    """An 'L' image of a single-band 16-bit ('I;16*'), 32-bit integer ('I') or float
    ('F') image, scaled instead of clipped (PIL's convert("RGB") clips at 255, which
    turns a 16-bit photo almost all white).

    I;16: value / 257 (0..65535 -> 0..255). I: the same when every value fits 16 bits
    (how PIL opens some 16-bit files), else min..max -> 0..255. F: 0..1 -> 0..255 when it
    fits, else min..max -> 0..255.
    """
    arr = np.asarray(im).astype(np.float64)  # (H, W)
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if im.mode.startswith("I;16") or (im.mode == "I" and lo >= 0 and hi <= 65535):
        scaled = arr / 257.0
    elif im.mode == "F" and lo >= 0 and hi <= 1:
        scaled = arr * 255.0
    else:
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully into an RGB PIL image: the one image reader of the package.

    16-bit and 32-bit single-band images are scaled to 8 bits (see ``_to_8bit``). Raises
    :class:`DatasetNotFoundError` for a missing file and :class:`CorruptImageError` for
    one that does not decode (truncated, not an image), both naming the file.
    """
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated file fails here, inside this handler
            if im.mode.startswith("I") or im.mode == "F":
                return _to_8bit(im).convert("RGB")
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise DatasetNotFoundError(f"{os.fspath(path)}: image file does not exist") from e
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        SyntaxError,
        ValueError,
    ) as e:
        raise CorruptImageError(
            f"{os.fspath(path)}: cannot decode image (expected JPEG/PNG/BMP): {e}"
        ) from e


def load_image(path: str) -> torch.Tensor:
    """Decode ``path`` into a (3, H, W) uint8 tensor (RGB), see :func:`open_rgb`."""
    arr = np.asarray(open_rgb(path))  # (H, W, 3)
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
        try:  # ints, NumPy ints and 0-d integer tensors; not bools, floats or slices
            if isinstance(index, bool):
                raise TypeError
            index = operator.index(index)
        except TypeError:
            raise TypeError(f"index must be an int, got {type(index).__name__} {index!r}") from None
        try:  # a negative index returns its dataset position, as memory banks address rows
            index = range(len(self.samples))[index]
        except IndexError:
            raise IndexError(
                f"index {index} is out of range for a dataset of {len(self.samples)} images"
            ) from None
        path, pid, camid = self.samples[index]
        img = load_image(path)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(pid), int(camid), index

    @property
    def pids(self) -> list[int]:
        """Identity of every sample."""
        return [s[1] for s in self.samples]

    @property
    def camids(self) -> list[int]:
        """0-based camera of every sample."""
        return [s[2] for s in self.samples]
