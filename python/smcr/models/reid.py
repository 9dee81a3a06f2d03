"""The re-ID network: ResNet trunk, GeM or average pooling, BN neck, L2-normalised embedding.

    f_pool = pool(trunk(x))                (B, C)   GeM: (mean x^p)^(1/p), p learnable
    f_neck = BatchNorm1d(f_pool)           (B, C)   BNNeck; its bias is frozen at 0
    embedding = f_neck / |f_neck|          (B, C)   what `forward` returns and what is ranked
    logits = W f_neck                      (B, K)   only with num_classes > 0, no bias

This is SpCL's `ResNet`/`ResNetIBN` with `num_features=0` (spcl/models/resnet*.py) and the
usual strong-baseline head (Luo et al., 2019).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .dsbn import convert_dsbn
from .resnet import ARCHS, ResNet, resnet

__all__ = ["GeM", "ModelConfig", "ReIDModel", "ReIDOutput", "build_model"]

POOLINGS = ("avg", "gem")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class ModelConfig:
    """Everything that defines a re-ID network's shape (stored in checkpoints).

    arch: one of resnet18, resnet34, resnet50 and their `_ibn_a` versions.
    pooling: "avg" (SpCL) or "gem"; gem_p: GeM's initial exponent (learnable).
    last_stride: stride of layer4 (1 for re-ID, 2 as in ImageNet).
    width: channel multiplier (1.0 = the published network; 0.125 makes a CPU-sized one).
    num_classes: size of the optional identity classifier (0 = none).
    dsbn: domain-specific BN (source and target halves of a training batch).
    """

    arch: str = "resnet50_ibn_a"
    pooling: str = "avg"
    gem_p: float = 3.0
    last_stride: int = 1
    width: float = 1.0
    num_classes: int = 0
    dsbn: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {self.arch!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not (_is_number(self.gem_p) and math.isfinite(self.gem_p) and self.gem_p > 0):
            raise ValueError(f"gem_p must be a finite number > 0, got {self.gem_p!r}")
        if (
            isinstance(self.last_stride, bool)
            or self.last_stride not in (1, 2)
            or not isinstance(self.last_stride, int)
        ):
            raise ValueError(f"last_stride must be the int 1 or 2, got {self.last_stride!r}")
        if not (_is_number(self.width) and math.isfinite(self.width) and self.width > 0):
            raise ValueError(f"width must be a finite number > 0, got {self.width!r}")
        if not isinstance(self.dsbn, bool):
            raise ValueError(f"dsbn must be True or False, got {self.dsbn!r}")
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, int)
            or (self.num_classes < 0)
        ):
            raise ValueError(f"num_classes must be an int >= 0, got {self.num_classes!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """A config from a dict of its fields (missing ones take their defaults)."""
        if not isinstance(d, dict):
            raise TypeError(f"model config must be a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GeM(nn.Module):
    """Generalized-mean pooling (Radenovic et al., 2018): (B, C, H, W) -> (B, C)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise ValueError(f"x must be a (B, C, H, W) floating-point feature map, got "
                             f"{getattr(x, 'dtype', type(x).__name__)} of shape "
                             f"{tuple(getattr(x, 'shape', ()))}")
        # float16 / bfloat16 maps are pooled in float32: in float16, eps ** p (1e-18)
        # underflows to 0, the mean of a channel can be 0 and the gradient of mean ** (1/p)
        # there, hence of p, is inf/NaN (CPU autocast leaves pow in float16; CUDA's runs it
        # in float32, as here)
        low = x.dtype in (torch.float16, torch.bfloat16)
        xf, p = (x.float(), self.p.float()) if low else (x, self.p)
        y = xf.clamp(min=self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)  # (B, C)
        if low and not torch.is_autocast_enabled(x.device.type):
            y = y.to(x.dtype)  # a half network without autocast keeps its dtype
        return y


@dataclass
class ReIDOutput:
    """pooled, neck, embedding: (B, C); logits: (B, num_classes) or None."""

    pooled: torch.Tensor
    neck: torch.Tensor
    embedding: torch.Tensor
    logits: torch.Tensor | None


