"""`translate apply` on a dataset given as one CSV list: exactly the listed images are
translated and only the list is written (never the rest of its folder), the output reads
back with the same labels, an output folder that holds the dataset is refused, changed
labels are never served from an old translation, and unusual image modes are translated."""

import csv
import os

import numpy as np
import pytest
import torch
from PIL import Image
from smcr.data import load_image, read_dataset, resize
from smcr.translate import (
    TranslateConfig,
    TranslateError,
    Translator,
    build_generators,
    translate_dataset,
)
from smcr.translate.cli import main as translate_cli
from smcr.translate.trainer import TRANSLATOR_FORMAT

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = (32, 16)


@pytest.fixture(scope="module")
def translator():
    cfg = TranslateConfig(image_size=SIZE, ngf=4, n_res_blocks=0, d_layers=2)
    g_ab, g_ba = build_generators(cfg)
    return Translator(cfg, g_ab, g_ba, {"key": "csv-test"})


def _image(path, seed, mode="RGB", size=(40, 20)):
    rng = np.random.default_rng(seed)
    h, w = size
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    elif mode in ("L", "P", "1", "LA", "CMYK"):
        im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
    elif mode == "RGBA":
        im = Image.fromarray(rng.integers(0, 255, (h, w, 4), dtype=np.uint8), "RGBA")
    else:
        im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    assert Image.open(path).mode == mode


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "pid", "camid", "subset"])
        w.writerows(rows)


def _labels(ds):
    """{subset: [(path relative to the list's folder, pid, camid)]} as the readers give it."""
    return {
        s: [(os.path.relpath(x.path, ds.root), x.pid, x.camid) for x in ds.subset(s)]
        for s in ("train", "query", "gallery")
    }


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


LISTED = [(1, 0, "train"), (1, 1, "train"), (2, 0, "train"), (2, 1, "train"),
          (3, 0, "query"), (3, 1, "gallery"), (4, 1, "query"), (4, 0, "gallery")]  # fmt: skip
LISTED_FILES = [f"imgs/{pid}_{cam}_{sub}.png" for pid, cam, sub in LISTED]


@pytest.fixture
def listed(tmp_path):
    """A folder holding list.csv (8 listed images, their paths written four ways: plain,
    './', absolute, 'imgs/../') and files and images the list does not name."""
    d = tmp_path / "d"
    rows = []
    for i, ((pid, cam, sub), rel) in enumerate(zip(LISTED, LISTED_FILES, strict=True)):
        _image(d / rel, i)
        path = {0: rel, 1: "./" + rel, 2: str((d / rel).resolve()), 3: "imgs/../" + rel}[i % 4]
        rows.append([path, pid, cam, sub])
    _write_csv(d / "list.csv", rows)
    # not part of the dataset: another list, notes, an unlisted image, a sub-folder
    _image(d / "imgs" / "9_0_train.png", 99)
    _write_csv(d / "other.csv", [["imgs/9_0_train.png", 9, 0, "train"]])
    (d / "notes.txt").write_text("unrelated")
    _image(d / "stray.png", 98)
    _image(d / "extra" / "5_0.png", 97)
    return d


def test_csv_list_translates_exactly_its_images(listed, translator, tmp_path):
    src = listed / "list.csv"
    out = translate_dataset(translator, src, tmp_path / "out")
    assert out == tmp_path / "out" and not (tmp_path / "out.partial").exists()
    assert _files(out) == sorted(LISTED_FILES + ["list.csv", "translation.json"])
    a, b = read_dataset(src), read_dataset(out / "list.csv")
    assert _labels(b) == _labels(a)
    assert b.stats() == a.stats()
    # the written list points at the translated files, relative to itself
    assert [r["path"] for r in csv.DictReader(open(out / "list.csv"))] == LISTED_FILES
    for x in b.train + b.query + b.gallery:  # each file is the translation of its source
        rel = os.path.relpath(x.path, b.root)
        source = load_image(str(listed / rel))
        assert source.shape == (3, 40, 20)
        want = translator.translate(
            resize(source, SIZE).round().clamp(0, 255).to(torch.uint8)[None]
        )
        got = load_image(x.path)
        assert got.shape == (3, *SIZE) and torch.equal(got, want[0])


