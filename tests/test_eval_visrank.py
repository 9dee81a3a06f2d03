"""Ranked-list pictures and the `smcr evaluate` / `smcr visrank` commands."""

import argparse

import numpy as np
import pytest
import torch
from PIL import Image
from smcr.evaluation import add_evaluate_parser, parse_labels
from smcr.models import build_model, save_checkpoint
from smcr.visualize import GREEN, RED, add_visrank_parser, ranked_gallery, visualize_ranks

H, W = 64, 32


def _write(folder, names, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n in names:
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(folder / n)
    return [str(folder / n) for n in names]


def test_ranked_gallery_follows_protocol():
    dist = torch.tensor([[0.1, 0.2, 0.3, 0.05, 0.4]])
    # gallery 3 is the query's identity in its camera (removed); gallery 0 is junk.
    ranked = ranked_gallery(
        dist,
        torch.tensor([1]),
        torch.tensor([-1, 1, 2, 1, 3]),
        torch.tensor([0]),
        torch.tensor([1, 1, 1, 0, 1]),
        topk=4,
    )
    assert ranked.tolist() == [[1, 2, 4, -1]]
    tied = ranked_gallery(
        torch.zeros(1, 4),
        torch.tensor([1]),
        torch.tensor([1, 2, 3, 4]),
        torch.tensor([0]),
        torch.tensor([1, 1, 1, 1]),
        topk=3,
    )
    assert tied.tolist() == [[0, 1, 2]]


def test_pictures_have_green_and_red_borders(tmp_path):
    q = _write(tmp_path / "q", ["q0.png", "q1.png"], 0)
    g = _write(tmp_path / "g", [f"g{i}.png" for i in range(4)], 1)
    query = [(q[0], 1, 0), (q[1], 2, 0)]
    gallery = [(g[0], 1, 1), (g[1], 2, 1), (g[2], 3, 1), (g[3], 1, 2)]
    dist = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    paths = visualize_ranks(
        dist, query, gallery, tmp_path / "out", topk=3, image_size=(H, W), border=4
    )
    assert [p.name for p in paths] == ["q0.png", "q1.png"]
    img = np.asarray(Image.open(paths[0]).convert("RGB"))
    gap = W // 4
    assert img.shape == (H, W * 4 + gap, 3)
    # query 0 (pid 1): ranks g0 (pid 1, green), g1 (red), g2 (red)
    left = lambda r: img[H // 2, W + gap + r * W + 1]  # noqa: E731
    assert tuple(left(0)) == GREEN and tuple(left(1)) == RED and tuple(left(2)) == RED
    img1 = np.asarray(Image.open(paths[1]).convert("RGB"))
    assert tuple(img1[H // 2, W + gap + 1]) == RED  # query 1 (pid 2) ranks g3 (pid 1) first
    assert tuple(img1[H // 2, W + gap + 2 * W + 1]) == GREEN  # ... and g1 (pid 2) third

    one = visualize_ranks(dist, query, gallery, tmp_path / "one", num_queries=1, image_size=(H, W))
    assert len(one) == 1
    with pytest.raises(ValueError, match=r"distmat must be \(2, 4\)"):
        visualize_ranks(dist[:, :3], query, gallery, tmp_path / "bad")
    with pytest.raises(ValueError, match="query\\[0\\]"):
        visualize_ranks(dist, [("a",), ("b",)], gallery, tmp_path / "bad")
    with pytest.raises(ValueError, match="topk"):
        visualize_ranks(dist, query, gallery, tmp_path / "bad", topk=0)


def test_parse_labels():
    assert parse_labels(["0002_c1s1_000451_03.jpg", "-1_c3s1_0.jpg"]) == ([2, -1], [1, 3])
    with pytest.raises(ValueError, match="does not match"):
        parse_labels(["cat.jpg"])
    with pytest.raises(ValueError, match="two groups"):
        parse_labels(["a"], pattern=r"(\d+)")


@pytest.fixture()
def market_like(tmp_path):
    qn = ["0001_c1s1_000001_00.jpg", "0002_c2s1_000001_00.jpg"]
    gn = [
        "0001_c2s1_000002_00.jpg",
        "0001_c1s1_000003_00.jpg",
        "0002_c3s1_000002_00.jpg",
        "0000_c4s1_000009_00.jpg",
        "-1_c1s1_000010_00.jpg",
        "0003_c5s1_000004_00.jpg",
    ]
    _write(tmp_path / "query", qn, 2)
    _write(tmp_path / "gallery", gn, 3)
    model = build_model(arch="resnet18_ibn_a", width=0.125).eval()
    save_checkpoint(model, tmp_path / "m.pth")
    return tmp_path


def _parser():
    parser = argparse.ArgumentParser(prog="smcr")
    sub = parser.add_subparsers(dest="command")
    add_evaluate_parser(sub)
    add_visrank_parser(sub)
    return parser


def test_evaluate_cli(market_like, capsys):
    t = market_like
    json_path = t / "metrics.json"
    args = _parser().parse_args(
        [
            "evaluate",
            "--checkpoint",
            str(t / "m.pth"),
            "--query",
            str(t / "query"),
            "--gallery",
            str(t / "gallery"),
            "--height",
            str(H),
            "--width",
            str(W),
            "--device",
            "cpu",
            "--num-workers",
            "0",
            "--json",
            str(json_path),
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "mAP" in out and "2/2 valid queries" in out
    import json

    assert set(json.loads(json_path.read_text())) >= {"mAP", "mINP", "rank1", "rank5", "rank10"}


def test_visrank_cli(market_like, capsys):
    t = market_like
    args = _parser().parse_args(
        [
            "visrank",
            "--checkpoint",
            str(t / "m.pth"),
            "--query",
            str(t / "query"),
            "--gallery",
            str(t / "gallery"),
            "--height",
            str(H),
            "--width",
            str(W),
            "--device",
            "cpu",
            "--num-workers",
            "0",
            "--out",
            str(t / "ranks"),
            "--topk",
            "4",
        ]
    )
    assert args.func(args) == 0
    assert sorted(p.name for p in (t / "ranks").iterdir()) == [
        "0001_c1s1_000001_00.png",
        "0002_c2s1_000001_00.png",
    ]
    assert "wrote 2 ranked lists" in capsys.readouterr().out
