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
    attribute_dim: int = 48,
    lookalike_group: int = 4,
    lookalike_spread: float = 0.5,
    identity_strength: float = 0.8,
    num_cameras: int = 6,
    camera_strength: float = 0.3,
    noise: float = 0.45,
    outlier_fraction: float = 0.1,
    seed: int = 0,
) -> ReidLikeFeatures:
    """Draw N unit feature vectors with re-ID-like cluster structure.

    An image's feature is  P·a_id + s_id·u_id + s_cam·o_cam + s_noise·ε, L2-normalised:
    a_id is the identity's appearance in a low-dimensional attribute space (clothing
    colours, build, bags; `attribute_dim` dimensions, mapped to d by a fixed random P),
    shared within look-alike groups up to `lookalike_spread`; u_id is what is unique to the
    identity; o_cam the camera's offset; ε per-image noise. Real re-ID embeddings have this
    shape: people who dress alike are near each other, strangers are not equidistant.
    Outliers (pid -1) are junk crops: an identity seen through heavy noise (occlusion,
    misalignment), labelled with no identity.

    Args:
        n: number of images (rows).
        d: feature dimension (2048 for ResNet-50 embeddings).
        images_per_id: mean images per identity; sizes are uneven (log-normal, >= 2).
        attribute_dim: dimension of the shared appearance space.
        lookalike_group: identities per look-alike group (sharing an appearance).
        lookalike_spread: how far an identity's appearance is from its group's (smaller
            means harder look-alikes), relative to the spread between groups.
        identity_strength, camera_strength, noise: norms of the identity-specific part,
            the camera offset and the per-image noise, relative to the appearance part.
        num_cameras: cameras.
        outlier_fraction: fraction of rows that belong to no identity (pid -1).
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
    q = min(attribute_dim, d)
    unit = 1.0 / d**0.5
    # Appearance: a fixed random map of the attribute space, scaled so that a typical
    # identity's appearance part has norm ~1; the other parts are relative to it.
    proj = torch.randn(d, q, generator=g) * unit / (q * (1.0 + lookalike_spread**2)) ** 0.5
    num_groups = max(1, (num_ids + lookalike_group - 1) // lookalike_group)
    group_attr = torch.randn(num_groups, q, generator=g)
    id_attr = group_attr.repeat_interleave(lookalike_group, dim=0)[:num_ids]
    id_attr = id_attr + lookalike_spread * torch.randn(num_ids, q, generator=g)
    id_centres = id_attr @ proj.T + identity_strength * unit * torch.randn(num_ids, d, generator=g)
    cam_offsets = camera_strength * unit * torch.randn(num_cameras, d, generator=g)
    pids = torch.repeat_interleave(torch.arange(num_ids), sizes)
    camids = torch.randint(num_cameras, (n_in,), generator=g)
    x = id_centres[pids] + cam_offsets[camids] + noise * unit * torch.randn(n_in, d, generator=g)
    # Outliers: junk crops (occluded, misaligned, partial) of random identities -- the
    # identity shows through heavy noise -- and never labelled with it (pid -1).
    src = torch.randint(num_ids, (n_out,), generator=g)
    outliers = id_centres[src] + 2.5 * noise * unit * torch.randn(n_out, d, generator=g)
    feats = torch.cat([x, outliers])
    feats = feats / feats.norm(dim=1, keepdim=True)
    pids = torch.cat([pids, torch.full((n_out,), -1, dtype=torch.int64)])
    camids = torch.cat([camids, torch.randint(num_cameras, (n_out,), generator=g)])
    perm = torch.randperm(n, generator=g)
    return ReidLikeFeatures(feats[perm].contiguous(), pids[perm], camids[perm])
