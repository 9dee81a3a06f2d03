"""Weight files: torchvision / IBN-Net / SpCL layouts load one-to-one, with a report;
smcr checkpoints round-trip; nothing is fetched from the network."""

import pytest
import torch
from smcr.models import (
    build_model,
    load_checkpoint,
    load_pretrained,
    load_state_file,
    resnet,
    save_checkpoint,
)


def _bn(prefix, c, g):
    return {
        f"{prefix}.weight": torch.rand(c, generator=g),
        f"{prefix}.bias": torch.rand(c, generator=g),
        f"{prefix}.running_mean": torch.rand(c, generator=g),
        f"{prefix}.running_var": torch.rand(c, generator=g) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(7),
    }


def torchvision_layout_state(arch="resnet50", ibn=False, seed=0):
    """A random state dict written from the published layout (not from our model):
    torchvision's ResNet names and shapes, with IBN-Net's `bn1.IN` / `bn1.BN` split in
    layer1-3 for IBN-a, and the 1000-way ImageNet `fc`."""
    g = torch.Generator().manual_seed(seed)
    bottleneck = arch == "resnet50"
    blocks = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}[arch]
    exp = 4 if bottleneck else 1
    sd = {"conv1.weight": torch.randn(64, 3, 7, 7, generator=g), **_bn("bn1", 64, g)}
    inplanes = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), start=1):
        for b in range(n):
            p = f"layer{li}.{b}"
            if bottleneck:
                sd[f"{p}.conv1.weight"] = torch.randn(planes, inplanes, 1, 1, generator=g)
                sd[f"{p}.conv2.weight"] = torch.randn(planes, planes, 3, 3, generator=g)
                sd[f"{p}.conv3.weight"] = torch.randn(planes * 4, planes, 1, 1, generator=g)
                sd.update(_bn(f"{p}.bn2", planes, g))
                sd.update(_bn(f"{p}.bn3", planes * 4, g))
            else:
                sd[f"{p}.conv1.weight"] = torch.randn(planes, inplanes, 3, 3, generator=g)
                sd[f"{p}.conv2.weight"] = torch.randn(planes, planes, 3, 3, generator=g)
                sd.update(_bn(f"{p}.bn2", planes, g))
            if ibn and li < 4:
                half = planes // 2
                sd[f"{p}.bn1.IN.weight"] = torch.rand(half, generator=g)
                sd[f"{p}.bn1.IN.bias"] = torch.rand(half, generator=g)
                sd.update(_bn(f"{p}.bn1.BN", planes - half, g))
            else:
                sd.update(_bn(f"{p}.bn1", planes, g))
            if b == 0 and (li > 1 or inplanes != planes * exp):
                sd[f"{p}.downsample.0.weight"] = torch.randn(
                    planes * exp, inplanes, 1, 1, generator=g
                )
                sd.update(_bn(f"{p}.downsample.1", planes * exp, g))
            inplanes = planes * exp
    sd["fc.weight"] = torch.randn(1000, 512 * exp, generator=g)
    sd["fc.bias"] = torch.randn(1000, generator=g)
    return sd


def test_ibn_resnet50_loads_one_to_one_from_torchvision_layout(tmp_path):
    sd = torchvision_layout_state("resnet50", ibn=True)
    path = tmp_path / "resnet50_ibn_a.pth"
    torch.save(sd, path)
    trunk = resnet("resnet50_ibn_a")
    assert set(trunk.state_dict()) == set(sd) - {"fc.weight", "fc.bias"}  # one-to-one
    report = load_pretrained(trunk, path, strict=True)
    assert report.missing == [] and report.mismatched == []
    assert report.unexpected == ["fc.bias", "fc.weight"]
    for k, v in trunk.state_dict().items():
        torch.testing.assert_close(v, sd[k], msg=k)

    model = build_model(arch="resnet50_ibn_a", pretrained=str(path))
    rep = model.load_report
    assert rep.ok and len(rep.loaded) == len(sd) - 2
    assert set(rep.missing) == {"neck.weight", "neck.bias", "neck.running_mean", "neck.running_var"}
    torch.testing.assert_close(model.backbone.layer2[1].bn1.IN.weight, sd["layer2.1.bn1.IN.weight"])
    assert "missing (4)" in str(rep) and "unexpected (2)" in str(rep)


