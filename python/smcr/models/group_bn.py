"""Batch normalization over fixed-size groups ("ghost" BN), so that BN statistics do not
depend on how many processes share a batch.

SpCL, MMT and the paper train with 64 source + 64 target images split over 4 GPUs, so every
BatchNorm sees 16 images of one domain; run on one GPU, the same code normalises over 64
and gives other numbers: the most reported reproduction failure of those toolkits. Here
every BatchNorm of a training model normalises over consecutive groups of `group` samples,
whatever the number of processes: one process with a 64-image domain batch normalises 4
groups of 16, four processes with 16 each normalise one group each — the same statistics,
the same gradients.

The running statistics take the mean of the groups' batch statistics (equal to updating
once per group and averaging); under torch.distributed `smcr.training.dist.average_buffers`
averages them over the ranks before they are used (evaluation, checkpoints), which equals
the single-process result because the update is linear. In eval mode, and for batches of at
most `group` samples, it is a plain BatchNorm. State-dict keys are those of
nn.BatchNorm1d/2d, so checkpoints load into plain networks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GroupBatchNorm1d", "GroupBatchNorm2d", "convert_group_bn", "set_bn_group"]


class _GroupBN:
    group: int = 0

    def _group_forward(self, x: torch.Tensor) -> torch.Tensor | None:
        bn: nn.modules.batchnorm._BatchNorm = self  # type: ignore[assignment]
        n, g = x.shape[0], self.group
        if not bn.training or g <= 0 or n <= g:
            return None
        if n % g:
            raise ValueError(
                f"batch norm over groups of {g} samples (data.bn_group) got a batch of {n} "
                f"samples per domain, which is not a multiple of {g}"
            )
        k, c = n // g, x.shape[1]
        rest = x.shape[2:]
        # (k*g, C, *rest) -> (g, k*C, *rest): each group's channels become their own channels
        xg = x.reshape(k, g, c, *rest).transpose(0, 1).reshape(g, k * c, *rest)
        weight = bn.weight.repeat(k) if bn.weight is not None else None
        bias = bn.bias.repeat(k) if bn.bias is not None else None
        rm = rv = None
        if bn.track_running_stats and bn.running_mean is not None:
            rm, rv = bn.running_mean.repeat(k), bn.running_var.repeat(k)
        momentum = bn.momentum if bn.momentum is not None else 0.1
        if bn.track_running_stats and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(bn.num_batches_tracked)
        y = F.batch_norm(xg, rm, rv, weight, bias, True, momentum, bn.eps)
        if rm is not None:
            with torch.no_grad():
                bn.running_mean.copy_(rm.view(k, c).mean(0))
                bn.running_var.copy_(rv.view(k, c).mean(0))
        return y.reshape(g, k, c, *rest).transpose(0, 1).reshape(x.shape)


class GroupBatchNorm1d(_GroupBN, nn.BatchNorm1d):
    """nn.BatchNorm1d normalising consecutive groups of `group` samples (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._group_forward(x)
        return super().forward(x) if y is None else y


class GroupBatchNorm2d(_GroupBN, nn.BatchNorm2d):
    """nn.BatchNorm2d normalising consecutive groups of `group` samples (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._group_forward(x)
        return super().forward(x) if y is None else y


def convert_group_bn(model: nn.Module, group: int) -> nn.Module:
    """Replace every nn.BatchNorm1d/2d of `model` (in place, DSBN halves included) by its
    group version over `group` samples (0: the whole batch, a plain BatchNorm); returns
    `model`. Parameters (with their dtype and device) and statistics are kept; modules
    already converted get `group`. A group of 1 is refused for a model with a BatchNorm1d
    (the re-ID neck): it cannot normalise one sample."""
    group = _check_group(group, model)
    for name, child in list(model.named_children()):
        if isinstance(child, _GroupBN):
            child.group = group
        elif type(child) in (nn.BatchNorm1d, nn.BatchNorm2d):
            cls = GroupBatchNorm1d if isinstance(child, nn.BatchNorm1d) else GroupBatchNorm2d
            state = child.state_dict()
            floating = [t for t in state.values() if t.is_floating_point()]
            device = floating[0].device if floating else None
            dtype = floating[0].dtype if floating else None
            # made in the original's dtype and device: a float64 (or half) network keeps
            # its BatchNorms in that dtype (a float32 copy fails in the forward)
            new = cls(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
                device=device,
                dtype=dtype,
            )
            new.load_state_dict(state)
            for p_new, p_old in zip(new.parameters(), child.parameters(), strict=True):
                p_new.requires_grad_(p_old.requires_grad)
            new.train(child.training)
            new.group = group
            setattr(model, name, new)
        else:
            convert_group_bn(child, group)
    return model


def _check_group(group: object, model: nn.Module) -> int:
    """`group` as an int: 0, or >= 1 where every batch norm of `model` is 2-D (a group of one
    image still has H x W values per channel; a BatchNorm1d has one)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(group, bool) or not isinstance(group, int) or group < 0:
        raise ValueError(f"group must be 0 (normalise the whole batch) or an int >= 2 (1 "
                         f"without a BatchNorm1d), got {group!r}")
    if group == 1 and any(isinstance(m, nn.BatchNorm1d) for m in model.modules()):
        raise ValueError("group must be 0 (normalise the whole batch) or an int >= 2 for a "
                         "model with a BatchNorm1d (it cannot normalise one sample), got 1")
    return group


def set_bn_group(model: nn.Module, group: int) -> None:
    """Set the group size of every group BatchNorm of `model` (0 or an int >= 2; 1 where
    they are all 2-D)."""
    group = _check_group(group, model)
    for m in model.modules():
        if isinstance(m, _GroupBN):
            m.group = group
