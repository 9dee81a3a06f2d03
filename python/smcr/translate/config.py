"""`TranslateConfig`: every setting of the domain translator (SPGAN / eSPGAN), with defaults.

Defaults follow eSPGAN / SPGAN (REFERENCE §4.2) except where a CPU run needs less: the
published translator is a 9-block, 64-filter ResNet generator at 256x128; the defaults here
(`image_size` 64x32, 3 blocks, 32 filters) are the CPU size. `TranslateConfig.gpu()` gives
the published one.

Loss weights (paper Eq. 2, L_dt = L_Tadv + L_Radv + mu1 L_cyc + mu2 L_ide + mu3 L_c):
    mu1 = 10  cycle consistency (L1)           CycleGAN / SPGAN lambda1
    mu2 = 5   identity mapping (L1), "L_ide"   SPGAN lambda2
    mu3 = 5   re-ID cross-entropy, "L_c"       eSPGAN lambda4 (IDE on translated images and
              cycle reconstructions of the labelled `from` domain)
    siamese_weight = 2, siamese_margin = 2     SPGAN's contrastive loss (off by default: eSPGAN
              declares but does not apply it)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["TranslateConfig", "TranslateError", "load_config"]


class TranslateError(ValueError):
    """Bad translator input: a config value, a dataset, a checkpoint or an output folder."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class TranslateConfig:
    """Settings of one translator training run (all of them enter the cache key).

    Images
        image_size: (height, width) the translator works at; both divisible by 4.
        load_scale: images are resized to load_scale * image_size and randomly cropped back
            (CycleGAN / SPGAN: 286 / 256 = 1.117); 1.0 = resize only.
        flip: random horizontal flip of training images.
    Networks
        ngf, ndf: filters of the generators' first layer / discriminators' first layer.
        n_res_blocks: residual blocks of each generator (9 in SPGAN).
        d_layers: stride-2 layers of the PatchGAN discriminator (3 = the 70x70 PatchGAN).
        residual: generators that predict a change to their input (y = tanh(atanh(x) +
            r(x)); see ResnetGenerator) and so start near the identity mapping. Not in the
            published SPGAN / eSPGAN (False); for short CPU schedules, where a CycleGAN
            generator has not yet learnt to redraw the person after a few hundred steps.
    Loss
        mu1, mu2, mu3: weights of L_cyc, L_ide (identity mapping) and L_c (re-ID CE).
        siamese, siamese_weight, siamese_margin, siamese_start_epoch: SPGAN's contrastive
            term; the generators get it from `siamese_start_epoch` on (SPGAN: after epoch 1),
            the metric net trains from epoch 0.
        pool_size: images in each discriminator's history pool (50).
    Optimisation
        epochs, decay_epochs: lr is constant for `epochs - decay_epochs` epochs, then falls
            linearly towards 0 (CycleGAN's "linear" policy).
        iters_per_epoch: None = max(len(A), len(B)) // batch_size (at least 1).
        batch_size, lr, beta1, beta2: Adam of generators, discriminators and metric net.
        g_every: update the generators every n-th iteration (SPGAN 2, eSPGAN 3; 1 = CycleGAN).
    Re-ID classifier (the identity-preserving term, used when mu3 > 0)
        ide_arch, ide_width: the default classifier, smcr.models' ResNet of that width.
        ide_pretrain_epochs, ide_pretrain_lr, ide_pretrain_batch: training on the labelled
            `from` domain before the GAN (Adam, weight decay 5e-4) when no trained classifier
            is given.
        ide_joint: keep training it during the GAN on half real / half translated images
            (eSPGAN): SGD, Nesterov momentum 0.9, weight decay 5e-4, lr ide_lr on the head and
            ide_lr * ide_backbone_lr_mult on the trunk, BN statistics frozen, lr divided by
            10 every `ide_lr_step` epochs (eSPGAN: 10).
        ide_start_epoch: the generators get L_c from this epoch on (eSPGAN: 0; a later
            start lets short CPU runs learn the cycle first, as SPGAN delays its
            contrastive term).
    Other
        seed: every random draw (data order, augmentation, pool, init) derives from it.
        samples: images per domain in the per-epoch sample grid.
    """

    image_size: tuple[int, int] = (64, 32)
    load_scale: float = 1.0
    flip: bool = True
    ngf: int = 32
    ndf: int = 64
    n_res_blocks: int = 3
    d_layers: int = 3
    residual: bool = False
    mu1: float = 10.0
    mu2: float = 5.0
    mu3: float = 5.0
    siamese: bool = False
    siamese_weight: float = 2.0
    siamese_margin: float = 2.0
    siamese_start_epoch: int = 1
    pool_size: int = 50
    epochs: int = 20
    decay_epochs: int = 10
    iters_per_epoch: int | None = None
    batch_size: int = 8
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    g_every: int = 1
    ide_arch: str = "resnet18"
    ide_width: float = 0.25
    ide_pretrain_epochs: int = 20
    ide_pretrain_lr: float = 3.5e-4
    ide_pretrain_batch: int = 32
    ide_joint: bool = True
    ide_lr: float = 0.01
    ide_backbone_lr_mult: float = 0.1
    ide_lr_step: int = 10
    ide_start_epoch: int = 0
    seed: int = 0
    samples: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.image_size, list):
            self.image_size = tuple(self.image_size)
        size = self.image_size
        if (
            not isinstance(size, tuple)
            or len(size) != 2
            or not all(_is_int(v) and v >= 8 and v % 4 == 0 for v in size)
        ):
            raise TranslateError(
                f"image_size must be (height, width), each an int >= 8 divisible by 4, got {size!r}"
            )
        for name in ("ngf", "ndf", "n_res_blocks", "d_layers", "epochs", "batch_size", "g_every"):
            v = getattr(self, name)
            lo = 0 if name == "n_res_blocks" else 1
            if not _is_int(v) or v < lo:
                raise TranslateError(f"{name} must be an int >= {lo}, got {v!r}")
        for name in (
            "pool_size",
            "decay_epochs",
            "ide_pretrain_epochs",
            "siamese_start_epoch",
            "ide_start_epoch",
        ):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise TranslateError(f"{name} must be an int >= 0, got {v!r}")
        for name in ("samples", "ide_pretrain_batch", "ide_lr_step"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise TranslateError(f"{name} must be an int >= 1, got {v!r}")
        if self.decay_epochs > self.epochs:
            raise TranslateError(
                f"decay_epochs must be <= epochs ({self.epochs}), got {self.decay_epochs}"
            )
        if self.iters_per_epoch is not None and (
            not _is_int(self.iters_per_epoch) or self.iters_per_epoch < 1
        ):
            raise TranslateError(
                f"iters_per_epoch must be None or an int >= 1, got {self.iters_per_epoch!r}"
            )
        for name in ("mu1", "mu2", "mu3", "siamese_weight", "siamese_margin"):
            v = getattr(self, name)
            if not _is_num(v) or v < 0:
                raise TranslateError(f"{name} must be a number >= 0, got {v!r}")
        for name in ("lr", "ide_pretrain_lr", "ide_lr", "ide_backbone_lr_mult", "ide_width"):
            v = getattr(self, name)
            if not _is_num(v) or v <= 0:
                raise TranslateError(f"{name} must be a number > 0, got {v!r}")
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not _is_num(v) or not 0 <= v < 1:
                raise TranslateError(f"{name} must be in [0, 1), got {v!r}")
        if not _is_num(self.load_scale) or not 1.0 <= self.load_scale <= 2.0:
            raise TranslateError(f"load_scale must be in [1, 2], got {self.load_scale!r}")
        for name in ("flip", "residual", "siamese", "ide_joint"):
            if not isinstance(getattr(self, name), bool):
                raise TranslateError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not _is_int(self.seed):
            raise TranslateError(f"seed must be an int, got {self.seed!r}")
        from smcr.models import ARCHS

        if self.ide_arch not in ARCHS:
            raise TranslateError(f"ide_arch must be one of {sorted(ARCHS)}, got {self.ide_arch!r}")
        # The PatchGAN must leave at least one patch: d_layers stride-2 convs, then two
        # 4x4 stride-1 convs with padding 1 (each takes one pixel off).
        for side, n in zip(("height", "width"), self.image_size, strict=True):
            if n // 2**self.d_layers - 2 < 1:
                raise TranslateError(
                    f"d_layers={self.d_layers} leaves no discriminator patch for image {side} "
                    f"{n}; use fewer d_layers or larger images"
                )

    @classmethod
    def gpu(cls, **overrides: Any) -> TranslateConfig:
        """The published SPGAN/eSPGAN size: 256x128, 9 blocks, 64 filters, 286/256 jitter."""
        base = dict(image_size=(256, 128), ngf=64, n_res_blocks=9, load_scale=286 / 256)
        return cls(**{**base, **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TranslateConfig:
        """Build from a mapping; unknown keys raise TranslateError naming them."""
        if not isinstance(d, dict):
            raise TranslateError(f"translator config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TranslateError(
                f"unknown translator config keys {unknown}; known: {sorted(known)}"
            )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (image_size as a list), for YAML, JSON and checkpoints."""
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    def replace(self, **changes: Any) -> TranslateConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def resolved_iters(self, n_a: int, n_b: int) -> int:
        """Iterations per epoch for domains of n_a and n_b images."""
        if self.iters_per_epoch is not None:
            return self.iters_per_epoch
        return max(1, max(n_a, n_b) // self.batch_size)


def load_config(path: str | Path, **overrides: Any) -> TranslateConfig:
    """Read a TranslateConfig from a YAML file (any subset of the fields), then apply
    `overrides`; `gpu: true` in the file starts from `TranslateConfig.gpu()`."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise TranslateError(f"config file {path} does not exist (expected a YAML file)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise TranslateError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise TranslateError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    gpu = data.pop("gpu", False)
    data.update(overrides)
    try:
        if gpu:
            return TranslateConfig.gpu(**data)
        return TranslateConfig.from_dict(data)
    except TypeError as e:
        raise TranslateError(f"{path}: {e}") from e
    except TranslateError as e:
        raise TranslateError(f"{path}: {e}") from e
