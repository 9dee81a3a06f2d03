"""The loss terms of Eq. 2, SPGAN's contrastive loss and the history pool, on tiny inputs."""

import pytest
import torch
import torch.nn.functional as F
from smcr.translate import (
    ImagePool,
    contrastive_loss,
    ide_cross_entropy,
    l1_loss,
    lsgan_loss,
    siamese_generator_loss,
    siamese_metric_loss,
)


def test_lsgan_loss_hand_values():
    s = torch.tensor([[0.0, 1.0], [2.0, 0.5]])
    assert lsgan_loss(s, True).item() == pytest.approx((1 + 0 + 1 + 0.25) / 4)
    assert lsgan_loss(s, False).item() == pytest.approx((0 + 1 + 4 + 0.25) / 4)


def test_l1_loss_and_shape_check():
    x, y = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert l1_loss(x, y).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="equal shapes"):
        l1_loss(x, torch.zeros(1, 3, 4, 2))


def test_contrastive_loss_hand_values():
    e1 = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    e2 = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # distances 5 and 1
    assert contrastive_loss(e1, e2, True).item() == pytest.approx((25 + 1) / 2)
    # margin 2: max(0, 2 - 5)^2 = 0, max(0, 2 - 1)^2 = 1
    assert contrastive_loss(e1, e2, False, margin=2.0).item() == pytest.approx(0.5)
    mixed = contrastive_loss(e1, e2, torch.tensor([True, False]), margin=2.0)
    assert mixed.item() == pytest.approx((25 + 1) / 2)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        contrastive_loss(torch.zeros(2, 2), torch.zeros(3, 2), True)


def test_siamese_terms_follow_spgan_weights():
    # the identity "metric net" makes the terms plain contrastive losses of the images
    m = lambda x: x.flatten(1)  # noqa: E731
    ra, fb, rb, fa = (torch.randn(4, 3, 2, 2) for _ in range(4))
    pos0, pos1 = contrastive_loss(m(ra), m(fb), True), contrastive_loss(m(rb), m(fa), True)
    neg0, neg1 = contrastive_loss(m(fb), m(rb), False), contrastive_loss(m(fa), m(ra), False)
    neg = contrastive_loss(m(ra), m(rb), False)
    g = siamese_generator_loss(m, ra, fb, rb, fa)
    assert g.item() == pytest.approx(((pos0 + pos1 + 0.5 * (neg0 + neg1)) / 4).item())
    mm = siamese_metric_loss(m, ra, fb, rb, fa)
    assert mm.item() == pytest.approx(((pos0 + pos1 + 2 * neg) / 3).item())


def test_ide_cross_entropy_is_ce_over_translated_and_reconstructed():
    torch.manual_seed(0)
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    fb, ra = torch.randn(3, 3, 2, 2), torch.randn(3, 3, 2, 2)
    y = torch.tensor([0, 4, 2])
    want = F.cross_entropy(clf(torch.cat((fb, ra))), torch.cat((y, y)))
    assert ide_cross_entropy(clf, fb, ra, y).item() == pytest.approx(want.item())
    with pytest.raises(ValueError, match="logits"):
        ide_cross_entropy(torch.nn.Flatten(0), fb, ra, y)


def test_pool_fills_then_mixes_history():
    pool = ImagePool(size=4, seed=0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: returns the new images
    assert len(pool) == 4
    new = torch.arange(100.0, 300.0)
    got = torch.cat([pool.query(v.view(1, 1, 1, 1)) for v in new]).flatten()
    from_history = (got != new).sum().item()
    assert 60 < from_history < 140  # about half the answers are older images
    assert (got[:50] < 100).any()  # among them the first ones stored
    assert len(pool) == 4


def test_pool_state_round_trip_replays_draws():
    a = ImagePool(size=3, seed=5)
    for i in range(5):
        a.query(torch.full((2, 1, 2, 2), float(i)))
    b = ImagePool(size=3, seed=99)
    b.load_state_dict(a.state_dict())
    x = torch.randn(6, 1, 2, 2)
    assert torch.equal(a.query(x), b.query(x))
    assert torch.equal(ImagePool(0).query(x), x)
    with pytest.raises(ValueError, match="size"):
        ImagePool(-1)
