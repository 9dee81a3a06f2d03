"""The standard re-ID augmentation on tensors (no torchvision), per image or batched.

Train (SpCL / reid-strong-baseline order): resize (bicubic, 256x128) -> horizontal flip
(p 0.5) -> pad 10 with zeros + random crop -> ToTensor scaling to [0, 1] -> normalise with
ImageNet mean / std -> random erasing (p 0.5, area 2-40 %, aspect 0.3-3.3).
Test: resize -> normalise.

Every function accepts (C, H, W) or (B, C, H, W), uint8 (0-255) or float (0-1 before
``normalize``), and an optional ``torch.Generator``; batched calls draw each image's
parameters independently and apply them with vectorised indexing.

Note: SpCL's RandomErasing fills with the *unnormalised* ImageNet mean after normalisation
(a quirk); we fill with 0 after normalisation, which is the mean colour (``erase_value``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _batched(x: torch.Tensor, name: str = "images") -> tuple[torch.Tensor, bool]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() == 4:
        return x, False
    raise ValueError(f"{name} must be (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")


RESIZE_MODES = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")


def _check_prob(p: float, name: str = "p") -> float:
    """`p` as a float in [0, 1] (a probability)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def check_size(size: object, name: str = "size") -> tuple[int, int]:
    """`size` as (height, width) positive ints."""
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size)
        or min(size) < 1
    ):
        raise ValueError(f"{name} must be (height, width) ints >= 1, got {size!r}")
    return int(size[0]), int(size[1])


def _check_image_dtype(x: torch.Tensor, name: str = "images") -> None:
    """uint8 (0-255) or floating point (0-1): other integer types have no agreed range
    (a 16-bit image read as int32 would be clipped to white)."""
    if isinstance(x, torch.Tensor) and x.dtype != torch.uint8 and not x.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be uint8 (0-255) or floating point (0-1), got {x.dtype}; "
            "convert other integer images to uint8 first"
        )


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 -> float32 0-1 (float input is returned as float32)."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize to (H, W) with antialiasing; returns float32 in the input's range."""
    xb, single = _batched(x)
    size = check_size(size)
    if mode not in RESIZE_MODES:
        raise ValueError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
    if xb.shape[-2] < 1 or xb.shape[-1] < 1:
        raise ValueError(f"images must have height and width >= 1, got shape {tuple(x.shape)}")
    xb = xb.float()
    if tuple(xb.shape[-2:]) != tuple(size):
        smooth = mode in ("bilinear", "bicubic")  # the only modes that take these two
        extra = {"align_corners": False, "antialias": True} if smooth else {}
        xb = F.interpolate(xb, size=tuple(size), mode=mode, **extra)
        if x.dtype == torch.uint8:
            xb = xb.clamp_(0.0, 255.0)
    return xb[0] if single else xb


