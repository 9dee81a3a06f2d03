"""The translator's networks: ResNet generator, PatchGAN discriminator, SPGAN's metric net.

Images are (B, 3, H, W) float in [-1, 1] everywhere (the generator ends in tanh).

* `ResnetGenerator` (Johnson et al. / CycleGAN, SPGAN's `Generator`): reflection pad + 7x7
  conv, two stride-2 3x3 convs, `n_res_blocks` residual blocks, two stride-2 transposed
  convs, reflection pad + 7x7 conv + tanh. Every norm is InstanceNorm2d without affine
  parameters; convs before a norm have no bias (as SPGAN). H and W must be divisible by 4.
* `PatchDiscriminator` (pix2pix / CycleGAN 70x70 PatchGAN): 4x4 convs, LeakyReLU 0.2,
  `d_layers` stride-2 convs then two stride-1 convs; one real/fake score per patch.
* `MetricNet` (SPGAN's `Metric_Net`): 3x [4x4 stride-2 conv, LeakyReLU 0.2, 2x2 max pool],
  FC 2048 -> 128, LeakyReLU, dropout 0.5, FC 128 -> 64, L2-normalised. Our two changes keep
  it usable below 256x128: images smaller than 128x64 are first upsampled (bilinear) to it,
  and the conv map is adaptive-average-pooled to 4x2 before the FC, which is the identity
  at SPGAN's 256x128.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MetricNet", "PatchDiscriminator", "ResidualBlock", "ResnetGenerator", "init_weights"]


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False)


class ResidualBlock(nn.Module):
    """x + [pad, conv3x3, IN, ReLU, pad, conv3x3, IN](x); channels unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> (B, 3, H, W) in [-1, 1]; H, W divisible by 4.

    residual=False is CycleGAN's generator (the output is tanh of the last conv).
    residual=True predicts a change to the input instead: y = tanh(atanh(x) + r(x)), with the
    input clamped to +-(1 - 1e-3) before atanh. At initialisation r is small, so the
    generator starts near the identity mapping and keeps the person's shape and content from
    the first step; the adversarial loss then has only the style to learn, which short CPU
    schedules (a few hundred steps) otherwise cannot reach."""

    def __init__(self, ngf: int = 64, n_res_blocks: int = 9, channels: int = 3,
                 residual: bool = False) -> None:
        super().__init__()
        self.residual = bool(residual)
        if ngf < 1 or n_res_blocks < 0:
            raise ValueError(f"ngf must be >= 1 and n_res_blocks >= 0, got {ngf}, {n_res_blocks}")
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, ngf, 7, bias=False),
            _norm(ngf),
            nn.ReLU(inplace=True),
        ]
        for mult in (1, 2):  # downsample: ngf -> 2 ngf -> 4 ngf
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=False),
                _norm(ngf * mult * 2),
                nn.ReLU(inplace=True),
            ]
        layers += [ResidualBlock(ngf * 4) for _ in range(n_res_blocks)]
        for mult in (4, 2):  # upsample: 4 ngf -> 2 ngf -> ngf
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult,
                    ngf * mult // 2,
                    3,
                    stride=2,
                    padding=1,
                    output_padding=1,
                    bias=False,
                ),
                _norm(ngf * mult // 2),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7)]
        if not self.residual:
            layers.append(nn.Tanh())
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(
                f"generator input must be (B, C, H, W) with H and W divisible by 4, got shape "
                f"{tuple(x.shape)}"
            )
        if self.residual:
            return torch.tanh(torch.atanh(x.clamp(-1 + 1e-3, 1 - 1e-3)) + self.model(x))
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """(B, 3, H, W) -> (B, 1, H / 2^d_layers - 2, W / 2^d_layers - 2) patch scores."""

    def __init__(self, ndf: int = 64, d_layers: int = 3, channels: int = 3) -> None:
        super().__init__()
        if ndf < 1 or d_layers < 1:
            raise ValueError(f"ndf and d_layers must be >= 1, got {ndf}, {d_layers}")
        layers: list[nn.Module] = [
            nn.Conv2d(channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        mult = 1
        for n in range(1, d_layers + 1):  # d_layers - 1 more stride-2 convs, then a stride-1 one
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(
                    ndf * prev,
                    ndf * mult,
                    4,
                    stride=2 if n < d_layers else 1,
                    padding=1,
                    bias=False,
                ),
                _norm(ndf * mult),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MetricNet(nn.Module):
    """SPGAN's Siamese embedding: (B, 3, H, W) -> (B, 64) unit vectors."""

    MIN_SIZE = (128, 64)

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, dim, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(dim, dim * 2, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(dim * 2, dim * 4, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.MaxPool2d(2, 2),
            nn.AdaptiveAvgPool2d((4, 2)),
        )
        self.fc1 = nn.Linear(dim * 4 * 8, dim * 2, bias=False)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(dim * 2, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h < self.MIN_SIZE[0] or w < self.MIN_SIZE[1]:
            size = (max(h, self.MIN_SIZE[0]), max(w, self.MIN_SIZE[1]))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        f = self.features(x).flatten(1)  # (B, 2048)
        f = self.fc2(self.drop(F.leaky_relu(self.fc1(f), 0.2)))  # (B, 64)
        return F.normalize(f, dim=1)


def init_weights(
    module: nn.Module, std: float = 0.02, generator: torch.Generator | None = None
) -> None:
    """CycleGAN's "normal" init: conv / linear weights ~ N(0, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            with torch.no_grad():
                m.weight.normal_(0.0, std, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
