"""Domain-specific batch normalization (DSBN; Chang et al., CVPR 2019, as SpCL uses it).

Every BatchNorm becomes a pair (`bn_s` for the source domain, `bn_t` for the target), both
starting from the original's parameters and statistics. In training the first half of a
batch goes through `bn_s` and the second half through `bn_t` (the loop concatenates source
then target); in eval mode `bn_t` is used. `set_dsbn_domain` forces one branch, e.g. to
extract source features in eval mode. IBN's InstanceNorm half has no statistics and is
shared; only its BatchNorm half is duplicated (SpCL's `convert_dsbn`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["DSBN", "DOMAINS", "collapse_dsbn", "convert_dsbn", "set_dsbn_domain"]

DOMAINS = ("split", "source", "target")


class DSBN(nn.Module):
    """Two copies of a BatchNorm1d/2d; see the module docstring for which one runs."""

    def __init__(self, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
        super().__init__()
        if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
            raise TypeError(f"bn must be a BatchNorm1d or BatchNorm2d, got {type(bn).__name__}")
        self.bn_s = copy.deepcopy(bn)
        self.bn_t = copy.deepcopy(bn)
        self.domain: str | None = None  # None: "split" in training, "target" in eval

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        domain = self.domain or ("split" if self.training else "target")
        if domain == "source":
            return self.bn_s(x)
        if domain == "target":
            return self.bn_t(x)
        n = x.shape[0]
        if n % 2:
            raise ValueError(
                f"DSBN in training splits the batch into source and target halves; the batch "
                f"size must be even, got {n}"
            )
        return torch.cat((self.bn_s(x[: n // 2]), self.bn_t(x[n // 2 :])), dim=0)


def convert_dsbn(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm1d/2d of `model` (in place) by a DSBN; returns `model`."""
    for name, child in list(model.named_children()):
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            setattr(model, name, DSBN(child))
        else:
            convert_dsbn(child)
    return model


def collapse_dsbn(model: nn.Module, domain: str = "target") -> nn.Module:
    """Replace every DSBN of `model` (in place) by its `domain` BatchNorm ("target": bn_t,
    what evaluation uses; "source": bn_s); returns `model`, a plain network again."""
    if domain not in ("source", "target"):
        raise ValueError(f"domain must be 'source' or 'target', got {domain!r}")
    for name, child in list(model.named_children()):
        if isinstance(child, DSBN):
            setattr(model, name, child.bn_t if domain == "target" else child.bn_s)
        else:
            collapse_dsbn(child, domain)
    return model


def set_dsbn_domain(model: nn.Module, domain: str | None) -> None:
    """Force every DSBN of `model` to "source", "target" or "split"; None restores the
    default (split in training, target in eval)."""
    if domain is not None and domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS} or None, got {domain!r}")
    for m in model.modules():
        if isinstance(m, DSBN):
            m.domain = domain