def hflip(
    x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Flip each image left-right with probability p."""
    xb, single = _batched(x)
    p = _check_prob(p)
    flip = torch.rand(xb.shape[0], generator=generator) < p  # (B,)
    if flip.any():
        xb = xb.clone()
        xb[flip] = xb[flip].flip(-1)
    return xb[0] if single else xb


def pad_crop(
    x: torch.Tensor, padding: int = 10, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad by ``padding`` on each side, then crop back to the input size at a random
    offset per image."""
    xb, single = _batched(x)
    if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    padding = int(padding)
    if padding == 0:
        return x
    B, C, H, W = xb.shape
    padded = F.pad(xb, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
    rows = oy[:, None] + torch.arange(H)[None, :]  # (B, H)
    cols = ox[:, None] + torch.arange(W)[None, :]  # (B, W)
    bi = torch.arange(B)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    out = out.permute(0, 3, 1, 2).contiguous()
    return out[0] if single else out


def normalize(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """(x - mean) / std per channel, on float input in [0, 1]. `mean` and `std` hold one
    finite value per channel, every std > 0."""
    xb, single = _batched(x)
    m = _channel_constants(mean, "mean", xb.shape[1])
    s = _channel_constants(std, "std", xb.shape[1])
    if not bool((s > 0).all()):
        raise ValueError(f"std must be > 0 for every channel, got {tuple(s.flatten().tolist())}")
    out = (xb.float() - m) / s
    return out[0] if single else out


def _channel_constants(values: object, name: str, channels: int) -> torch.Tensor:
    """Per-channel constants as a (1, C, 1, 1) float32 tensor, checked."""
    try:
        t = torch.as_tensor(values, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{name} must be {channels} numbers, got {values!r}") from e
    if t.dim() != 1 or t.numel() != channels:
        raise ValueError(
            f"{name} must hold one value per image channel (the images have {channels} "
            f"channel(s)), got {values!r}"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {values!r}")
    return t.view(1, -1, 1, 1)


def random_erasing(
    x: torch.Tensor,
    p: float = 0.5,
    area: tuple[float, float] = (0.02, 0.4),
    min_aspect: float = 0.3,
    value: float = 0.0,
    attempts: int = 10,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Erase one random rectangle (area fraction in ``area``, aspect in [min_aspect,
    1/min_aspect]) per image with probability p, filling it with ``value``.

    p in [0, 1]; area = (lo, hi) with 0 < lo <= hi <= 1; 0 < min_aspect <= 1; attempts >= 1.
    Returns float32 (also when no image is erased).
    """
    xb, single = _batched(x)
    p = _check_prob(p)
    if (
        not isinstance(area, (tuple, list))
        or len(area) != 2
        or not all(isinstance(a, numbers.Real) and not isinstance(a, bool) for a in area)
        or not 0.0 < area[0] <= area[1] <= 1.0
    ):
        raise ValueError(f"area must be (lo, hi) fractions with 0 < lo <= hi <= 1, got {area!r}")
    if (
        isinstance(min_aspect, bool)
        or not isinstance(min_aspect, numbers.Real)
        or not 0.0 < min_aspect <= 1.0
    ):
        raise ValueError(f"min_aspect must be in (0, 1], got {min_aspect!r}")
    if isinstance(attempts, bool) or not isinstance(attempts, numbers.Integral) or attempts < 1:
        raise ValueError(f"attempts must be an int >= 1, got {attempts!r}")
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ValueError(f"value must be a number, got {value!r}")
    B, C, H, W = xb.shape
    do = torch.rand(B, generator=generator) < p
    if not do.any():
        return x.float()  # the same dtype as when a rectangle is erased
    frac = torch.empty(B, attempts).uniform_(float(area[0]), float(area[1]), generator=generator)
    log_r = torch.empty(B, attempts).uniform_(
        math.log(min_aspect), -math.log(min_aspect), generator=generator
    )
    r = log_r.exp()
    h = (frac * H * W * r).sqrt().round().long()
    w = (frac * H * W / r).sqrt().round().long()
    ok = (h < H) & (w < W) & (h > 0) & (w > 0)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((B,), -1))
    do = do & (first >= 0)
    sel = first.clamp(min=0)
    hh = h[torch.arange(B), sel]
    ww = w[torch.arange(B), sel]
    y0 = (torch.rand(B, generator=generator) * (H - hh + 1).float()).long()
    x0 = (torch.rand(B, generator=generator) * (W - ww + 1).float()).long()
    ys = torch.arange(H)[None, :]
    xs = torch.arange(W)[None, :]
    my = (ys >= y0[:, None]) & (ys < (y0 + hh)[:, None])  # (B, H)
    mx = (xs >= x0[:, None]) & (xs < (x0 + ww)[:, None])  # (B, W)
    mask = (my[:, :, None] & mx[:, None, :] & do[:, None, None])[:, None]  # (B, 1, H, W)
    out = xb.float().masked_fill(mask, float(value))
    return out[0] if single else out


@dataclass
class TrainTransform:
    """Resize, flip, pad + crop, normalise, erase; call on (3, H, W) or (B, 3, H, W)."""

    size: tuple[int, int] = (256, 128)
    flip_p: float = 0.5
    padding: int = 10
    erase_p: float = 0.5
    erase_value: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        # checked here so that the errors name the fields, not hflip's / random_erasing's `p`
        _check_prob(self.flip_p, "flip_p")
        _check_prob(self.erase_p, "erase_p")
        check_size(self.size)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_image_dtype(x)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got "
                            f"{type(generator).__name__}")
        scale = 255.0 if x.dtype == torch.uint8 else 1.0
        y = resize(x, self.size, self.interpolation) / scale
        y = y.clamp_(0.0, 1.0)
        y = hflip(y, self.flip_p, generator)
        y = pad_crop(y, self.padding, generator)
        y = normalize(y, self.mean, self.std)
        return random_erasing(y, self.erase_p, value=self.erase_value, generator=generator)


@dataclass
class EvalTransform:
    """Resize and normalise; call on (3, H, W) or (B, 3, H, W)."""

    size: tuple[int, int] = (256, 128)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_image_dtype(x)
        scale = 255.0 if x.dtype == torch.uint8 else 1.0
        y = (resize(x, self.size, self.interpolation) / scale).clamp_(0.0, 1.0)
        return normalize(y, self.mean, self.std)
