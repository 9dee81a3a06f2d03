"""The re-ID classifier of the identity-preserving term L_c (eSPGAN's IDE).

The translator needs only a narrow interface: any `nn.Module` mapping (B, 3, H, W) images
in [-1, 1] (the generators' range) to (B, K) logits over the K training identities of the
labelled `from` domain. `IdeClassifier` adapts an `smcr.models.ReIDModel` with a classifier
head to it (converting [-1, 1] to ImageNet-normalised input), so the pipeline's own
source-trained encoder can be plugged in; `build_classifier` makes a fresh small one and
`pretrain_classifier` trains it on the `from` domain when none is given.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from smcr.data import IMAGENET_MEAN, IMAGENET_STD, pad_crop
from smcr.models import ReIDModel, build_model

from .config import TranslateConfig, TranslateError
from .data import Domain, augment_batch

__all__ = ["IdeClassifier", "build_classifier", "classifier_param_groups", "pretrain_classifier"]


class IdeClassifier(nn.Module):
    """A `ReIDModel` with `num_classes > 0` as an images-in-[-1, 1] -> logits module."""

    def __init__(self, model: ReIDModel) -> None:
        super().__init__()
        if not isinstance(model, ReIDModel) or model.classifier is None:
            raise TranslateError(
                "IdeClassifier needs an smcr.models.ReIDModel built with num_classes > 0"
            )
        self.model = model
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    @property
    def num_classes(self) -> int:
        return self.model.config.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, K) logits."""
        x = ((x + 1.0) * 0.5 - self.mean) / self.std
        return self.model.forward_all(x).logits


def build_classifier(num_classes: int, config: TranslateConfig) -> IdeClassifier:
    """A fresh `config.ide_arch` ResNet of width `config.ide_width` with a K-way head."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise TranslateError(
            f"the identity-preserving loss needs >= 2 identities in the from-domain, got "
            f"{num_classes!r}"
        )
    model = build_model(arch=config.ide_arch, width=config.ide_width, num_classes=num_classes)
    return IdeClassifier(model)


def classifier_param_groups(classifier: nn.Module, lr: float, backbone_mult: float) -> list[dict]:
    """eSPGAN's two learning rates: `lr` on the head (BN neck + linear classifier) of an
    `IdeClassifier`, `lr * backbone_mult` on its trunk; one group at `lr` for other modules."""
    params = [p for p in classifier.parameters() if p.requires_grad]
    if not isinstance(classifier, IdeClassifier):
        return [{"params": params, "lr": lr}]
    head_ids = {
        id(p) for m in (classifier.model.neck, classifier.model.classifier) for p in m.parameters()
    }
    head = [p for p in params if id(p) in head_ids]
    trunk = [p for p in params if id(p) not in head_ids]
    return [{"params": trunk, "lr": lr * backbone_mult}, {"params": head, "lr": lr}]


def pretrain_classifier(
    classifier: nn.Module,
    domain: Domain,
    config: TranslateConfig,
    device: torch.device,
    generator: torch.Generator,
    log: Callable[[str], None] | None = None,
) -> list[float]:
    """Train `classifier` on the labelled domain with cross-entropy (Adam, weight decay
    5e-4, lr halved at 1/2 and 3/4 of the epochs; flip + pad-crop augmentation).

    Returns the training accuracy of each epoch.
    """
    opt = torch.optim.Adam(classifier.parameters(), lr=config.ide_pretrain_lr, weight_decay=5e-4)
    n = len(domain)
    bs = min(config.ide_pretrain_batch, n)
    steps = max(1, n // bs)
    pad = max(1, round(10 * config.image_size[0] / 256))
    accs = []
    classifier.train()
    for epoch in range(config.ide_pretrain_epochs):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = config.ide_pretrain_lr * (
                0.25
                if epoch >= 0.75 * config.ide_pretrain_epochs
                else 0.5
                if epoch >= 0.5 * config.ide_pretrain_epochs
                else 1.0
            )
        perm = torch.randperm(n, generator=generator)
        correct = total = 0
        loss_sum = 0.0
        for s in range(steps):
            idx = perm[s * bs : (s + 1) * bs]
            x = augment_batch(domain.images[idx], config.image_size, config.flip, generator)
            x = pad_crop(x, pad, generator).to(device)  # (B, 3, H, W), zero = grey padding
            y = domain.labels[idx].to(device)
            logits = classifier(x)  # (B, K)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
            loss_sum += loss.item()
        accs.append(correct / max(total, 1))
        if log is not None:
            log(
                f"ide pretrain epoch {epoch + 1}/{config.ide_pretrain_epochs}: loss "
                f"{loss_sum / steps:.3f} acc {100 * accs[-1]:.1f} % ({time.perf_counter() - t0:.1f} s)"
            )
        if not math.isfinite(loss_sum):
            raise FloatingPointError("classifier pretraining diverged (non-finite loss)")
    classifier.eval()
    return accs
