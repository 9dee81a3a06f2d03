"""Feature sets that look like re-ID embeddings, for tests and clustering benchmarks.

Real target features cannot be downloaded here, so the clustering benchmarks run on
features with the structure that makes re-ID clustering hard: identities of very uneven
size (~N/17 of them, as in Market-1501 and MSMT17), groups of look-alike identities
(similar clothes), per-camera offsets (the same person looks different in each camera),
and a fraction of noisy outliers (bad detections, occlusions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ReidLikeFeatures", "reid_like_features"]


@dataclass(frozen=True)
class ReidLikeFeatures:
    """features (N, D) float32 unit rows; pids (N,) int64 (-1 for outliers); camids (N,)."""

    features: torch.Tensor
    pids: torch.Tensor
    camids: torch.Tensor


def reid_like_features(
    n: int,
    d: int = 2048,
    *,
    images_per_id: float = 17.0,
    lookalike_group: int = 4,
    lookalike_spread: float = 0.85,
    num_cameras: int = 6,
    camera_strength: float = 0.35,
    noise: float = 0.75,
    outlier_fraction: float = 0.1,
    seed: int = 0,
) -> ReidLikeFeatures:
    """Draw N unit feature vectors with re-ID-like cluster structure.

    Args:
        n: number of images (rows).
        d: feature dimension (2048 for ResNet-50 embeddings).
        images_per_id: mean images per identity; sizes are uneven (log-normal, >= 2).
        lookalike_group: identities per look-alike group (sharing a group centre).
        lookalike_spread: distance of an identity centre from its group centre (relative
            to unit group spread): smaller means harder look-alikes.
        num_cameras: cameras; each adds its own offset direction to every image it sees.
        camera_strength: norm of the camera offsets relative to an identity centre.
        noise: norm of the per-image noise relative to an identity centre.
        outlier_fraction: fraction of rows that are pure noise (pid -1).
        seed: all randomness comes from this seed (CPU generator; same bytes every run).
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if d < 2:
        raise ValueError(f"d must be >= 2, got {d}")
    if not (0.0 <= outlier_fraction < 1.0):
        raise ValueError(f"outlier_fraction must be in [0, 1), got {outlier_fraction}")
    g = torch.Generator().manual_seed(seed)
    n_out = int(round(n * outlier_fraction))
    n_in = n - n_out
    num_ids = max(1, int(round(n_in / images_per_id)))
    # Uneven identity sizes: log-normal weights, at least 2 images each where possible.
    w = torch.exp(0.6 * torch.randn(num_ids, generator=g))
    sizes = torch.clamp((w / w.sum() * n_in).floor().long(), min=min(2, n_in // num_ids))
    while int(sizes.sum()) > n_in:
        sizes[int(torch.argmax(sizes))] -= 1
    while int(sizes.sum()) < n_in:
        sizes[int(torch.randint(num_ids, (1,), generator=g))] += 1
    num_groups = max(1, (num_ids + lookalike_group - 1) // lookalike_group)
    unit = 1.0 / d**0.5
    group_centres = torch.randn(num_groups, d, generator=g) * unit
    id_centres = group_centres.repeat_interleave(lookalike_group, dim=0)[:num_ids]
    id_centres = id_centres + lookalike_spread * unit * torch.randn(num_ids, d, generator=g)
    id_centres = id_centres / id_centres.norm(dim=1, keepdim=True)
    cam_offsets = torch.randn(num_cameras, d, generator=g) * unit * camera_strength
    pids = torch.repeat_interleave(torch.arange(num_ids), sizes)
    camids = torch.randint(num_cameras, (n_in,), generator=g)
    x = id_centres[pids] + cam_offsets[camids] + noise * unit * torch.randn(n_in, d, generator=g)
    outliers = torch.randn(n_out, d, generator=g)
    feats = torch.cat([x, outliers])
    feats = feats / feats.norm(dim=1, keepdim=True)
    pids = torch.cat([pids, torch.full((n_out,), -1, dtype=torch.int64)])
    camids = torch.cat([camids, torch.randint(num_cameras, (n_out,), generator=g)])
    perm = torch.randperm(n, generator=g)
    return ReidLikeFeatures(feats[perm].contiguous(), pids[perm], camids[perm])
