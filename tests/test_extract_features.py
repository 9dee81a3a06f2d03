"""smcr.extract over tensors, image folders, datasets and checkpoints; flip averaging,
bf16 autocast; sharded extraction under torch.distributed (two gloo processes)."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from smcr.extract import ExtractResult, ImageFolder, extract, list_images, load_image
from smcr.models import build_model, save_checkpoint

H, W = 64, 32


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(arch="resnet18_ibn_a", width=0.125).eval()


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    names = ["0002_c1s1_000451_03.jpg", "0001_c2s1_000001_01.png", "0007_c3s2_000100_02.jpg"]
    for n in names:
        Image.fromarray(rng.integers(0, 255, (80, 40, 3), dtype=np.uint8)).save(tmp_path / n)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_tensor_input_matches_model_and_batches(model):
    x = torch.randn(10, 3, H, W)
    res = extract(model, x, batch_size=4, device="cpu")
    assert isinstance(res, ExtractResult) and len(res) == 10
    assert res.names == [str(i) for i in range(10)]
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(res.features, ref, rtol=1e-4, atol=1e-5)
    assert res.features.dtype == torch.float32


def test_flip_average(model):
    x = torch.randn(3, 3, H, W)
    res = extract(model, x, batch_size=2, device="cpu", flip=True)
    with torch.no_grad():
        ref = F.normalize(model(x) + model(torch.flip(x, dims=[3])), dim=1)
    torch.testing.assert_close(res.features, ref, rtol=1e-4, atol=1e-5)


def test_folder_is_read_in_sorted_order(folder, model):
    paths = list_images(folder)
    assert [p.name for p in paths] == sorted(p for p in os.listdir(folder) if p != "notes.txt")
    img = load_image(paths[0], (H, W))
    assert img.shape == (3, H, W)
    # ImageNet normalisation of the bicubic-resized RGB image
    raw = np.asarray(Image.open(paths[0]).convert("RGB").resize((W, H), Image.BICUBIC)) / 255.0
    expect = (
        torch.from_numpy(raw).permute(2, 0, 1).float()
        - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    ) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(img, expect)
    res = extract(model, folder, image_size=(H, W), batch_size=2, device="cpu")
    assert res.names == [p.name for p in paths]
    stack = torch.stack([load_image(p, (H, W)) for p in paths])
    with torch.no_grad():
        torch.testing.assert_close(res.features, model(stack), rtol=1e-4, atol=1e-5)


def test_dataset_items_give_names_and_meta(model):
    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return torch.full((3, H, W), float(i)), 10 + i, i % 2, f"img{i}.jpg"

    res = extract(model, DS(), batch_size=2, device="cpu")
    assert res.names == [f"img{i}.jpg" for i in range(5)]
    assert res.meta[3] == (13, 1, "img3.jpg")
    ds = ImageFolder  # a folder dataset is a dataset too
    assert issubclass(ds, torch.utils.data.Dataset)


def test_checkpoint_path_and_mode_restored(tmp_path, model):
    save_checkpoint(model, tmp_path / "m.pth")
    x = torch.randn(2, 3, H, W)
    res = extract(str(tmp_path / "m.pth"), x, device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(res.features, model(x), rtol=1e-4, atol=1e-5)
    model.train()
    extract(model, torch.randn(2, 3, H, W), device="cpu")
    assert model.training
    model.eval()


def test_bf16_autocast_on_cpu(model):
    x = torch.randn(4, 3, H, W)
    exact = extract(model, x, device="cpu", amp=False).features
    low = extract(model, x, device="cpu", amp=True, channels_last=True).features
    assert float(F.cosine_similarity(exact, low).min()) > 0.98


@pytest.mark.parametrize(
    "data, kwargs, err, match",
    [
        (torch.randn(2, 1, H, W), {}, ValueError, "images must be"),
        (torch.ones(2, 3, H, W, dtype=torch.uint8), {}, TypeError, "floating-point"),
        (42, {}, TypeError, "data must be"),
        ("/nonexistent/folder", {}, FileNotFoundError, "no such folder"),
        (torch.randn(2, 3, H, W), {"batch_size": 0}, ValueError, "batch_size"),
        (torch.randn(2, 3, H, W), {"image_size": (64,)}, ValueError, "image_size"),
        (torch.randn(2, 3, H, W), {"device": "tpu"}, ValueError, "device"),
    ],
)
def test_bad_arguments(model, data, kwargs, err, match):
    with pytest.raises(err, match=match):
        extract(model, data, **{"device": "cpu", **kwargs})


def test_bad_model_and_items():
    with pytest.raises(TypeError, match="model must be"):
        extract(3, torch.randn(1, 3, H, W))

    class Bad(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return ("x", 1)

    with pytest.raises(TypeError, match="items must be"):
        extract(torch.nn.Flatten(), Bad(), device="cpu")


def _dist_worker(rank, world, port, x, out):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        net = build_model(arch="resnet18", width=0.125).eval()
        res = extract(net, x, batch_size=3, device="cpu")
        if rank == 0:
            torch.save({"names": res.names, "features": res.features}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_shards_are_gathered_in_order(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    x = torch.randn(7, 3, H, W)
    out = tmp_path / "rank0.pt"
    mp.spawn(_dist_worker, args=(2, port, x, str(out)), nprocs=2, join=True)
    got = torch.load(out)
    torch.manual_seed(0)
    net = build_model(arch="resnet18", width=0.125).eval()
    ref = extract(net, x, batch_size=3, device="cpu")
    assert got["names"] == ref.names
    torch.testing.assert_close(got["features"], ref.features, rtol=1e-4, atol=1e-5)
