"""Shapes of the translator's networks and the checks of its config."""

import pytest
import torch
from smcr.translate import (
    MetricNet,
    PatchDiscriminator,
    ResnetGenerator,
    TranslateConfig,
    TranslateError,
    build_generators,
    load_config,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("size", [(32, 16), (64, 32)])
@pytest.mark.parametrize("blocks", [0, 2])
def test_generator_keeps_shape_and_range(size, blocks):
    g = ResnetGenerator(ngf=8, n_res_blocks=blocks)
    x = torch.rand(2, 3, *size) * 2 - 1
    y = g(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in g.modules()) == 5 + 2 * blocks
    assert all(not m.affine for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d))


def test_residual_generator_is_the_identity_when_its_change_is_zero():
    g = ResnetGenerator(ngf=8, n_res_blocks=1, residual=True)
    last = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.rand(2, 3, 32, 16) * 1.99 - 0.995
    torch.testing.assert_close(g(x), x, atol=1e-5, rtol=0)
    # a non-zero change moves the output, which stays in [-1, 1] and has a gradient
    torch.nn.init.normal_(last.weight, std=1.0)
    x = (torch.rand(2, 3, 32, 16) * 2 - 1).requires_grad_()
    y = g(x)
    assert (y - x).abs().max() > 0.1 and y.abs().max() <= 1.0
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_residual_is_a_config_switch():
    g_ab, _ = build_generators(TranslateConfig(ngf=8, n_res_blocks=1, residual=True))
    assert g_ab.residual
    assert not build_generators(TranslateConfig(ngf=8, n_res_blocks=1))[0].residual
    assert TranslateConfig.from_dict({"ngf": 8}).residual is False  # configs from before it
    with pytest.raises(TranslateError, match="residual"):
        TranslateConfig(residual=1)


def test_generator_rejects_sizes_not_divisible_by_4():
    with pytest.raises(ValueError, match="divisible by 4"):
        ResnetGenerator(ngf=4, n_res_blocks=1)(torch.zeros(1, 3, 30, 16))


@pytest.mark.parametrize("size,layers", [((64, 32), 3), ((32, 16), 2), ((256, 128), 3)])
def test_patch_discriminator_output(size, layers):
    d = PatchDiscriminator(ndf=8, d_layers=layers)
    out = d(torch.zeros(2, 3, *size))
    h, w = (s // 2**layers - 2 for s in size)
    assert out.shape == (2, 1, h, w)


@pytest.mark.parametrize("size", [(32, 16), (64, 32), (256, 128)])
def test_metric_net_gives_unit_64d_embeddings(size):
    m = MetricNet().eval()
    e = m(torch.rand(3, 3, *size) * 2 - 1)
    assert e.shape == (3, 64)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))


def test_build_generators_is_seeded():
    c = TranslateConfig(image_size=(32, 16), ngf=4, n_res_blocks=1, d_layers=2)
    a1, b1 = build_generators(c)
    a2, b2 = build_generators(c)
    assert all(torch.equal(p, q) for p, q in zip(a1.parameters(), a2.parameters(), strict=True))
    assert not torch.equal(next(a1.parameters()), next(b1.parameters()))
    a3, _ = build_generators(c.replace(seed=1))
    assert not torch.equal(next(a1.parameters()), next(a3.parameters()))


def test_config_defaults_follow_espgan():
    c = TranslateConfig()
    assert (c.mu1, c.mu2, c.mu3) == (10.0, 5.0, 5.0)
    assert (c.siamese_weight, c.siamese_margin, c.pool_size) == (2.0, 2.0, 50)
    assert (c.lr, c.beta1, c.beta2) == (2e-4, 0.5, 0.999)
    g = TranslateConfig.gpu()
    assert g.image_size == (256, 128) and g.n_res_blocks == 9 and g.ngf == 64


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(image_size=(30, 16)), "image_size"),
        (dict(image_size=(64,)), "image_size"),
        (dict(image_size=(32, 16), d_layers=3), "d_layers"),
        (dict(mu1=-1.0), "mu1"),
        (dict(epochs=2, decay_epochs=3), "decay_epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(lr=0), "lr"),
        (dict(beta1=1.0), "beta1"),
        (dict(siamese="yes"), "siamese"),
        (dict(ide_arch="vgg"), "ide_arch"),
        (dict(iters_per_epoch=0), "iters_per_epoch"),
    ],
)
def test_config_rejects_bad_values(kw, match):
    with pytest.raises(TranslateError, match=match):
        TranslateConfig(**kw)


def test_config_yaml_round_trip(tmp_path):
    c = TranslateConfig(image_size=(32, 16), d_layers=2, epochs=3, decay_epochs=1, siamese=True)
    import yaml

    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(c.to_dict()))
    assert load_config(p) == c
    assert load_config(p, epochs=5).epochs == 5
    p.write_text("gpu: true\nepochs: 4\ndecay_epochs: 2\n")
    assert load_config(p).image_size == (256, 128)
    p.write_text("epochz: 3\n")
    with pytest.raises(TranslateError, match="epochz"):
        load_config(p)
    with pytest.raises(TranslateError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
