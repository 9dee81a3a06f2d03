"""Translating whole datasets to disk: names, labels and label files are kept, every reader
opens the result, and a stopped translation resumes without redoing finished images."""

import csv
import os

import numpy as np
import pytest
import torch
from PIL import Image
from smcr.data import load_image, read_dataset, read_synthetic, resize
from smcr.synth import generate
from smcr.translate import (
    TranslateConfig,
    TranslateError,
    Translator,
    build_generators,
    translate_dataset,
)
from smcr.translate.toy import make_toy_domain

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def translator():
    cfg = TranslateConfig(image_size=(32, 16), ngf=4, n_res_blocks=1, d_layers=2)
    g_ab, g_ba = build_generators(cfg)
    return Translator(cfg, g_ab, g_ba, {"key": "test"})


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = make_toy_domain(tmp_path_factory.mktemp("m") / "market", num_ids=3, images_per_id=4)
    junk = np.zeros((40, 20, 3), np.uint8)  # another size, and a junk pid the reader drops
    Image.fromarray(junk).save(root / "bounding_box_test" / "-1_c1s1_000000_00.png")
    return root


def _rel_lists(ds):
    return {
        s: [(os.path.relpath(x.path, ds.root), x.pid, x.camid) for x in ds.subset(s)]
        for s in ("train", "query", "gallery")
    }


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_market_layout_keeps_names_and_labels(market, translator, tmp_path):
    out = translate_dataset(translator, market, tmp_path / "out", "AB")
    src, dst = read_dataset(market), read_dataset(out)
    assert _rel_lists(dst) == _rel_lists(src)
    assert dst.dropped == src.dropped == {"train": 0, "query": 0, "gallery": 1}
    assert set(_files(out)) == set(_files(market)) | {"translation.json"}
    # each file is the translation of its source, resized to the translator's size
    name = "bounding_box_train/0001_c1s1_000000_00.png"
    want = translator.translate(
        resize(load_image(str(market / name)), (32, 16)).round()[None].to(torch.uint8)
    )
    got = load_image(str(out / name))
    assert got.shape == (3, 32, 16) and torch.equal(got, want[0])
    assert not torch.equal(got, load_image(str(market / name)))
    assert not (tmp_path / "out.partial").exists()


def test_keep_size_and_untranslated_subsets(market, translator, tmp_path):
    out = translate_dataset(translator, market, tmp_path / "o", subsets=("train",), keep_size=True)
    q = "query/0004_c1s1_000000_00.png"
    assert (out / q).read_bytes() == (market / q).read_bytes()  # copied unchanged
    junk = "bounding_box_test/-1_c1s1_000000_00.png"
    assert load_image(str(out / junk)).shape == (3, 40, 20)
    t = "bounding_box_train/0002_c2s1_000001_00.png"
    assert load_image(str(out / t)).shape == (3, 32, 16)  # toy images are 32x16 already


def test_synthetic_manifest_is_kept(translator, tmp_path):
    src = generate(
        "market-like", tmp_path / "syn", num_ids=4, seed=0, processes=1, image_size=(32, 16)
    )
    out = translate_dataset(translator, src, tmp_path / "syn_t", "BA")
    for f in ("manifest.csv", "identities.csv", "meta.json"):
        assert (out / f).read_bytes() == (src / f).read_bytes()
    a, b = read_synthetic(src), read_synthetic(out)
    assert _rel_lists(a) == _rel_lists(b)
    assert a.meta == b.meta


def test_msmt_layout_keeps_lists(translator, tmp_path):
    base = tmp_path / "MSMT17_V1"
    lists = {"train": [], "val": [], "query": [], "gallery": []}
    rng = np.random.default_rng(0)
    for pid in range(4):
        for cam in (1, 2, 3):
            split = "train" if pid < 2 else ("query" if cam == 1 else "gallery")
            if pid == 1 and cam == 3:
                split = "val"
            folder = "train" if split in ("train", "val") else "test"
            rel = f"{pid:04d}/{pid:04d}_000_{cam:02d}_0303morning_0015_0.jpg"
            (base / folder / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (48, 24, 3), dtype=np.uint8)).save(
                base / folder / rel
            )
            lists[split].append(f"{rel} {pid}")
    for split, lines in lists.items():
        (base / f"list_{split}.txt").write_text("\n".join(lines) + "\n")
    out = translate_dataset(translator, base, tmp_path / "msmt_t")
    for split in lists:
        name = f"list_{split}.txt"
        assert (out / name).read_bytes() == (base / name).read_bytes()
    assert _rel_lists(read_dataset(out)) == _rel_lists(read_dataset(base))
    assert load_image(str(out / "test" / lists["query"][0].split()[0])).shape == (3, 32, 16)


