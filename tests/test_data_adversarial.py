"""Adversarial inputs to the data pipeline and to smcr.extract: the identity sampler on
degenerate label sets, augmentation arguments out of range, odd image dtypes and sizes,
dataset indexing, and extraction over awkward folders, models and inputs. Every bad input
must end in a ValueError/TypeError naming the argument, never a wrong answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from smcr.data import (
    CorruptImageError,
    EvalTransform,
    RandomMultipleGallerySampler,
    ReidImageDataset,
    TrainTransform,
    hflip,
    load_image,
    normalize,
    pad_crop,
    random_erasing,
    resize,
)
from smcr.extract import extract, list_images
from smcr.models import build_model, save_checkpoint

# ----------------------------------------------------------------------------- sampler


def _groups(sampler: RandomMultipleGallerySampler) -> np.ndarray:
    return np.array(list(sampler)).reshape(-1, sampler.num_instances)


def test_sampler_degenerate_label_sets_still_give_k_per_identity():
    # one identity with one image, one with a single camera, K larger than any identity
    pids = [0, 1, 1, 1, 2, 2]
    cams = [0, 3, 3, 3, 1, 2]
    s = RandomMultipleGallerySampler(pids, cams, num_instances=8, seed=0)
    groups = _groups(s)
    assert groups.shape == (3, 8) and len(s) == 24
    p = np.asarray(pids)
    assert sorted(p[groups[:, 0]].tolist()) == [0, 1, 2]
    for g in groups:
        assert len(set(p[g].tolist())) == 1
    # fewer identities than a P of 4: a P x K loader yields no full batch, not a crash
    loader = torch.utils.data.DataLoader(torch.arange(6), batch_size=32, sampler=s, drop_last=True)
    assert list(loader) == []


def test_sampler_is_deterministic_per_seed_and_epoch_and_epochs_differ():
    rng = np.random.default_rng(0)
    pids = rng.integers(0, 30, 300).tolist()
    cams = rng.integers(0, 6, 300).tolist()
    a = RandomMultipleGallerySampler(pids, cams, 4, seed=7)
    b = RandomMultipleGallerySampler(np.asarray(pids), torch.tensor(cams), 4, seed=np.int64(7))
    epochs = []
    for e in range(3):
        a.set_epoch(e)
        b.set_epoch(np.int64(e))
        assert list(a) == list(b) == list(a)
        epochs.append(list(a))
    assert epochs[0] != epochs[1] != epochs[2]


@pytest.mark.parametrize(
    "pids, cams, kwargs, match",
    [
        ([0, 1], [0, 1], {"seed": -1}, "seed must be an int >= 0, got -1"),
        ([0, 1], [0, 1], {"seed": 1.5}, "seed must be an int >= 0, got 1.5"),
        ([0, 1], [0, 1], {"seed": "3"}, "seed must be an int"),
        ([0.5, 1.7], [0, 1], {}, "pids must hold whole numbers, got .*0.5"),
        ([0, 1], [0.0, float("nan")], {}, "camids must hold whole numbers"),
        (["a", "b"], [0, 1], {}, "pids must be a 1-D sequence of ints"),
        ([[0, 1]], [[0, 1]], {}, r"pids must be a 1-D sequence of ints, got shape \(1, 2\)"),
        ([], [], {}, "no identity"),
    ],
)
def test_sampler_bad_labels_and_seeds_are_refused(pids, cams, kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomMultipleGallerySampler(pids, cams, num_instances=2, **kwargs)


def test_sampler_whole_float_labels_are_accepted():
    s = RandomMultipleGallerySampler(np.array([0.0, 0.0, 1.0]), [0, 1, 0], 2)
    assert sorted(set(np.array([0, 0, 1])[list(s)].tolist())) == [0, 1]


def test_sampler_negative_epoch_is_refused_naming_it():
    s = RandomMultipleGallerySampler([0, 0, 1], [0, 1, 0], 2)
    with pytest.raises(ValueError, match="epoch must be an int >= 0, got -1"):
        s.set_epoch(-1)


# -------------------------------------------------------------------------- transforms


def test_random_erasing_returns_float_whether_or_not_it_erases():
    img = torch.randint(0, 256, (3, 64, 32), dtype=torch.uint8)
    assert random_erasing(img, p=0.0).dtype == torch.float32
    assert random_erasing(img, p=1.0).dtype == torch.float32
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (8, 3, 64, 32), dtype=torch.uint8)
    dtypes = {random_erasing(batch[:1], p=0.5, generator=g).dtype for _ in range(20)}
    assert dtypes == {torch.float32}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"p": 1.5}, r"p must be a probability in \[0, 1\], got 1.5"),
        ({"p": -0.1}, r"p must be a probability in \[0, 1\], got -0.1"),
        ({"p": float("nan")}, "p must be a probability"),
        ({"area": (0.4, 0.02)}, "area must be"),
        ({"area": (0.0, 0.4)}, "area must be"),
        ({"area": (0.1, 2.0)}, "area must be"),
        ({"min_aspect": 0.0}, "min_aspect must be in"),
        ({"min_aspect": 3.0}, "min_aspect must be in"),
        ({"attempts": 0}, "attempts must be an int >= 1"),
    ],
)
def test_random_erasing_bad_arguments(kwargs, match):
    x = torch.rand(2, 3, 16, 8)
    with pytest.raises(ValueError, match=match):
        random_erasing(x, **{"p": 1.0, **kwargs})


def test_random_erasing_equal_bounds_are_allowed():
    x = torch.ones(4, 3, 40, 20)
    out = random_erasing(x, p=1.0, area=(0.1, 0.1), min_aspect=1.0)
    erased = (out == 0).all(1).flatten(1).sum(1)  # (B,) erased pixels per image
    assert torch.all((erased - 80).abs() <= 10)  # ~10 % of 800 pixels, a square


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda x: hflip(x, p=2.0), ValueError, "p must be a probability"),
        (lambda x: pad_crop(x, 2.5), ValueError, "padding must be an int >= 0, got 2.5"),
        (lambda x: pad_crop(x, -1), ValueError, "padding must be an int >= 0, got -1"),
        (lambda x: normalize(x, std=(0.2, 0.0, 0.2)), ValueError, "std must be > 0"),
        (lambda x: normalize(x, mean=(0.5, float("nan"), 0.5)), ValueError, "mean must be finite"),
        (lambda x: normalize(x, mean=(0.5, 0.5)), ValueError, "mean must hold one value per"),
        (lambda x: normalize(x, std="abc"), ValueError, "std must be 3 numbers"),
        (lambda x: resize(x, 64), ValueError, r"size must be \(height, width\)"),
        (lambda x: resize(x, (64.0, 32.0)), ValueError, r"size must be \(height, width\)"),
        (lambda x: resize(x, (0, 32)), ValueError, r"size must be \(height, width\)"),
        (lambda x: resize(x, (8, 4), mode="lanczos"), ValueError, "mode must be one of"),
        (lambda x: resize(x[:, :, :0], (8, 4)), ValueError, "height and width >= 1"),
    ],
)
def test_transform_bad_arguments(call, err, match):
    with pytest.raises(err, match=match):
        call(torch.rand(2, 3, 16, 8))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.bool])
def test_transforms_refuse_integer_images_other_than_uint8(dtype):
    # a 16-bit image passed as int32 used to be treated as 0-1 floats: clipped to white
    x = torch.randint(0, 2 if dtype == torch.bool else 30000, (3, 20, 10)).to(dtype)
    for tf in (TrainTransform(size=(16, 8)), EvalTransform(size=(16, 8))):
        with pytest.raises(TypeError, match="uint8 .* or floating point"):
            tf(x)


def test_transforms_on_tiny_and_odd_images():
    g = torch.Generator().manual_seed(0)
    for h, w in [(1, 1), (1, 7), (5, 3), (257, 129)]:
        img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
        y = TrainTransform(size=(16, 8))(img, generator=g)
        assert y.shape == (3, 16, 8) and torch.isfinite(y).all()
        z = EvalTransform(size=(16, 8))(img)
        assert z.shape == (3, 16, 8) and torch.isfinite(z).all()
    # a 1 x 1 output size: the erasing rectangle never fits, nothing breaks
    y = TrainTransform(size=(1, 1))(torch.randint(0, 256, (4, 3, 9, 5), dtype=torch.uint8))
    assert y.shape == (4, 3, 1, 1)


def test_eval_transform_constant_image_is_its_normalised_colour():
    img = torch.full((3, 31, 17), 128, dtype=torch.uint8)
    y = EvalTransform(size=(16, 8))(img)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(y, ((128 / 255 - mean) / std).expand(3, 16, 8))


# ------------------------------------------------------------------------------ dataset


def _image_files(folder, n=3, size=(20, 10)):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"{i:04d}_c1s1_000001_00.png"
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_dataset_negative_index_returns_its_position(tmp_path):
    paths = _image_files(tmp_path)
    ds = ReidImageDataset([(p, i, 0) for i, p in enumerate(paths)])
    img, pid, cam, index = ds[-1]
    assert (pid, index) == (2, 2)
    assert torch.equal(img, ds[2][0])
    with pytest.raises(IndexError, match="index 3 is out of range for a dataset of 3"):
        ds[3]


def test_image_modes_decode_to_rgb(tmp_path):
    a16 = (np.arange(12 * 8).reshape(12, 8) * 600).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")  # 16-bit grey: scaled, not clipped
    got = load_image(str(tmp_path / "g16.png"))
    assert got.shape == (3, 12, 8)
    assert abs(got.float().mean().item() - a16.mean() / 257) < 0.5
    Image.new("P", (4, 3), 5).save(tmp_path / "pal.png")
    Image.new("RGBA", (4, 3), (10, 20, 30, 0)).save(tmp_path / "rgba.png")
    Image.new("LA", (4, 3), (100, 0)).save(tmp_path / "la.png")
    for name, px in (("rgba.png", [10, 20, 30]), ("la.png", [100, 100, 100])):
        assert load_image(str(tmp_path / name))[:, 0, 0].tolist() == px
    assert load_image(str(tmp_path / "pal.png")).shape == (3, 3, 4)


# ------------------------------------------------------------------------------ extract

H, W = 32, 16


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_model(arch="resnet18", width=0.125).eval()


@pytest.fixture()
def messy_folder(tmp_path):
    """Images (one upper-case extension), a text file, a nested folder with an image, a
    folder named like an image, and a dangling link."""
    rng = np.random.default_rng(1)
    for n in ["b.jpg", "A.png", "c.JPEG", "0001_c1.bmp"]:
        Image.fromarray(rng.integers(0, 255, (40, 20, 3), dtype=np.uint8)).save(tmp_path / n)
    (tmp_path / "readme.txt").write_text("not an image")
    (tmp_path / "nested").mkdir()
    Image.new("RGB", (20, 40)).save(tmp_path / "nested" / "z.jpg")
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "absent.jpg")
    return tmp_path


def test_extract_messy_folder_reads_only_its_images_in_a_fixed_order(messy_folder, net):
    names = ["0001_c1.bmp", "A.png", "b.jpg", "c.JPEG"]
    assert [p.name for p in list_images(messy_folder)] == names
    a = extract(net, messy_folder, image_size=(H, W), batch_size=3, device="cpu")
    b = extract(net, str(messy_folder), image_size=(H, W), batch_size=1, device="cpu")
    assert a.names == b.names == names
    torch.testing.assert_close(a.features, b.features, rtol=1e-4, atol=1e-5)


def test_extract_folder_errors_name_the_problem(messy_folder, tmp_path_factory, net):
    with pytest.raises(ValueError, match="is a file, not a folder"):
        extract(net, messy_folder / "A.png", device="cpu")
    only_nested = tmp_path_factory.mktemp("only_nested")
    (only_nested / "query").mkdir()
    with pytest.raises(ValueError, match="holds no image.*1 subfolder"):
        extract(net, only_nested, device="cpu")
    (messy_folder / "d.jpg").write_bytes(b"GIF89a but not really")
    with pytest.raises(CorruptImageError, match="d.jpg"):
        extract(net, messy_folder, image_size=(H, W), device="cpu")


def test_extract_casts_images_to_the_models_dtype(net):
    x = torch.randn(3, 3, H, W)
    ref = extract(net, x, device="cpu").features
    half_images = extract(net, x.half(), device="cpu").features
    assert float(F.cosine_similarity(ref, half_images).min()) > 0.99
    double = build_model(arch="resnet18", width=0.125).eval()
    double.load_state_dict(net.state_dict())
    double.double()
    got = extract(double, x, device="cpu").features
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_extract_bad_model_output_and_data_types(net):
    class Pair(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3)), x.amax((2, 3))

    with pytest.raises(TypeError, match="model must return a \\(B, D\\) tensor.*tuple"):
        extract(Pair(), torch.randn(2, 3, 8, 4), device="cpu")
    with pytest.raises(TypeError, match="data must be .* got a dict"):
        extract(net, {"a": torch.randn(3, H, W)}, device="cpu")


def test_extract_checkpoint_path_uses_the_image_size_it_records(tmp_path, net):
    rng = np.random.default_rng(2)
    for n in ("x.png", "y.png"):
        Image.fromarray(rng.integers(0, 255, (70, 30, 3), dtype=np.uint8)).save(tmp_path / n)
    save_checkpoint(net, tmp_path / "m.pt", image_size=[H, W])
    got = extract(str(tmp_path / "m.pt"), tmp_path, device="cpu")
    want = extract(net, tmp_path, image_size=(H, W), device="cpu")
    torch.testing.assert_close(got.features, want.features, rtol=1e-4, atol=1e-5)
    # an explicit size still wins
    other = extract(str(tmp_path / "m.pt"), tmp_path, image_size=(64, 32), device="cpu")
    assert not torch.allclose(other.features, want.features, atol=1e-3)


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact", "area", "bilinear", "bicubic"])
def test_resize_takes_every_mode_it_lists(mode):
    # nearest / area used to fail inside torch (align_corners given to a mode without it)
    x = torch.randint(0, 256, (2, 3, 20, 10), dtype=torch.uint8)
    y = resize(x, (32, 16), mode)
    assert y.shape == (2, 3, 32, 16) and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 255.0


def test_train_transform_names_its_fields_and_generator():
    # the errors named hflip's / random_erasing's `p`; a bad generator failed inside torch
    with pytest.raises(ValueError, match="flip_p must be a probability"):
        TrainTransform(size=(16, 8), flip_p=2)
    with pytest.raises(ValueError, match="erase_p must be a probability"):
        TrainTransform(size=(16, 8), erase_p=-0.1)
    with pytest.raises(ValueError, match="size must be"):
        TrainTransform(size=(16,))
    t = TrainTransform(size=(16, 8))
    x = torch.randint(0, 256, (2, 3, 20, 10), dtype=torch.uint8)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        t(x, generator=0)
    assert t(x, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 16, 8)


def test_dataset_index_types(tmp_path):
    # ints, NumPy ints and 0-d tensors index the dataset; strings, floats, bools and slices
    # gave raw TypeErrors (or, for a slice, a range) before
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((8, 4, 3), 40 * i, np.uint8)).save(p)
        paths.append(str(p))
    ds = ReidImageDataset([(p, i, 0) for i, p in enumerate(paths)])
    assert [ds[i][-1] for i in (np.int64(1), torch.tensor(2), -1)] == [1, 2, 2]
    for bad in ("a", 1.0, True, slice(0, 2)):
        with pytest.raises(TypeError, match="index must be an int"):
            ds[bad]