class ReIDModel(nn.Module):
    """Trunk + pooling + BN neck (+ classifier). `forward` gives (B, C) unit embeddings."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        if config is not None and not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        self.config = config or ModelConfig()
        c = self.config
        self.backbone: ResNet = resnet(c.arch, last_stride=c.last_stride, width=c.width)
        self.pool = GeM(c.gem_p) if c.pooling == "gem" else nn.AdaptiveAvgPool2d(1)
        dim = self.backbone.out_channels
        self.neck = nn.BatchNorm1d(dim)
        nn.init.ones_(self.neck.weight)
        nn.init.zeros_(self.neck.bias)
        self.neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, c.num_classes, bias=False) if c.num_classes else None
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)

    @property
    def embedding_dim(self) -> int:
        return self.backbone.out_channels

    def forward_all(self, x: torch.Tensor) -> ReIDOutput:
        """Every stage's output; see ReIDOutput.

        In training mode the BN neck needs at least 2 samples (it normalises the pooled
        (B, C) features over the batch; with DSBN, 2 per domain half): a smaller batch is
        refused with a ValueError; use ``model.eval()`` to embed single images.
        """
        if self.training:
            _check_training_batch(self, x)
        fmap = self.backbone(x)  # (B, C, h, w)
        pooled = self.pool(fmap).flatten(1)  # (B, C)
        neck = self.neck(pooled)  # (B, C)
        embedding = F.normalize(neck, dim=1)
        logits = self.classifier(neck) if self.classifier is not None else None
        return ReIDOutput(pooled, neck, embedding, logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, C) L2-normalised embeddings."""
        return self.forward_all(x).embedding


def _check_training_batch(model: ReIDModel, x: torch.Tensor) -> None:
    """Refuse a batch that leaves the BN neck, a BatchNorm1d in training mode, fewer than 2
    samples to normalise (torch: "Expected more than 1 value per channel when training"),
    naming the batch. Exact: a neck in eval mode (frozen) takes any batch."""
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        return  # the backbone's own checks name the problem
    n = int(x.shape[0])
    if n == 0 or n >= 4:  # 4 = 2 per DSBN half
        return
    from .dsbn import DSBN

    neck, per_bn, split = model.neck, n, False
    if isinstance(neck, DSBN):
        domain = neck.domain or ("split" if neck.training else "target")
        split = domain == "split"
        per_bn = n // 2 if split else n
        neck = neck.bn_t if domain != "source" else neck.bn_s
    if isinstance(neck, nn.modules.batchnorm._BatchNorm) and neck.training and per_bn < 2:
        where = " per domain half (DSBN splits the batch into source and target)" if split else ""
        raise ValueError(
            f"x: a training batch must give the BatchNorm neck at least 2 samples{where}, got "
            f"a batch of {n} (shape {tuple(x.shape)}); use model.eval() to embed single images"
        )


def build_model(
    config: ModelConfig | dict[str, Any] | None = None,
    *,
    pretrained: str | None = None,
    **overrides: Any,
) -> ReIDModel:
    """A ReIDModel from a config (dataclass or dict) and keyword overrides.

    pretrained: a local state-dict file (torchvision, timm, IBN-Net, SpCL or smcr layout)
    loaded into the network before DSBN conversion; the load report is kept as
    `model.load_report`. A file none of whose tensors fits the network raises ValueError
    (training would silently start from random weights); a partial fit (e.g. a plain
    ResNet into an IBN network) warns with the report. Nothing is ever downloaded.
    """
    if config is None:
        config = ModelConfig(**overrides)
    else:
        if isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        elif not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig or dict, got {type(config).__name__}")
        if overrides:
            config = ModelConfig(**{**config.to_dict(), **overrides})
    dsbn = config.dsbn
    model = ReIDModel(config)
    model.load_report = None
    if pretrained is not None:
        from .weights import load_pretrained

        report = load_pretrained(model, pretrained)
        if not report.loaded:
            shown = ", ".join(report.unexpected[:5]) or "none"
            raise ValueError(
                f"pretrained {os.fspath(pretrained)!r}: none of its tensors fits a "
                f"{config.arch} network of width {config.width} (its keys: {shown}"
                f"{', ...' if len(report.unexpected) > 5 else ''}); is it the right file?"
            )
        if not report.ok:
            warnings.warn(
                f"pretrained weights only partly fit the network:\n{report}", stacklevel=2
            )
        model.load_report = report
    if dsbn:
        convert_dsbn(model)
    return model
