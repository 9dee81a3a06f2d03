"""The terms of the translator loss (paper Eq. 2) and SPGAN's contrastive loss.

    L_dt = L_Tadv + L_Radv + mu1 L_cyc + mu2 L_ide + mu3 L_c  (+ siamese_weight L_sia)

L_Tadv, L_Radv: least-squares GAN losses of the two directions (`lsgan_loss`).
L_cyc: |G_BA(G_AB(a)) - a|_1 + |G_AB(G_BA(b)) - b|_1 (`l1_loss` twice).
L_ide: identity mapping |G_AB(b) - b|_1 + |G_BA(a) - a|_1, which keeps colour composition.
L_c:   cross-entropy of a classifier trained on the labelled `from` domain A over the
       translated images G_AB(a) and the reconstructions G_BA(G_AB(a)), labels = a's ids
       (eSPGAN: one CE over the concatenated batch).
L_sia: SPGAN's contrastive loss on a metric net's embeddings (`siamese_generator_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "contrastive_loss",
    "ide_cross_entropy",
    "l1_loss",
    "lsgan_loss",
    "siamese_generator_loss",
    "siamese_metric_loss",
]


def lsgan_loss(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss: mean (D(x) - 1)^2 for real targets, mean D(x)^2 for fake.

    scores: any shape (PatchGAN gives (B, 1, h, w)); returns a scalar.
    """
    target = 1.0 if real else 0.0
    return F.mse_loss(scores, torch.full_like(scores, target))


def l1_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of two image batches of the same shape."""
    if x.shape != y.shape:
        raise ValueError(f"l1_loss needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    return F.l1_loss(x, y)


def contrastive_loss(
    e1: torch.Tensor, e2: torch.Tensor, positive: bool | torch.Tensor, margin: float = 2.0
) -> torch.Tensor:
    """Hadsell-Chopra-LeCun contrastive loss on embedding pairs (B, D), (B, D).

    positive pairs: mean d^2; negative pairs: mean max(0, margin - d)^2, d = |e1 - e2|_2.
    `positive` is one bool for the whole batch or a (B,) bool tensor (1 = same identity,
    OpenUnReID's convention; eSPGAN's repository uses 0 = positive).
    """
    if e1.shape != e2.shape or e1.dim() != 2:
        raise ValueError(
            f"contrastive_loss needs two (B, D) embeddings, got {tuple(e1.shape)}, {tuple(e2.shape)}"
        )
    d = (e1 - e2).pow(2).sum(1).clamp_min(1e-12).sqrt()  # (B,)
    pos = d.pow(2)
    neg = (margin - d).clamp_min(0.0).pow(2)
    if isinstance(positive, bool):
        return (pos if positive else neg).mean()
    y = positive.to(d.dtype)
    return (y * pos + (1 - y) * neg).mean()


def siamese_generator_loss(
    metric: nn.Module,
    real_a: torch.Tensor,
    fake_b: torch.Tensor,
    real_b: torch.Tensor,
    fake_a: torch.Tensor,
    margin: float = 2.0,
) -> torch.Tensor:
    """SPGAN's term for the generators: (pos0 + pos1 + 0.5 (neg0 + neg1)) / 4.

    pos0 = (a, G_AB(a)), pos1 = (b, G_BA(b)) are positives (a translated image keeps its
    identity); neg0 = (G_AB(a), b), neg1 = (G_BA(b), a) negatives (domains hold different
    people).
    """
    m_ra, m_fb, m_rb, m_fa = metric(real_a), metric(fake_b), metric(real_b), metric(fake_a)
    pos0 = contrastive_loss(m_ra, m_fb, True, margin)
    pos1 = contrastive_loss(m_rb, m_fa, True, margin)
    n = min(len(m_fb), len(m_rb))
    neg0 = contrastive_loss(m_fb[:n], m_rb[:n], False, margin)
    neg1 = contrastive_loss(m_fa[:n], m_ra[:n], False, margin)
    return (pos0 + pos1 + 0.5 * (neg0 + neg1)) / 4


def siamese_metric_loss(
    metric: nn.Module,
    real_a: torch.Tensor,
    fake_b: torch.Tensor,
    real_b: torch.Tensor,
    fake_a: torch.Tensor,
    margin: float = 2.0,
) -> torch.Tensor:
    """SPGAN's term for the metric net: (pos0 + pos1 + 2 neg) / 3 with neg = (a, b);
    the translated images are treated as constants."""
    m_ra, m_rb = metric(real_a), metric(real_b)
    pos0 = contrastive_loss(m_ra, metric(fake_b.detach()), True, margin)
    pos1 = contrastive_loss(m_rb, metric(fake_a.detach()), True, margin)
    n = min(len(m_ra), len(m_rb))
    neg = contrastive_loss(m_ra[:n], m_rb[:n], False, margin)
    return (pos0 + pos1 + 2 * neg) / 3


def ide_cross_entropy(
    classifier: nn.Module, fake_b: torch.Tensor, rec_a: torch.Tensor, labels_a: torch.Tensor
) -> torch.Tensor:
    """eSPGAN's L_c: CE of `classifier` over cat(G_AB(a), G_BA(G_AB(a))) with a's labels twice.

    classifier: any module mapping (B, 3, H, W) images in [-1, 1] to (B, K) logits; it is
    run as it is (the trainer puts it in eval mode, as eSPGAN does for this term).
    """
    logits = classifier(torch.cat((fake_b, rec_a), 0))  # (2B, K)
    if logits.dim() != 2 or logits.shape[0] != 2 * len(labels_a):
        raise ValueError(
            f"classifier must map (B, 3, H, W) images to (B, K) logits, got shape "
            f"{tuple(logits.shape)} for {2 * len(labels_a)} images"
        )
    return F.cross_entropy(logits, torch.cat((labels_a, labels_a), 0))
