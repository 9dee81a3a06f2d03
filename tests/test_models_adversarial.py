"""Adversarial inputs to the model library: batch sizes BatchNorm cannot train on, inputs
too small for IBN, wrong shapes and dtypes, config values of the wrong type, group BN in
float64, low-precision autocast, and weights / checkpoints that are damaged, stale, from
other layouts or that would not load back. Errors must name the argument or file, and a
checkpoint that cannot load must never replace a good one."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from smcr.models import (
    ModelConfig,
    build_model,
    convert_dsbn,
    load_checkpoint,
    load_pretrained,
    load_state_file,
    save_checkpoint,
)
from smcr.models.dsbn import collapse_dsbn
from smcr.models.group_bn import convert_group_bn, set_bn_group


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _net(**kw):
    return build_model(**{"arch": "resnet18", "width": 0.125, **kw})


# ------------------------------------------------------------------------ forward pass


def test_training_batch_of_one_is_refused_clearly_and_eval_still_works():
    m = _net().train()
    with pytest.raises(ValueError, match=r"x: .*neck at least 2 samples.*batch of 1.*model.eval\(\)"):
        m(torch.randn(1, 3, 32, 16))
    assert m(torch.randn(2, 3, 32, 16)).shape == (2, 64)
    assert m.eval()(torch.randn(1, 3, 32, 16)).shape == (1, 64)
    m.train()
    m.neck.eval()  # a frozen neck normalises with its running statistics: any batch works
    assert m(torch.randn(1, 3, 32, 16)).shape == (1, 64)


def test_dsbn_training_needs_two_samples_per_domain_half():
    m = _net(dsbn=True).train()
    with pytest.raises(ValueError, match="per domain half"):
        m(torch.randn(2, 3, 32, 16))
    assert m(torch.randn(4, 3, 32, 16)).shape == (4, 64)


@pytest.mark.parametrize("hw", [(1, 1), (16, 16), (16, 8)])
def test_ibn_input_too_small_is_refused_in_eval_mode_too(hw):
    m = _net(arch="resnet18_ibn_a").eval()
    with pytest.raises(ValueError, match=f"x of {hw[0]}x{hw[1]} pixels is too small for an IBN"):
        m(torch.randn(2, 3, *hw))


@pytest.mark.parametrize("arch", ["resnet18_ibn_a", "resnet50_ibn_a"])
@pytest.mark.parametrize("hw", [(17, 9), (33, 5), (1, 17), (65, 31)])
def test_odd_input_sizes_just_above_the_ibn_limit_work(arch, hw):
    m = build_model(arch=arch, width=0.0625).eval()
    y = m(torch.randn(2, 3, *hw))
    assert y.shape == (2, m.embedding_dim) and torch.isfinite(y).all()


def test_plain_resnet_takes_a_one_pixel_image():
    m = _net().eval()
    assert torch.isfinite(m(torch.randn(2, 3, 1, 1))).all()


@pytest.mark.parametrize(
    "x, err, match",
    [
        (torch.randn(3, 32, 16), ValueError, r"x must be \(B, 3, H, W\) images, got shape \(3, 32"),
        (torch.randn(2, 1, 32, 16), ValueError, r"x must be \(B, 3, H, W\).*\(2, 1, 32, 16\)"),
        (torch.zeros(2, 3, 32, 16, dtype=torch.uint8), TypeError, "floating-point.*uint8"),
        ([[1.0]], TypeError, "x must be a torch.Tensor"),
    ],
)
def test_bad_inputs_name_x(x, err, match):
    with pytest.raises(err, match=match):
        _net().eval()(x)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("pooling", ["avg", "gem"])
def test_cpu_autocast_forward_and_backward_are_finite(dtype, pooling):
    m = _net(arch="resnet18_ibn_a", pooling=pooling).train()
    with torch.autocast("cpu", dtype=dtype):
        y = m(torch.randn(4, 3, 32, 16))
    y.float().pow(2).sum().backward()
    assert torch.isfinite(y.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gem_of_small_half_precision_activations_does_not_underflow(dtype):
    from smcr.models import GeM

    x = torch.full((2, 4, 3, 2), 1e-4)  # (1e-4) ** 3 underflows float16
    x[:, 0] = 0.0  # clamped to eps
    ref = GeM(3.0)(x)
    half = GeM(3.0).to(dtype)(x.to(dtype))  # a half network, no autocast
    assert half.dtype == dtype
    torch.testing.assert_close(half.float(), ref, rtol=2e-2, atol=0)
    g = GeM(3.0)
    xa = x.to(dtype).requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        y = g(xa)
    torch.testing.assert_close(y.float(), ref, rtol=2e-2, atol=0)
    y.sum().backward()
    assert torch.isfinite(g.p.grad) and torch.isfinite(xa.grad).all()


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"last_stride": 2.0}, "last_stride must be the int 1 or 2"),
        ({"last_stride": True}, "last_stride must be the int 1 or 2"),
        ({"width": True}, "width must be a finite number"),
        ({"width": math.inf}, "width must be a finite number"),
        ({"gem_p": True}, "gem_p must be a finite number"),
        ({"dsbn": "no"}, "dsbn must be True or False, got 'no'"),
    ],
)
def test_config_values_of_the_wrong_type_are_refused_when_built(kw, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kw)


def test_config_from_a_non_dict_is_a_type_error():
    with pytest.raises(TypeError, match="model config must be a dict, got list"):
        ModelConfig.from_dict([("arch", "resnet18")])


# -------------------------------------------------------------------------- group BN


def test_group_bn_keeps_the_networks_dtype():
    torch.manual_seed(0)
    m = _net().double().train()
    ref = _net().double().train()
    ref.load_state_dict(m.state_dict())
    convert_group_bn(m, 2)
    assert m.neck.weight.dtype == torch.float64
    x = torch.randn(4, 3, 32, 16, dtype=torch.float64)
    y = m.backbone(x)
    # groups of 2: the same as the plain network on each pair
    want = torch.cat([ref.backbone(x[:2]), ref.backbone(x[2:])])
    torch.testing.assert_close(y, want)


@pytest.mark.parametrize("group", [1, True, 2.0])
def test_group_of_one_sample_is_refused(group):
    with pytest.raises(ValueError, match="group must be 0 .* or an int >= 2"):
        convert_group_bn(_net(), group)
    m = convert_group_bn(_net(), 4)
    with pytest.raises(ValueError, match="group must be"):
        set_bn_group(m, group)


def test_group_of_one_image_is_fine_without_a_batchnorm1d():
    # a 2-D batch norm over one image still has H x W values per channel
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    convert_group_bn(net, 1)
    x = torch.randn(3, 3, 8, 8)
    y = net(x)
    want = torch.cat([torch.nn.functional.batch_norm(net[0](x[i:i + 1]), None, None,
                                                     net[1].weight, net[1].bias, True)
                      for i in range(3)])
    torch.testing.assert_close(y, want)
    set_bn_group(net, 1)


# ------------------------------------------------------------------ weights and files


def _damaged_files(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(_net(), good)
    raw = good.read_bytes()
    files = {
        "truncated": raw[: len(raw) // 2],
        "empty": b"",
        "text": b"hello, not a checkpoint",
    }
    out = {}
    for name, data in files.items():
        (tmp_path / f"{name}.pt").write_bytes(data)
        out[name] = tmp_path / f"{name}.pt"
    torch.save({"conv1.weight": np.zeros(3)}, tmp_path / "numpy.pt")
    out["numpy"] = tmp_path / "numpy.pt"
    return out


@pytest.mark.parametrize("kind", ["truncated", "empty", "text", "numpy"])
def test_damaged_weight_files_raise_value_error_naming_the_file(tmp_path, kind):
    path = _damaged_files(tmp_path)[kind]
    with pytest.raises(ValueError, match=f"{kind}.pt' is not a weights file"):
        load_state_file(path)
    with pytest.raises(ValueError, match=f"{kind}.pt"):
        load_pretrained(_net(), path)
    with pytest.raises(ValueError, match=f"{kind}.pt' is not an smcr checkpoint"):
        load_checkpoint(path)


def test_a_folder_is_not_a_weights_file(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        load_pretrained(_net(), tmp_path)


def test_pretrained_file_that_fits_nothing_is_refused_and_a_partial_fit_warns(tmp_path):
    torch.save({"encoder.block.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="none of its tensors fits a resnet18 network"):
        _net(pretrained=str(tmp_path / "other.pth"))
    sd = {k: v for k, v in _net().state_dict().items() if ".layer4." not in k}
    torch.save({"state_dict": sd}, tmp_path / "partial.pth")
    with pytest.warns(UserWarning, match="(?s)only partly fit.*missing"):
        m = _net(pretrained=str(tmp_path / "partial.pth"))
    assert m.load_report.loaded and not m.load_report.ok
    torch.save(_net().state_dict(), tmp_path / "full.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _net(pretrained=str(tmp_path / "full.pth")).load_report.ok


def test_dataparallel_prefixed_state_dict_loads(tmp_path):
    src = _net(arch="resnet18_ibn_a").eval()
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, tmp_path / "dp.pth")
    dst = _net(arch="resnet18_ibn_a").eval()
    report = load_pretrained(dst, tmp_path / "dp.pth", strict=True)
    assert report.unexpected == [] and report.missing == []
    x = torch.randn(2, 3, 32, 16)
    torch.testing.assert_close(dst(x), src(x))
    # the same inside an smcr checkpoint
    save_checkpoint(src, tmp_path / "ck.pt")
    obj = torch.load(tmp_path / "ck.pt", weights_only=True)
    obj["state_dict"] = {"module." + k: v for k, v in obj["state_dict"].items()}
    torch.save(obj, tmp_path / "ck_dp.pt")
    torch.testing.assert_close(load_checkpoint(tmp_path / "ck_dp.pt").eval()(x), src(x))


@pytest.mark.parametrize(
    "extra, name",
    [
        ({"epoch": np.int64(3)}, "epoch"),
        ({"image_size": np.array([64, 32])}, "image_size"),
        ({"metrics": {"mAP": np.float32(0.5)}}, "metrics"),
        ({"root": __import__("pathlib").Path("/data")}, "root"),
    ],
)
def test_save_refuses_extras_a_weights_only_load_cannot_read(tmp_path, extra, name):
    path = tmp_path / "model.pt"
    model = _net()
    save_checkpoint(model, path, epoch=1)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=f"extra entry '{name}'.*not plain data"):
        save_checkpoint(model, path, **extra)
    assert path.read_bytes() == before  # the good checkpoint is untouched
    assert load_checkpoint(path) is not None
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_save_refuses_a_config_that_does_not_describe_the_network(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(_net(), path)
    before = path.read_bytes()
    converted = convert_dsbn(_net())  # config still says dsbn=False
    with pytest.raises(ValueError, match="DSBN layers but model.config.dsbn is False"):
        save_checkpoint(converted, path)
    collapsed = collapse_dsbn(_net(dsbn=True))  # config still says dsbn=True
    with pytest.raises(ValueError, match="has no DSBN layers but model.config.dsbn is True"):
        save_checkpoint(collapsed, path)
    assert path.read_bytes() == before
    # with the config updated, both save and load back
    collapsed.config = dataclasses.replace(collapsed.config, dsbn=False)
    save_checkpoint(collapsed, path)
    x = torch.randn(2, 3, 32, 16)
    torch.testing.assert_close(load_checkpoint(path).eval()(x), collapsed.eval()(x))


def test_save_onto_a_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        save_checkpoint(_net(), tmp_path)


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save_checkpoint(_net(), path, epoch=1)
    before = path.read_bytes()
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        if isinstance(obj, dict) and "state_dict" in obj:
            f.write(b"PK\x03\x04 half a zip")
            raise KeyboardInterrupt
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_net(), path, epoch=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert load_checkpoint(path) is not None


def test_checkpoint_mismatch_names_keys_and_shapes(tmp_path):
    save_checkpoint(_net(), tmp_path / "ck.pt")
    obj = torch.load(tmp_path / "ck.pt", weights_only=True)
    obj["state_dict"]["neck.weight"] = obj["state_dict"]["neck.weight"][:3]
    del obj["state_dict"]["backbone.conv1.weight"]
    obj["state_dict"]["head.extra"] = torch.zeros(1)
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(ValueError) as info:
        load_checkpoint(tmp_path / "bad.pt")
    msg = str(info.value)
    assert "bad.pt" in msg
    assert "missing keys (1): backbone.conv1.weight" in msg
    assert "unexpected keys (1): head.extra" in msg
    assert "neck.weight: expected [64], got [3]" in msg


def test_checkpoint_from_a_newer_version_says_so(tmp_path):
    save_checkpoint(_net(), tmp_path / "ck.pt")
    obj = torch.load(tmp_path / "ck.pt", weights_only=True)
    obj["config"]["attention"] = "cbam"
    torch.save(obj, tmp_path / "new.pt")
    with pytest.raises(ValueError, match=r"does not know \(\['attention'\]\).*newer smcr"):
        load_checkpoint(tmp_path / "new.pt")


def test_saved_checkpoint_is_weights_only_plain_data(tmp_path):
    m = _net(arch="resnet18_ibn_a", dsbn=True, pooling="gem", num_classes=3)
    convert_group_bn(m, 2)
    save_checkpoint(m, tmp_path / "ck.pt", epoch=5, image_size=[32, 16], metrics={"mAP": 0.1})
    obj = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert obj["format"] == "smcr-reid-v1" and obj["epoch"] == 5
    assert all(isinstance(v, torch.Tensor) for v in obj["state_dict"].values())
    x = torch.randn(4, 3, 32, 16)
    torch.testing.assert_close(load_checkpoint(tmp_path / "ck.pt").eval()(x), m.eval()(x))


def test_gem_and_group_bn_name_bad_arguments():
    from smcr.models.reid import GeM

    with pytest.raises(ValueError, match=r"x must be a \(B, C, H, W\) floating-point"):
        GeM()(torch.randn(2, 3, 4))  # an IndexError inside torch before
    with pytest.raises(ValueError, match="x must be"):
        GeM()(torch.ones(2, 3, 4, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got NoneType"):
        convert_group_bn(None, 0)  # an AttributeError before
    with pytest.raises(TypeError, match="model must be"):
        set_bn_group("net", 2)