def test_custom_csv_with_absolute_paths_is_rewritten(market, translator, tmp_path):
    root = tmp_path / "custom"
    root.mkdir()
    ds = read_dataset(market)
    for s in ("train", "query", "gallery"):
        with open(root / f"{s}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "pid", "camid"])
            for x in ds.subset(s):
                dst = root / "images" / os.path.basename(x.path)
                dst.parent.mkdir(exist_ok=True)
                dst.write_bytes(open(x.path, "rb").read())
                w.writerow([str(dst.resolve()), x.pid, x.camid])
    out = translate_dataset(translator, root, tmp_path / "custom_t")
    rows = list(csv.DictReader(open(out / "train.csv")))
    assert rows and all(r["path"].startswith("images/") for r in rows)
    assert _rel_lists(read_dataset(out)) == _rel_lists(read_dataset(root, relabel_train=True))
    assert all(
        str(out.resolve()) in x.path or x.path.startswith(str(out)) for x in read_dataset(out).train
    )


def test_stopped_translation_resumes(market, translator, tmp_path, monkeypatch):
    out = tmp_path / "r"
    real = Translator.translate
    calls = {"n": 0}

    def flaky(self, images, direction="AB", batch_size=64):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the user stops the run after the first batch
        return real(self, images, direction, batch_size)

    monkeypatch.setattr(Translator, "translate", flaky)
    with pytest.raises(KeyboardInterrupt):
        translate_dataset(translator, market, out, batch_size=5)
    partial = tmp_path / "r.partial"
    assert not out.exists() and partial.is_dir()
    done = [p for p in partial.rglob("*.png")]
    assert len(done) == 5 and not list(partial.rglob("*.tmp"))
    stamps = {p: p.stat().st_mtime_ns for p in done}
    with pytest.raises(TranslateError, match="another plan"):
        translate_dataset(translator, market, out, "BA", batch_size=5)
    monkeypatch.setattr(Translator, "translate", real)
    translate_dataset(translator, market, out, batch_size=5)
    assert not partial.exists()
    for p, t in stamps.items():  # finished images were not written again
        assert (out / p.relative_to(partial)).stat().st_mtime_ns == t
    assert len(list(out.rglob("*.png"))) == len(list(market.rglob("*.png")))
    assert _rel_lists(read_dataset(out)) == _rel_lists(read_dataset(market))

    with pytest.raises(FileExistsError, match="overwrite"):
        translate_dataset(translator, market, out)
    stamp = (out / "translation.json").stat().st_mtime_ns
    assert translate_dataset(translator, market, out, reuse=True) == out
    assert (out / "translation.json").stat().st_mtime_ns == stamp


def test_bad_arguments(market, translator, tmp_path):
    with pytest.raises(TranslateError, match="direction"):
        translate_dataset(translator, market, tmp_path / "x", "CD")
    with pytest.raises(TranslateError, match="subsets"):
        translate_dataset(translator, market, tmp_path / "x", subsets=("val",))
    with pytest.raises(TranslateError, match="inside it"):
        translate_dataset(translator, market, market / "inner")
    with pytest.raises(TranslateError, match="does not exist"):
        translate_dataset(tmp_path / "no_run", market, tmp_path / "x")
    with pytest.raises(ValueError, match="does not exist"):
        translate_dataset(translator, tmp_path / "nothing", tmp_path / "x")
    with pytest.raises(TranslateError, match="32x16"):
        translator.translate(torch.zeros(1, 3, 64, 32, dtype=torch.uint8))
