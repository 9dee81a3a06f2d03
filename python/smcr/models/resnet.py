"""ResNet-18/34/50 and their IBN-Net-a versions, with torchvision's parameter names.

Layout (He et al. 2016, torchvision's "v1.5": the stride of a bottleneck is on its 3x3
conv). IBN-a (Pan et al., ECCV 2018, XingangPan/IBN-Net): in every block of layer1-3 the
first norm (`bn1`, after the block's first conv) is `IBN`: InstanceNorm2d (affine) on the
first planes // 2 channels and BatchNorm2d on the rest; layer4, the stem and every other
norm stay BatchNorm2d. IBN keeps BN's parameter count, so IBN-ResNet50-a has the 25.56 M
parameters of ResNet-50 (23.51 M without the ImageNet classifier `fc`, which we omit).

Names follow torchvision (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`) and
IBN-Net (`layer1.0.bn1.IN`, `layer1.0.bn1.BN`), so their state dicts load one-to-one.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ARCHS", "IBN", "BasicBlock", "Bottleneck", "ResNet", "resnet"]

# arch -> (block, blocks per stage, IBN-a)
ARCHS: dict[str, tuple[str, tuple[int, int, int, int], bool]] = {
    "resnet18": ("basic", (2, 2, 2, 2), False),
    "resnet34": ("basic", (3, 4, 6, 3), False),
    "resnet50": ("bottleneck", (3, 4, 6, 3), False),
    "resnet18_ibn_a": ("basic", (2, 2, 2, 2), True),
    "resnet34_ibn_a": ("basic", (3, 4, 6, 3), True),
    "resnet50_ibn_a": ("bottleneck", (3, 4, 6, 3), True),
}


class IBN(nn.Module):
    """Instance-Batch Normalization: IN (affine) on channels [0, half), BN on [half, C)."""

    def __init__(self, planes: int, ratio: float = 0.5) -> None:
        super().__init__()
        self.half = int(planes * ratio)
        if not 1 <= self.half < planes:
            raise ValueError(f"IBN needs planes >= 2 to split, got planes={planes}")
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat((self.IN(a.contiguous()), self.BN(b.contiguous())), dim=1)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        ibn: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = IBN(planes) if ibn else nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        ibn: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = IBN(planes) if ibn else nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet trunk (no pooling, no classifier): (B, 3, H, W) -> (B, out_channels, h, w).

    With last_stride 1 the output is 1/16 of the input (16 x 8 for 256 x 128).
    """

    def __init__(
        self,
        block: str,
        layers: tuple[int, int, int, int],
        ibn: bool = False,
        last_stride: int = 1,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")
        if not (isinstance(width, (int, float)) and width > 0):
            raise ValueError(f"width must be a number > 0, got {width!r}")
        cls = BasicBlock if block == "basic" else Bottleneck
        self.ibn = bool(ibn)
        stem = max(2, int(round(64 * width)))
        planes = [max(2, int(round(p * width))) for p in (64, 128, 256, 512)]
        self.inplanes = stem
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(cls, planes[0], layers[0], 1, ibn)
        self.layer2 = self._make_layer(cls, planes[1], layers[1], 2, ibn)
        self.layer3 = self._make_layer(cls, planes[2], layers[2], 2, ibn)
        self.layer4 = self._make_layer(cls, planes[3], layers[3], last_stride, False)
        self.out_channels = planes[3] * cls.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, cls, planes: int, blocks: int, stride: int, ibn: bool) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * cls.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * cls.expansion, stride),
                nn.BatchNorm2d(planes * cls.expansion),
            )
        layers = [cls(self.inplanes, planes, stride, downsample, ibn)]
        self.inplanes = planes * cls.expansion
        layers += [cls(self.inplanes, planes, 1, None, ibn) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) floating-point images -> (B, out_channels, h, w)."""
        _check_input(x, self.ibn)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def _check_input(x: torch.Tensor, ibn: bool) -> None:
    """Shape and dtype of the trunk's input, with errors naming `x` (not a conv's internals).

    IBN-a networks instance-normalise layer1-3, whose last maps are 1/16 of the input
    (ceil(H / 16) x ceil(W / 16)): with a single pixel there, InstanceNorm has nothing to
    normalise (torch raises, misleadingly "when training", in eval mode too), so the input
    must be more than 16 pixels high or wide.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"x must be (B, 3, H, W) images, got shape {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"x must be floating-point (normalised) images, got {x.dtype}")
    h, w = int(x.shape[2]), int(x.shape[3])
    if h < 1 or w < 1:
        raise ValueError(f"x must have height and width >= 1, got shape {tuple(x.shape)}")
    if ibn and -(-h // 16) * -(-w // 16) <= 1:
        raise ValueError(
            f"x of {h}x{w} pixels is too small for an IBN-a network: its InstanceNorm layers "
            f"need a layer3 map of more than one pixel (1/16 of the input); use images more "
            f"than 16 pixels high or wide, got shape {tuple(x.shape)}"
        )


def resnet(arch: str = "resnet50_ibn_a", last_stride: int = 1, width: float = 1.0) -> ResNet:
    """The trunk of `arch` (one of ARCHS) with the given last stride and width multiplier."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
    block, layers, ibn = ARCHS[arch]
    return ResNet(block, layers, ibn=ibn, last_stride=last_stride, width=width)
