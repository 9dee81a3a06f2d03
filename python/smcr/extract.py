"""Feature extraction: a model (or checkpoint) over images, a folder or a dataset.

    result = smcr.extract(model_or_checkpoint, data, batch_size=128, device="cuda")
    result.names      # list[str], one per image, in input order
    result.features   # (N, D) float32 embeddings (unit rows for a ReIDModel)

`data` may be
  * a (N, 3, H, W) float tensor of normalised images;
  * a folder (str or Path) of images, read with PIL in sorted file-name order, resized to
    `image_size` (bicubic, as SpCL's test transform) and ImageNet-normalised; by default
    the size a checkpoint records (when `model` is a checkpoint path), else 256 x 128;
  * any map-style dataset whose items are `(image_tensor, ...)` tuples (or bare tensors):
    the first `str` among an item's other fields is its name (else its index), and the
    other fields are returned per item in `result.meta` (e.g. pids and camids).
On a GPU, inference runs under bf16 autocast in channels-last memory format by default.
Under torch.distributed (initialised, world size > 1) each rank extracts a contiguous
shard and every rank receives the whole result in input order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.transforms import check_size

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "IMAGE_EXTENSIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ExtractResult",
    "ImageFolder",
    "checkpoint_image_size",
    "extract",
    "list_images",
    "load_image",
    "load_model_checkpoint",
    "resolve_device",
    "resolve_model",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_SIZE = (256, 128)  # (height, width) when nothing records one
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class ExtractResult:
    """names: N strings; features: (N, D) float32; meta: N tuples of the dataset items'
    other fields (empty tuples for tensors and folders)."""

    names: list[str]
    features: torch.Tensor
    meta: list[tuple]

    def __len__(self) -> int:
        return len(self.names)


def _check_size(image_size: Any) -> tuple[int, int]:
    return check_size(image_size, "image_size")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside `folder`, sorted by name."""
    root = Path(folder)
    if root.is_file():
        raise ValueError(
            f"{os.fspath(folder)!r} is a file, not a folder of images; give the folder "
            "that holds it"
        )
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {os.fspath(folder)!r}")
    files = sorted(
        (p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
        key=lambda p: p.name,
    )
    if not files:
        subdirs = sum(1 for p in root.iterdir() if p.is_dir())
        nested = (
            f"; it has {subdirs} subfolder(s), which are not searched: give the folder that "
            "holds the images"
            if subdirs
            else ""
        )
        raise ValueError(
            f"folder {os.fspath(folder)!r} holds no image ({', '.join(IMAGE_EXTENSIONS)})" + nested
        )
    return files


def load_image(path: str | os.PathLike, image_size: tuple[int, int] = (256, 128)) -> torch.Tensor:
    """(3, H, W) float32 image: RGB, bicubic resize to image_size, ImageNet-normalised.
    Decoded by `smcr.data.open_rgb` (16/32-bit images scaled to 8 bits; an undecodable
    file raises CorruptImageError naming it)."""
    from PIL import Image

    from .data.dataset import open_rgb

    h, w = _check_size(image_size)
    im = open_rgb(path).resize((w, h), Image.BICUBIC)
    arr = np.asarray(im, dtype=np.float32) / 255.0  # (H, W, 3)
    x = torch.from_numpy(arr).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


class ImageFolder(torch.utils.data.Dataset):
    """Items (image (3, H, W), file name) of the images directly inside `root`, sorted."""

    def __init__(self, root: str | os.PathLike, image_size: tuple[int, int] = (256, 128)) -> None:
        self.paths = list_images(root)
        self.image_size = _check_size(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        return load_image(self.paths[i], self.image_size), self.paths[i].name


class _TensorImages(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        return self.images[i], str(i)


def resolve_device(device: str | torch.device | None, name: str = "device") -> torch.device:
    """`device` checked: cpu, cuda or cuda:N (N < the number of GPUs); None or "auto" give
    CUDA when available and CPU otherwise. Anything else is a ValueError naming `name`
    (the argument or option the value came from)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    expected = "auto, cpu, cuda or cuda:N"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{name} must be {expected}, got {device!r}") from e
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(
            f"{name} must be {expected} (smcr runs on CPUs and CUDA GPUs), got {device!r}"
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} is {device!r} but CUDA is not available on this machine")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"{name} is {device!r} but this machine has {n} CUDA device(s)")
    return dev


def load_model_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """The ReIDModel of an smcr checkpoint and its other entries (e.g. "image_size",
    "alpha"), read in one load: :func:`smcr.models.weights.load_checkpoint_with_extras`."""
    from .models.weights import load_checkpoint_with_extras

    return load_checkpoint_with_extras(path)


def checkpoint_image_size(
    extras: dict[str, Any], path: Any = "checkpoint"
) -> tuple[int, int] | None:
    """The (height, width) a checkpoint records as "image_size", or None if it records
    none (checkpoints written before the entry existed)."""
    size = extras.get("image_size")
    if size is None:
        return None
    try:
        return _check_size(tuple(int(v) for v in size) if isinstance(size, (list, tuple)) else size)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"checkpoint {os.fspath(path)!r} records a bad image_size {size!r}; "
            "expected [height, width]"
        ) from e


def resolve_model(model: nn.Module | str | os.PathLike) -> nn.Module:
    """A module as is, or the ReIDModel of an smcr checkpoint file."""
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model_checkpoint(model)[0]
    raise TypeError(
        f"model must be a torch.nn.Module or a checkpoint path, got {type(model).__name__}"
    )


def resolve_model_and_size(
    model: nn.Module | str | os.PathLike, image_size: Any = None
) -> tuple[nn.Module, tuple[int, int]]:
    """The module (see :func:`resolve_model`) and the (height, width) to feed it: `image_size`
    when given, else the size a checkpoint path records, else DEFAULT_IMAGE_SIZE."""
    size = None if image_size is None else _check_size(image_size)
    if isinstance(model, (str, os.PathLike)):
        net, extras = load_model_checkpoint(model)
        if size is None:
            size = checkpoint_image_size(extras, model)
    else:
        net = resolve_model(model)
    return net, size if size is not None else DEFAULT_IMAGE_SIZE


def _as_dataset(data: Any, image_size: tuple[int, int]) -> torch.utils.data.Dataset:
    if isinstance(data, torch.Tensor):
        if data.dim() != 4 or data.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(data.shape)}")
        if not data.dtype.is_floating_point:
            raise TypeError(f"images must be a normalised floating-point tensor, got {data.dtype}")
        return _TensorImages(data)
    if isinstance(data, (str, os.PathLike)):
        return ImageFolder(data, image_size)
    if isinstance(data, Mapping):
        raise TypeError(
            "data must be an (N, 3, H, W) tensor, a folder path or a map-style dataset "
            f"indexed 0..N-1, got a {type(data).__name__}"
        )
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        return data
    raise TypeError(
        "data must be an (N, 3, H, W) tensor, a folder path or a map-style dataset of "
        f"(image, ...) items, got {type(data).__name__}"
    )


def _collate(items: Sequence[Any]) -> tuple[torch.Tensor, list[tuple]]:
    images, rest = [], []
    for it in items:
        if isinstance(it, torch.Tensor):
            img, other = it, ()
        elif isinstance(it, (tuple, list)) and it and isinstance(it[0], torch.Tensor):
            img, other = it[0], tuple(it[1:])
        else:
            raise TypeError(
                f"dataset items must be (image_tensor, ...) tuples or tensors, got {type(it).__name__}"
            )
        images.append(img)
        rest.append(other)
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(
            f"dataset images must all be (3, H, W) of one size, got shapes {sorted(shapes)}"
        )
    return torch.stack(images), rest


def _name_of(index: int, other: tuple) -> str:
    for v in other:
        if isinstance(v, str):
            return v
    return str(index)


def _dist_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@torch.no_grad()
def extract(
    model: nn.Module | str | os.PathLike,
    data: Any,
    *,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    flip: bool = False,
    amp: bool | None = None,
    channels_last: bool | None = None,
    normalize: bool = True,
    image_size: tuple[int, int] | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> ExtractResult:
    """Embeddings of every image of `data` (see the module docstring for what it may be).

    Args:
        model: an nn.Module mapping (B, 3, H, W) to (B, D), or an smcr checkpoint path.
        batch_size: images per forward pass.
        device: where to run (default CUDA if available, else CPU).
        flip: average the embeddings of each image and its horizontal mirror.
        amp: bf16 autocast (default: on for CUDA, off for CPU).
        channels_last: channels-last memory format (default: on for CUDA).
        normalize: L2-normalise the returned rows.
        image_size: (height, width) for images read from a folder; None: the size the
            checkpoint records when `model` is a checkpoint path (the size it was trained
            at), else DEFAULT_IMAGE_SIZE (256 x 128).
        num_workers: DataLoader worker processes.
        progress: show a tqdm bar.

    Returns:
        ExtractResult(names, features (N, D) float32 on CPU, meta). The model is moved to
        `device` (and to channels-last when that is on) and left in the train/eval mode
        it came in.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    dev = resolve_device(device)
    net, image_size = resolve_model_and_size(model, image_size)
    dataset = _as_dataset(data, image_size)
    n = len(dataset)
    if n == 0:
        raise ValueError("data holds no image")
    use_amp = (dev.type == "cuda") if amp is None else bool(amp)
    use_cl = (dev.type == "cuda") if channels_last is None else bool(channels_last)

    rank, world = _dist_world()
    lo, hi = rank * n // world, (rank + 1) * n // world
    shard = torch.utils.data.Subset(dataset, range(lo, hi)) if world > 1 else dataset
    loader = torch.utils.data.DataLoader(
        shard,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=dev.type == "cuda",
    )
    was_training = net.training
    net.eval()
    if next(iter(net.parameters()), torch.empty(0)).device != dev:
        net.to(dev)
    if use_cl:
        net.to(memory_format=torch.channels_last)
    # images go in the network's floating dtype (a float64 or half network, or half images)
    in_dtype = next((t.dtype for t in net.parameters() if t.is_floating_point()), None)
    feats: list[torch.Tensor] = []
    meta: list[tuple] = []
    it = loader
    if progress:
        from tqdm import tqdm

        it = tqdm(loader, desc="extract", unit="batch")
    try:
        for images, other in it:
            x = images.to(dev, non_blocking=True)
            if in_dtype is not None and x.is_floating_point() and x.dtype != in_dtype:
                x = x.to(in_dtype)
            if use_cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                f = _features(net(x))
                if flip:
                    f = (f + _features(net(torch.flip(x, dims=[3])))) / 2
            if f.dim() != 2 or f.shape[0] != x.shape[0]:
                raise ValueError(f"model must return (B, D) features, got shape {tuple(f.shape)}")
            feats.append(f.cpu())
            meta.extend(other)
    finally:
        net.train(was_training)
    features = torch.cat(feats) if feats else torch.empty(0, 0)
    if world > 1:
        features, meta = _gather(features, meta, hi - lo, dev)
    if normalize:
        features = F.normalize(features, dim=1)
    names = [_name_of(i, m) for i, m in enumerate(meta)]
    return ExtractResult(names=names, features=features, meta=meta)


def _features(out: Any) -> torch.Tensor:
    """A model's output as float32 features; anything but a tensor is a TypeError."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"model must return a (B, D) tensor of features, got {type(out).__name__}")
    return out.float()


def _gather(
    features: torch.Tensor, meta: list[tuple], count: int, dev: torch.device
) -> tuple[torch.Tensor, list[tuple]]:
    """Concatenate every rank's shard in rank order (shards are contiguous, in order)."""
    dist = torch.distributed
    world = dist.get_world_size()
    comm_dev = dev if dist.get_backend() == "nccl" else torch.device("cpu")
    sizes = [torch.zeros(2, dtype=torch.int64, device=comm_dev) for _ in range(world)]
    dim = features.shape[1] if features.numel() else 0
    dist.all_gather(sizes, torch.tensor([count, dim], device=comm_dev))
    max_n = int(max(int(s[0]) for s in sizes))
    dim = int(max(int(s[1]) for s in sizes))
    padded = torch.zeros(max_n, dim, dtype=torch.float32, device=comm_dev)
    if count:
        padded[:count] = features.to(comm_dev)
    chunks = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded)
    metas: list[list[tuple]] = [[] for _ in range(world)]
    dist.all_gather_object(metas, meta)
    out = torch.cat([c[: int(s[0])].cpu() for c, s in zip(chunks, sizes, strict=True)])
    return out, [m for part in metas for m in part]
