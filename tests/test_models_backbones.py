"""Backbones: published layouts and parameter counts, the re-ID head, DSBN."""

import pytest
import torch
from smcr.models import (
    DSBN,
    IBN,
    GeM,
    ModelConfig,
    ReIDModel,
    build_model,
    convert_dsbn,
    resnet,
    set_dsbn_domain,
)
from torch import nn

# torchvision's ResNet parameter counts (ImageNet models) less their fc layer (512/2048 x
# 1000 + 1000). IBN-a swaps half of a BN for an affine IN of the same size: same counts
# (IBN-Net's README: IBN-ResNet50-a 25.56 M with fc).
PUBLISHED = {
    "resnet18": 11_689_512 - 513_000,
    "resnet34": 21_797_672 - 513_000,
    "resnet50": 25_557_032 - 2_049_000,
}


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
@pytest.mark.parametrize("ibn", [False, True])
def test_parameter_counts_match_published(arch, ibn):
    net = resnet(arch + ("_ibn_a" if ibn else ""), last_stride=1)
    assert sum(p.numel() for p in net.parameters()) == PUBLISHED[arch]


def test_ibn_a_layout():
    net = resnet("resnet50_ibn_a")
    for li, planes in ((1, 64), (2, 128), (3, 256)):
        for block in getattr(net, f"layer{li}"):
            assert isinstance(block.bn1, IBN)
            assert block.bn1.IN.num_features == planes // 2 and block.bn1.IN.affine
            assert block.bn1.BN.num_features == planes - planes // 2
            assert isinstance(block.bn2, nn.BatchNorm2d) and isinstance(block.bn3, nn.BatchNorm2d)
    for block in net.layer4:
        assert type(block.bn1) is nn.BatchNorm2d
    assert type(net.bn1) is nn.BatchNorm2d  # the stem stays BN in IBN-a
    # last stride 1: layer4's first block keeps the resolution (stride on its 3x3 conv).
    assert net.layer4[0].conv2.stride == (1, 1)
    assert net.layer4[0].downsample[0].stride == (1, 1)
    assert net.layer3[0].conv2.stride == (2, 2)


def test_ibn_splits_channels():
    ibn = IBN(6).eval()
    x = torch.randn(2, 6, 5, 4)
    y = ibn(x)
    torch.testing.assert_close(y[:, :3], nn.functional.instance_norm(x[:, :3], eps=1e-5))
    torch.testing.assert_close(y[:, 3:], ibn.BN(x[:, 3:]))


@pytest.mark.parametrize("last_stride, hw", [(1, (16, 8)), (2, (8, 4))])
def test_output_resolution_and_width(last_stride, hw):
    net = resnet("resnet50_ibn_a", last_stride=last_stride, width=0.125).eval()
    assert net.out_channels == 256
    out = net(torch.randn(1, 3, 256, 128))
    assert out.shape == (1, 256, *hw)
    small = resnet("resnet18", width=0.25)
    assert small.out_channels == 128 and small.conv1.out_channels == 16


def test_reid_head_embedding_neck_and_classifier():
    model = build_model(arch="resnet18_ibn_a", width=0.125, num_classes=7, pooling="gem")
    assert model.neck.bias.requires_grad is False
    assert torch.count_nonzero(model.neck.bias) == 0
    model.train()
    out = model.forward_all(torch.randn(4, 3, 64, 32))
    assert out.embedding.shape == (4, 64) and out.logits.shape == (4, 7)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(4))
    # One optimiser step moves the neck's weight, never its bias.
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    (out.logits.logsumexp(1).mean() + out.pooled.pow(2).mean()).backward()
    opt.step()
    assert torch.count_nonzero(model.neck.bias) == 0
    model.eval()
    emb = model(torch.randn(2, 3, 64, 32))
    assert emb.shape == (2, 64)
    assert build_model(width=0.125).classifier is None


def test_gem_pooling():
    x = torch.rand(2, 3, 4, 5) + 0.1
    torch.testing.assert_close(GeM(p=1.0)(x), x.mean(dim=(2, 3)))
    torch.testing.assert_close(GeM(p=3.0)(x), x.pow(3).mean(dim=(2, 3)).pow(1 / 3))
    assert isinstance(GeM().p, nn.Parameter)


def test_config_validation_and_overrides():
    cfg = ModelConfig(arch="resnet34", width=0.25)
    model = build_model(cfg, num_classes=3)
    assert model.config.arch == "resnet34" and model.config.num_classes == 3
    assert build_model({"arch": "resnet18", "width": 0.125}).config.arch == "resnet18"
    for bad, match in [
        (dict(arch="resnet101"), "arch must be one of"),
        (dict(pooling="max"), "pooling must be one of"),
        (dict(last_stride=3), "last_stride"),
        (dict(width=0), "width"),
        (dict(num_classes=-1), "num_classes"),
    ]:
        with pytest.raises(ValueError, match=match):
            ModelConfig(**bad)
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"arch": "resnet18", "depth": 50})
    with pytest.raises(TypeError, match="config must be"):
        build_model("resnet50")


def test_dsbn_routes_halves_and_uses_target_in_eval():
    model = build_model(arch="resnet18_ibn_a", width=0.125, dsbn=True)
    dsbns = [m for m in model.modules() if isinstance(m, DSBN)]
    # every BN (trunk, IBN's BN half, neck) is converted; IBN's IN is not.
    assert not any(
        type(m) in (nn.BatchNorm1d, nn.BatchNorm2d)
        for m in model.modules()
        if not any(m is d.bn_s or m is d.bn_t for d in dsbns)
    )
    assert isinstance(model.backbone.layer1[0].bn1.BN, DSBN)
    assert isinstance(model.backbone.layer1[0].bn1.IN, nn.InstanceNorm2d)
    assert model.neck.bn_t.bias.requires_grad is False

    bn = DSBN(nn.BatchNorm1d(3))
    bn.train()
    src, tgt = torch.randn(4, 3) + 5, torch.randn(4, 3) - 5
    out = bn(torch.cat([src, tgt]))
    torch.testing.assert_close(out[:4], nn.functional.batch_norm(src, None, None, training=True))
    assert bool((bn.bn_s.running_mean > 0).all()) and bool((bn.bn_t.running_mean < 0).all())
    with pytest.raises(ValueError, match="even"):
        bn(torch.randn(3, 3))
    bn.eval()
    x = torch.randn(2, 3)
    torch.testing.assert_close(bn(x), bn.bn_t(x))
    set_dsbn_domain(bn, "source")
    torch.testing.assert_close(bn(x), bn.bn_s(x))
    with pytest.raises(ValueError, match="domain must be"):
        set_dsbn_domain(bn, "both")
    with pytest.raises(TypeError):
        DSBN(nn.LayerNorm(3))


def test_convert_dsbn_keeps_parameters():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    net[1].weight.data.fill_(2.0)
    convert_dsbn(net)
    assert isinstance(net[1], DSBN)
    assert float(net[1].bn_s.weight[0].detach()) == 2.0
    assert float(net[1].bn_t.weight[0].detach()) == 2.0


def test_model_is_a_module_with_default_config():
    model = ReIDModel()
    assert model.config.arch == "resnet50_ibn_a" and model.embedding_dim == 2048
