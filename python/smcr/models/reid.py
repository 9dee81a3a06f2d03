"""The re-ID network: ResNet trunk, GeM or average pooling, BN neck, L2-normalised embedding.

    f_pool = pool(trunk(x))                (B, C)   GeM: (mean x^p)^(1/p), p learnable
    f_neck = BatchNorm1d(f_pool)           (B, C)   BNNeck; its bias is frozen at 0
    embedding = f_neck / |f_neck|          (B, C)   what `forward` returns and what is ranked
    logits = W f_neck                      (B, K)   only with num_classes > 0, no bias

This is SpCL's `ResNet`/`ResNetIBN` with `num_features=0` (spcl/models/resnet*.py) and the
usual strong-baseline head (Luo et al., 2019).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .dsbn import convert_dsbn
from .resnet import ARCHS, ResNet, resnet

__all__ = ["GeM", "ModelConfig", "ReIDModel", "ReIDOutput", "build_model"]

POOLINGS = ("avg", "gem")


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
        if not (isinstance(self.gem_p, (int, float)) and self.gem_p > 0):
            raise ValueError(f"gem_p must be a number > 0, got {self.gem_p!r}")
        if self.last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {self.last_stride!r}")
        if not (isinstance(self.width, (int, float)) and self.width > 0):
            raise ValueError(f"width must be a number > 0, got {self.width!r}")
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, int)
            or (self.num_classes < 0)
        ):
            raise ValueError(f"num_classes must be an int >= 0, got {self.num_classes!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
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
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


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
        """Every stage's output; see ReIDOutput."""
        fmap = self.backbone(x)  # (B, C, h, w)
        pooled = self.pool(fmap).flatten(1)  # (B, C)
        neck = self.neck(pooled)  # (B, C)
        embedding = F.normalize(neck, dim=1)
        logits = self.classifier(neck) if self.classifier is not None else None
        return ReIDOutput(pooled, neck, embedding, logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, C) L2-normalised embeddings."""
        return self.forward_all(x).embedding


def build_model(
    config: ModelConfig | dict[str, Any] | None = None,
    *,
    pretrained: str | None = None,
    **overrides: Any,
) -> ReIDModel:
    """A ReIDModel from a config (dataclass or dict) and keyword overrides.

    pretrained: a local state-dict file (torchvision, timm, IBN-Net, SpCL or smcr layout)
    loaded into the network before DSBN conversion; the load report is kept as
    `model.load_report`. Nothing is ever downloaded.
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

        model.load_report = load_pretrained(model, pretrained)
    if dsbn:
        convert_dsbn(model)
    return model