@pytest.mark.parametrize("arch", ["resnet18", "resnet34"])
def test_basic_block_nets_load_from_torchvision_layout(tmp_path, arch):
    sd = torchvision_layout_state(arch)
    torch.save({"state_dict": sd}, tmp_path / "w.pth.tar")  # a wrapped checkpoint
    trunk = resnet(arch)
    report = load_pretrained(trunk, tmp_path / "w.pth.tar", strict=True)
    assert report.missing == [] and len(report.loaded) == len(sd) - 2


def test_plain_resnet50_weights_into_ibn_model_report_the_difference(tmp_path):
    torch.save(torchvision_layout_state("resnet50", ibn=False), tmp_path / "r50.pth")
    trunk = resnet("resnet50_ibn_a")
    report = load_pretrained(trunk, tmp_path / "r50.pth")
    assert not report.ok
    assert "layer1.0.bn1.IN.weight" in report.missing
    assert "layer1.0.bn1.weight" in report.unexpected
    with pytest.raises(ValueError, match="strict load"):
        load_pretrained(trunk, tmp_path / "r50.pth", strict=True)


def test_spcl_checkpoint_layout_and_dsbn_target(tmp_path):
    model = build_model(arch="resnet18_ibn_a", width=0.125, num_classes=5)
    sd = model.state_dict()
    spcl = {}
    names = {"conv1": "0", "bn1": "1", "layer1": "3", "layer2": "4", "layer3": "5", "layer4": "6"}
    for k, v in sd.items():
        if k.startswith("backbone."):
            root, rest = k[len("backbone.") :].split(".", 1)
            spcl[f"module.base.{names[root]}.{rest}"] = v + 1
        elif k.startswith("neck."):
            spcl["module.feat_bn." + k[len("neck.") :]] = v + 1
        else:
            spcl["module." + k] = v + 1
    torch.save({"state_dict": spcl, "epoch": 3}, tmp_path / "spcl.pth.tar")
    target = build_model(arch="resnet18_ibn_a", width=0.125, num_classes=5, dsbn=True)
    report = load_pretrained(target, tmp_path / "spcl.pth.tar", strict=True)
    assert report.missing == [] and report.unexpected == []
    for branch in ("bn_s", "bn_t"):
        torch.testing.assert_close(getattr(target.neck, branch).weight, sd["neck.weight"] + 1)
        torch.testing.assert_close(
            getattr(target.backbone.layer1[0].bn1.BN, branch).running_var,
            sd["backbone.layer1.0.bn1.BN.running_var"] + 1,
        )


def test_shape_mismatch_is_reported_and_skipped(tmp_path):
    src = build_model(arch="resnet18", width=0.125, num_classes=10)
    save = {k: v for k, v in src.state_dict().items()}
    torch.save(save, tmp_path / "w.pth")
    dst = build_model(arch="resnet18", width=0.125, num_classes=4)
    before = dst.classifier.weight.clone()
    report = load_pretrained(dst, tmp_path / "w.pth")
    assert report.mismatched == [("classifier.weight", (4, 64), (10, 64))]
    assert report.ok is False
    torch.testing.assert_close(dst.classifier.weight, before)


def test_only_local_files(tmp_path):
    model = resnet("resnet18", width=0.125)
    with pytest.raises(ValueError, match="never downloaded"):
        load_pretrained(model, "https://example.org/resnet50.pth")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_pretrained(model, tmp_path / "absent.pth")
    with pytest.raises(TypeError, match="path to a local file"):
        load_state_file(123)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_state_file(tmp_path / "list.pth")


def test_checkpoint_round_trip(tmp_path):
    model = build_model(
        arch="resnet18_ibn_a", width=0.125, num_classes=3, dsbn=True, pooling="gem"
    ).eval()
    with torch.no_grad():
        model.pool.p.fill_(2.5)
    save_checkpoint(model, tmp_path / "ck" / "model.pth", epoch=4)
    loaded = load_checkpoint(tmp_path / "ck" / "model.pth").eval()
    assert loaded.config == model.config
    x = torch.randn(2, 3, 64, 32)
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ValueError, match="not an smcr checkpoint"):
        torch.save(model.state_dict(), tmp_path / "plain.pth")
        load_checkpoint(tmp_path / "plain.pth")
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(model, tmp_path / "x.pth", config={})
