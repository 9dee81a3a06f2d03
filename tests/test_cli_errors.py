"""The commands on bad input: one line `smcr <command>: error: ...` naming what is wrong,
exit status 2, no traceback, nothing half-written; and the fixes found with them (the
checkpoint's image size, 16-bit images, a query never matching its own file, export
keeping the old file when the parity check fails)."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from smcr import cli
from smcr.cli import main
from smcr.evaluation import evaluate, evaluate_distmat
from smcr.models import build_model, save_checkpoint

H, W = 64, 32
QUERY = ["0001_c1s1_000001_00.jpg", "0002_c2s1_000001_00.jpg"]
GALLERY = [
    "0001_c2s1_000002_00.jpg",
    "0001_c1s1_000003_00.jpg",
    "0002_c3s1_000002_00.jpg",
    "0003_c5s1_000004_00.jpg",
]


def _write(folder, names, seed, size=(H, W)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n in names:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / n)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    t = tmp_path_factory.mktemp("cli")
    _write(t / "query", QUERY, 1)
    _write(t / "gallery", GALLERY, 2)
    model = build_model(arch="resnet18_ibn_a", width=0.125).eval()
    save_checkpoint(model, t / "old.pth")  # records no image size
    save_checkpoint(model, t / "sized.pth", image_size=[H, W])
    return t


def _fails(capsys, argv, *needles):
    """main(argv) exits 2 with one error line holding every needle, and no traceback."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"smcr {argv[0]}: error: "), lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _eval_args(t, *extra, query=None, gallery=None, ckpt="sized.pth"):
    return [
        "evaluate",
        "--checkpoint", str(t / ckpt),
        "--query", str(query or t / "query"),
        "--gallery", str(gallery or t / "gallery"),
        "--device", "cpu",
        "--num-workers", "0",
        *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------- the handler


def test_interrupt_and_traceback_switch(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_backends", interrupted)
    assert main(["backends"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "smcr backends: interrupted"

    def bad(args):
        raise ValueError("--thing must be positive\nsecond line")

    monkeypatch.setattr(cli, "_backends", bad)
    assert main(["backends"]) == 2
    assert capsys.readouterr().err == (
        "smcr backends: error: --thing must be positive; second line\n"
    )
    monkeypatch.setenv("SMCR_TRACEBACK", "1")
    with pytest.raises(ValueError, match="--thing"):
        main(["backends"])
    assert "SMCR_TRACEBACK" in cli.build_parser().format_help()


def test_dataloader_worker_error_is_one_line():
    e = ValueError(
        "Caught CorruptImageError in DataLoader worker process 0.\nOriginal Traceback "
        '(most recent call last):\n  File "x.py", line 1, in f\n'
        "smcr.data.errors.CorruptImageError: /d/a.jpg: cannot decode image"
    )
    assert cli.error_message(e) == "/d/a.jpg: cannot decode image"


# --------------------------------------------------------------------------- extract


def test_extract_truncated_jpeg_names_the_file(data, tmp_path, capsys):
    folder = _write(tmp_path / "imgs", QUERY, 3)
    good = (folder / QUERY[1]).read_bytes()
    (folder / QUERY[1]).write_bytes(good[: len(good) // 2])
    args = ["extract", str(data / "sized.pth"), str(folder), "--out", str(tmp_path / "f.pt")]
    _fails(capsys, [*args, "--device", "cpu"], QUERY[1])
    assert not (tmp_path / "f.pt").exists()


@pytest.mark.parametrize(
    "content, why",
    [(b"", "empty"), (None, "truncated"), (b"hello\n", "torch.save")],
)
def test_extract_bad_checkpoint(data, tmp_path, capsys, content, why):
    bad = tmp_path / "bad.pth"
    if content is None:
        content = (data / "sized.pth").read_bytes()[:1000]
    bad.write_bytes(content)
    line = _fails(
        capsys,
        ["extract", str(bad), str(data / "query"), "--out", str(tmp_path / "f.pt")],
        "bad.pth",
        "is not an smcr checkpoint",
    )
    assert why in line


def test_extract_out_is_a_folder_and_bad_devices(data, tmp_path, capsys):
    base = ["extract", str(data / "sized.pth"), str(data / "query")]
    _fails(capsys, [*base, "--out", str(tmp_path)], "--out", str(tmp_path))
    for dev in ("mps", "meta", "tpu", "cuda:99"):
        _fails(capsys, [*base, "--out", str(tmp_path / "f.pt"), "--device", dev], "--device", dev)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine(data, capsys):
    _fails(capsys, _eval_args(data)[:-4] + ["--device", "cuda"], "--device", "CUDA")


# --------------------------------------------------------------------------- evaluate


def test_evaluate_single_camera_data_without_the_flag(data, tmp_path, capsys):
    names = ["0001_c1s1_000001_00.jpg", "0001_c1s1_000002_00.jpg", "0002_c1s1_000003_00.jpg"]
    q = _write(tmp_path / "q", names[:1], 4)
    g = _write(tmp_path / "g", names[1:], 5)
    _fails(capsys, _eval_args(data, query=q, gallery=g), "no query has a match", "--single-camera")


def test_evaluate_bad_folders_and_names(data, tmp_path, capsys):
    odd = _write(tmp_path / "odd", ["person0_cam0.jpg"], 6)
    _fails(capsys, _eval_args(data, query=odd), "person0_cam0.jpg", "--pattern")
    (tmp_path / "empty").mkdir()
    _fails(capsys, _eval_args(data, gallery=tmp_path / "empty"), "--gallery", "empty")
    _fails(capsys, _eval_args(data, gallery=tmp_path / "nope"), "--gallery", "nope")
    corrupt = _write(tmp_path / "corrupt", GALLERY, 7)
    (corrupt / GALLERY[2]).write_bytes(b"\xff\xd8 not a jpeg")
    _fails(capsys, _eval_args(data, gallery=corrupt), GALLERY[2])
    # the same through a DataLoader worker process
    args = _eval_args(data, gallery=corrupt)
    args[args.index("--num-workers") + 1] = "1"
    _fails(capsys, args, GALLERY[2])


def test_evaluate_bad_options(data, tmp_path, capsys):
    _fails(capsys, _eval_args(data, "--pattern", "["), "--pattern", "'['")
    _fails(capsys, _eval_args(data, "--pattern", r"(\d+)"), "--pattern", "two groups")
    _fails(capsys, _eval_args(data, "--batch-size", "0"), "--batch-size")
    _fails(capsys, _eval_args(data, "--num-workers", "-1"), "--num-workers")
    (tmp_path / "file").write_text("x")
    _fails(capsys, _eval_args(data, "--json", str(tmp_path / "file" / "m.json")), "--json")


def test_evaluate_json_into_a_new_folder(data, tmp_path, capsys):
    out = tmp_path / "a" / "b" / "m.json"
    assert main(_eval_args(data, "--json", str(out))) == 0
    assert json.loads(out.read_text())["num_queries"] == 2
    assert "mAP" in capsys.readouterr().out


def test_default_workers_leave_a_core(monkeypatch):
    from smcr.evaluation.evaluator import default_num_workers

    for cpus, want in ((1, 0), (2, 1), (3, 2), (64, 4), (None, 0)):
        monkeypatch.setattr("os.cpu_count", lambda c=cpus: c)
        assert default_num_workers() == want


# --------------------------------------------------------------------------- visrank


def test_visrank_bad_options(data, tmp_path, capsys):
    base = _eval_args(data)
    base[0] = "visrank"
    (tmp_path / "file").write_text("x")
    _fails(capsys, [*base, "--out", str(tmp_path / "file")], "--out", "not a folder")
    _fails(capsys, [*base, "--out", str(tmp_path / "r"), "--topk", "0"], "--topk")
    _fails(capsys, [*base, "--out", str(tmp_path / "r"), "--num-queries", "-1"], "--num-queries")
    assert not (tmp_path / "r").exists()
    from smcr.visualize import visualize_ranks

    with pytest.raises(ValueError, match="num_queries"):
        visualize_ranks(torch.zeros(1, 1), [("a", 1, 1)], [("b", 1, 2)], tmp_path, num_queries=-1)


# --------------------------------------------------------------------------- export


def test_export_bad_options(data, tmp_path, capsys):
    out = str(tmp_path / "m.onnx")
    base = ["export", "--checkpoint", str(data / "sized.pth"), "-o", out]
    _fails(capsys, ["export", "--checkpoint", str(tmp_path / "no.pth"), "-o", out], "no.pth")
    _fails(capsys, [*base, "--opset", "5"], "--opset")
    _fails(capsys, [*base, "--opset", "99"], "--opset")
    _fails(capsys, [*base, "--num-images", "0"], "--num-images")
    _fails(capsys, [*base, "--num-images", "-3"], "--num-images")
    _fails(capsys, [*base, "--height", "0"], "--height")
    _fails(capsys, [*base, "--min-cosine", "2"], "--min-cosine")
    (tmp_path / "empty").mkdir()
    _fails(capsys, [*base, "--images", str(tmp_path / "empty")], "--images", "empty")
    corrupt = _write(tmp_path / "corrupt", QUERY, 8)
    (corrupt / QUERY[0]).write_bytes(b"GIF89a broken")
    _fails(capsys, [*base, "--images", str(corrupt)], QUERY[0])
    _fails(
        capsys, ["export", "--checkpoint", str(data / "sized.pth"), "-o", str(tmp_path)], "--output"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt", "empty"]


def test_export_failed_check_keeps_the_old_file(data, tmp_path, capsys):
    from smcr.export import ExportParityError, export_onnx

    out = tmp_path / "m.onnx"
    out.write_bytes(b"the previous good export")
    model = build_model(arch="resnet18", width=0.125).eval()
    with pytest.raises(ExportParityError):
        export_onnx(model, out, image_size=(H, W), min_cosine=1.5)
    assert out.read_bytes() == b"the previous good export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary left
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, out, image_size=(H, W), opset=5)
    argv = ["export", "--checkpoint", str(data / "sized.pth"), "-o", str(out)]
    assert main(argv) == 0
    assert out.read_bytes()[:4] != b"the " and "cosine min" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


# --------------------------------------------------------------------------- check-data, synth


def test_check_data_on_an_image_and_on_a_partial_market_tree(data, tmp_path, capsys):
    _fails(capsys, ["check-data", str(data / "query" / QUERY[0])], QUERY[0], "image file")
    (tmp_path / "x.bin").write_bytes(b"\xff\xfe\x00binary")
    _fails(capsys, ["check-data", str(tmp_path / "x.bin")], "x.bin", "CSV")
    shutil.copytree(data / "query", tmp_path / "m" / "query")
    shutil.copytree(data / "gallery", tmp_path / "m" / "bounding_box_test")
    _fails(capsys, ["check-data", str(tmp_path / "m")], "bounding_box_train")
    shutil.copytree(data / "query", tmp_path / "c" / "query")
    _fails(capsys, ["check-data", str(tmp_path / "c")], "gallery/", "query/")


@pytest.mark.parametrize("bad", [["--processes", "0"], ["--seed", "-5"], ["--ids", "0"]])
def test_synth_bad_arguments_leave_nothing_on_disk(tmp_path, capsys, bad):
    out = tmp_path / "d"
    argv = ["synth", "--preset", "market-like", "--ids", "4", "--out", str(out), "--quiet", *bad]
    _fails(capsys, argv, bad[0].lstrip("-"))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the fixes


def test_image_size_comes_from_the_checkpoint(data, tmp_path, monkeypatch, capsys):
    import importlib

    module = importlib.import_module("smcr.extract")  # smcr.extract is also a function
    seen = []
    real = module.extract

    def spy(*args, **kw):
        seen.append(kw["image_size"])
        return real(*args, **kw)

    monkeypatch.setattr(module, "extract", spy)
    base = ["extract", None, str(data / "query"), "--out", str(tmp_path / "f.pt"), "--quiet"]
    for ckpt, extra, size, warned in [
        ("sized.pth", [], (H, W), False),
        ("sized.pth", ["--height", "48"], (48, W), False),
        ("old.pth", [], (256, 128), True),
        ("old.pth", ["--height", "32", "--width", "16"], (32, 16), False),
    ]:
        base[1] = str(data / ckpt)
        assert main([*base, *extra]) == 0
        err = capsys.readouterr().err
        assert seen[-1] == size
        assert ("does not record its input size" in err) == warned, err
        if warned:
            assert len(err.strip().splitlines()) == 1 and "old.pth" in err
    assert main(_eval_args(data, ckpt="sized.pth")) == 0
    assert seen[-2:] == [(H, W), (H, W)]


def test_checkpoint_image_size_is_checked(tmp_path):
    from smcr.extract import checkpoint_image_size, load_model_checkpoint

    model = build_model(arch="resnet18", width=0.125)
    save_checkpoint(model, tmp_path / "m.pth", image_size=[H, W], alpha=0.5)
    _, extras = load_model_checkpoint(tmp_path / "m.pth")
    assert checkpoint_image_size(extras) == (H, W) and extras["alpha"] == 0.5
    assert checkpoint_image_size({}) is None
    with pytest.raises(ValueError, match="image_size"):
        checkpoint_image_size({"image_size": [0, 3]}, "m.pth")


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    from smcr.data import load_image
    from smcr.extract import load_image as load_normalised

    ramp = (np.arange(H * W).reshape(H, W) * 30).astype(np.uint16)  # 0 .. 61410
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    img = load_image(str(tmp_path / "g16.png"))  # (3, H, W) uint8
    assert img.shape == (3, H, W)
    want = torch.from_numpy(np.rint(ramp / 257.0).astype(np.uint8))
    assert torch.equal(img[0], want) and torch.equal(img[1], want)
    assert float((img == 255).float().mean()) == 0.0  # convert("RGB") made 99.6 % white
    assert load_normalised(tmp_path / "g16.png", (H, W)).shape == (3, H, W)

    Image.fromarray(ramp.astype(np.float32) / 65535).save(tmp_path / "f.tif")  # mode F in [0, 1]
    assert torch.equal(load_image(str(tmp_path / "f.tif"))[0], want)


def test_query_never_matches_its_own_file(data, tmp_path, capsys):
    # Identity 2's images are copies of identity 1's: once a query's own file is left out,
    # its nearest gallery item is the other identity's copy of it (distance 0).
    folder = _write(tmp_path / "f", ["0001_c1s1_000001_00.jpg", "0001_c1s1_000002_00.jpg"], 9)
    shutil.copy(folder / "0001_c1s1_000001_00.jpg", folder / "0002_c1s1_000001_00.jpg")
    shutil.copy(folder / "0001_c1s1_000002_00.jpg", folder / "0002_c1s1_000002_00.jpg")
    out = tmp_path / "m.json"
    argv = _eval_args(data, "--single-camera", "--json", str(out), query=folder, gallery=folder)
    assert main(argv) == 0
    m = json.loads(out.read_text())
    assert m["num_valid_queries"] == 4
    # first match at rank 1 for identity 1's queries, rank 2 for identity 2's (ties go by
    # gallery index): mAP (1/2 + 1/2 + 1/3 + 1/3) / 4; with self-matches both were 1.0
    assert m["rank1"] == 0.0 and m["mAP"] == pytest.approx(5 / 12)
    capsys.readouterr()


def test_exclude_pairs_in_the_metrics():
    # a, b of identity 1 are orthogonal; c (identity 2) is closer to both than they are
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    pids, cams = [1, 1, 2], [0, 0, 0]
    kw = dict(single_camera=True)
    assert evaluate(feats, feats, pids, pids, cams, cams, **kw).rank1 == 1.0
    res = evaluate(feats, feats, pids, pids, cams, cams, exclude=[(0, 0), (1, 1), (2, 2)], **kw)
    assert res.num_valid_queries == 2 and res.rank1 == 0.0
    dist = 1 - feats @ feats.T
    res2 = evaluate_distmat(dist, pids, pids, cams, cams, exclude=[(0, 0), (1, 1), (2, 2)], **kw)
    assert res2.mAP == res.mAP
    with pytest.raises(ValueError, match="exclude"):
        evaluate(feats, feats, pids, pids, cams, cams, exclude=[(3, 0)], **kw)