def test_output_that_holds_the_dataset_is_refused(listed, translator, tmp_path):
    src = listed / "list.csv"
    before = {p: (listed / p).read_bytes() for p in _files(listed)}
    for out in (listed, tmp_path, listed / "imgs"):
        with pytest.raises(TranslateError, match="out_dir"):
            translate_dataset(translator, src, out, overwrite=True)
    assert {p: (listed / p).read_bytes() for p in _files(listed)} == before
    for out in (listed, tmp_path, listed / "imgs"):
        assert not out.with_name(out.name + ".partial").exists()
    # a folder beside the list is fine, and so is replacing it
    out = translate_dataset(translator, src, listed / "translated")
    out = translate_dataset(translator, src, out, overwrite=True)
    assert "list.csv" in os.listdir(out)
    assert {p: (listed / p).read_bytes() for p in _files(listed) if "translated" not in p} == before
    # the folder form: the dataset's parent folder is refused as well
    root = tmp_path / "parent" / "custom"
    for s, pid in (("train", 1), ("train", 2)):
        _image(root / s / f"{pid:04d}_c1s1_000000_00.png", pid)
    (tmp_path / "parent" / "keep.txt").write_text("mine")
    with pytest.raises(TranslateError, match="delete the dataset"):
        translate_dataset(translator, root, tmp_path / "parent", overwrite=True)
    assert (tmp_path / "parent" / "keep.txt").read_text() == "mine" and root.is_dir()


def test_changed_labels_are_not_served_from_an_old_translation(listed, translator, tmp_path):
    src = listed / "list.csv"
    out = translate_dataset(translator, src, tmp_path / "out", reuse=True, overwrite=True)
    stamp = (out / "translation.json").stat().st_mtime_ns
    assert translate_dataset(translator, src, out, reuse=True, overwrite=True) == out
    assert (out / "translation.json").stat().st_mtime_ns == stamp  # same plan: reused
    rows = list(csv.reader(open(src)))
    rows[1][1] = "7"  # relabel the first image; no image changes
    with open(src, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    translate_dataset(translator, src, out, reuse=True, overwrite=True)
    assert read_dataset(out / "list.csv", relabel_train=False).train[0].pid == 7


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "I;16", "CMYK"])
def test_unusual_image_modes_are_translated(mode, translator, tmp_path):
    d = tmp_path / "m"
    ext = "jpg" if mode == "CMYK" else "png"
    for i in range(2):
        _image(d / f"{i}.{ext}", i, mode)
    _write_csv(d / "l.csv", [[f"{i}.{ext}", i, 0, "train"] for i in range(2)])
    out = translate_dataset(translator, d / "l.csv", tmp_path / "o", keep_size=True)
    for i in range(2):
        im = Image.open(out / f"{i}.{ext}")
        assert im.mode == "RGB" and im.size == (20, 40)
    assert _labels(read_dataset(out / "l.csv"))["train"] == [("0." + ext, 0, 0), ("1." + ext, 1, 0)]


def test_bad_argument_types_name_the_argument(listed, translator, tmp_path):
    src = listed / "list.csv"
    for kwargs, name in (
        ({"translator": None}, "translator"),
        ({"data": None}, "data"),
        ({"out_dir": 3}, "out_dir"),
        ({"subsets": "train"}, "subsets"),
    ):
        args = {"translator": translator, "data": src, "out_dir": tmp_path / "x", **kwargs}
        with pytest.raises(TypeError, match=f"^{name} must be"):
            translate_dataset(**args)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_cli_apply_on_a_csv_and_with_a_damaged_translator(listed, translator, tmp_path, capsys):
    good = tmp_path / "t.pt"
    torch.save(
        {
            "format": TRANSLATOR_FORMAT,
            "config": translator.config.to_dict(),
            "g_ab": translator.g_ab.state_dict(),
            "g_ba": translator.g_ba.state_dict(),
            "key": "cli",
        },
        good,
    )
    args = ["apply", "--translator", str(good), "--data", str(listed / "list.csv")]
    assert translate_cli([*args, "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "| " in printed and "train" in printed  # the stats table of out/list.csv
    assert "notes.txt" not in os.listdir(tmp_path / "o")
    damaged = tmp_path / "bad.pt"
    damaged.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    args[2] = str(damaged)
    assert translate_cli([*args, "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("smcr translate apply: error:") and "bad.pt" in err and "\n" not in err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o2.partial").exists()
