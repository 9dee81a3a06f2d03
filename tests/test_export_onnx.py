"""ONNX export checked against onnxruntime on real (decoded, normalised) images.

onnx and onnxruntime are the `onnx` extra; `make test` installs them. A missing package
fails these tests with the install command rather than skipping them."""

import argparse
import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image
from smcr.export import ExportParityError, add_export_parser, export_onnx
from smcr.extract import load_image
from smcr.models import build_model, save_checkpoint

H, W = 64, 32


@pytest.fixture(scope="module", autouse=True)
def _needs_onnx():
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"ONNX export tests need {missing}: pip install onnx onnxruntime")


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    # smooth "real" images: gradients plus noise, decoded and normalised like the loader
    paths = []
    for i in range(6):
        yy, xx = np.mgrid[0:96, 0:48]
        img = np.stack([(yy * (i + 1)) % 256, (xx * 5) % 256, (yy + xx * i) % 256], -1)
        img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
        p = tmp_path / f"img{i}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    return tmp_path, torch.stack([load_image(p, (H, W)) for p in paths])


@pytest.mark.parametrize("arch, pooling", [("resnet18_ibn_a", "gem"), ("resnet50_ibn_a", "avg")])
def test_onnx_matches_pytorch(tmp_path, images, arch, pooling):
    model = build_model(arch=arch, width=0.125, pooling=pooling, num_classes=5).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    _, x = images
    report = export_onnx(model, tmp_path / "m.onnx", image_size=(H, W), sample_inputs=x)
    assert report.checked and report.num_inputs == 6
    assert report.min_cosine >= 0.999 and report.max_abs_diff < 1e-3
    assert "onnxruntime" in str(report)
    assert model.training is False  # the caller's model is untouched

    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"images": x[:3].numpy()})[0]  # another batch size: dynamic axis
    assert out.shape == (3, model.embedding_dim)


def test_parity_failure_raises(tmp_path, images):
    model = build_model(arch="resnet18", width=0.125).eval()
    with pytest.raises(ExportParityError, match="below the required cosine"):
        export_onnx(
            model, tmp_path / "m.onnx", image_size=(H, W), sample_inputs=images[1], min_cosine=1.5
        )
    rep = export_onnx(model, tmp_path / "n.onnx", image_size=(H, W), check=False)
    assert not rep.checked and (tmp_path / "n.onnx").is_file()
    with pytest.raises(ValueError, match="sample_inputs"):
        export_onnx(model, tmp_path / "o.onnx", image_size=(H, W), sample_inputs=torch.rand(3, 3))


def test_export_cli(tmp_path, images, capsys):
    folder, _ = images
    model = build_model(arch="resnet18_ibn_a", width=0.125).eval()
    save_checkpoint(model, tmp_path / "m.pth")
    parser = argparse.ArgumentParser(prog="smcr")
    add_export_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "export",
            "--format",
            "onnx",
            "--checkpoint",
            str(tmp_path / "m.pth"),
            "-o",
            str(tmp_path / "cli.onnx"),
            "--height",
            str(H),
            "--width",
            str(W),
            "--images",
            str(folder),
        ]
    )
    assert args.func(args) == 0
    assert "cosine min" in capsys.readouterr().out
    assert (tmp_path / "cli.onnx").is_file()


def test_checkpoint_path_is_traced_at_its_recorded_size(tmp_path):
    # export_onnx(path) used to trace at 256x128 whatever the checkpoint was trained at
    import onnx

    model = build_model(arch="resnet18_ibn_a", width=0.125).eval()
    save_checkpoint(model, tmp_path / "m.pth", image_size=[H, W])
    export_onnx(tmp_path / "m.pth", tmp_path / "m.onnx", check=False)
    dims = onnx.load(str(tmp_path / "m.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[2:]] == [H, W]
    export_onnx(tmp_path / "m.pth", tmp_path / "n.onnx", image_size=(32, 16), check=False)
    dims = onnx.load(str(tmp_path / "n.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[2:]] == [32, 16]  # an explicit size still wins
