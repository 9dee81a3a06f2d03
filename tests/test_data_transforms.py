"""Tensor augmentation: resize, flip, pad + crop, normalise, random erasing, per image and
batched, deterministic with a generator."""

import pytest
import torch
from smcr.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    TrainTransform,
    hflip,
    normalize,
    pad_crop,
    random_erasing,
    resize,
)


def _imgs(b=6, h=32, w=16):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)


def test_resize_shapes_and_range():
    x = _imgs()
    y = resize(x, (64, 32))
    assert y.shape == (6, 3, 64, 32) and y.dtype == torch.float32
    assert float(y.min()) >= 0 and float(y.max()) <= 255
    assert resize(x[0], (16, 8)).shape == (3, 16, 8)
    with pytest.raises(ValueError, match="shape"):
        resize(torch.zeros(2, 2), (4, 4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        resize([1, 2], (4, 4))


def test_hflip_probabilities():
    x = _imgs().float()
    assert torch.equal(hflip(x, 1.0), x.flip(-1))
    assert torch.equal(hflip(x, 0.0), x)
    g = torch.Generator().manual_seed(1)
    y = hflip(x, 0.5, g)
    flipped = [torch.equal(y[i], x[i].flip(-1)) for i in range(6)]
    kept = [torch.equal(y[i], x[i]) for i in range(6)]
    assert all(a or b for a, b in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)


def test_pad_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = _imgs().float()
    y = pad_crop(x, 10, torch.Generator().manual_seed(2))
    assert y.shape == x.shape
    padded = torch.nn.functional.pad(x, (10, 10, 10, 10))
    for i in range(6):
        hits = [
            (dy, dx)
            for dy in range(21)
            for dx in range(21)
            if torch.equal(padded[i, :, dy : dy + 32, dx : dx + 16], y[i])
        ]
        assert hits
    assert torch.equal(pad_crop(x, 0), x)


def test_normalize_and_erasing():
    x = torch.rand(4, 3, 32, 16)
    y = normalize(x)
    m = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(y, (x - m) / s)
    z = random_erasing(x + 1.0, p=1.0, value=0.0, generator=torch.Generator().manual_seed(3))
    for i in range(4):
        erased = (z[i] == 0).all(0)
        frac = erased.float().mean().item()
        assert 0.02 * 0.6 <= frac <= 0.4 * 1.2
        rows, cols = erased.nonzero(as_tuple=True)  # one axis-aligned rectangle
        assert erased[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    assert torch.equal(random_erasing(x, p=0.0), x)


def test_train_transform_per_image_and_batched_deterministic():
    t = TrainTransform(size=(64, 32))
    x = _imgs()
    a = t(x, torch.Generator().manual_seed(5))
    b = t(x, torch.Generator().manual_seed(5))
    assert a.shape == (6, 3, 64, 32) and torch.equal(a, b) and torch.isfinite(a).all()
    one = t(x[0])
    assert one.shape == (3, 64, 32)
    ev = EvalTransform(size=(64, 32))
    assert torch.equal(ev(x), ev(x)) and ev(x[0]).shape == (3, 64, 32)
    assert torch.allclose(ev(x)[0], ev(x[0]), atol=1e-5)
