"""The synthetic generator's public API against a demanding user: bad counts, sizes, seeds
and preset fields are refused before anything is written (naming the argument), tiny and
odd sizes render exactly, output folders that are files, '.', or beside a user's
`<out>.old` are handled without loss, an interrupted overwrite keeps the old dataset, and
the labels the readers parse from the files are the generator's own."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import smcr.synth.generator as gen
from PIL import Image
from smcr.data import read_dataset, read_market_style, read_synthetic
from smcr.data.readers import MARKET_RE
from smcr.synth import (
    PresetError,
    SynthError,
    build_world,
    generate,
    generate_in_memory,
    get_preset,
    read_manifest,
)
from test_synth_generate import _digest

# 2 cameras x 1 view, 16x8: 2 images per identity at most (market-like draws more frames)
TINY = {"image_size": (16, 8), "num_cameras": 2, "views_per_camera": 1}


@pytest.mark.parametrize(
    "num_ids, err",
    [(0, SynthError), (-3, SynthError), (10_000, SynthError), (1, SynthError),
     (2.5, TypeError), ("3", TypeError), (None, TypeError), (True, TypeError)],
)  # fmt: skip
def test_bad_identity_counts_are_refused_before_writing(tmp_path, num_ids, err):
    with pytest.raises(err, match="num_ids"):
        generate("mini-gspr", tmp_path / "x", num_ids, processes=1, **TINY)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_cameras", 0),
        ("num_cameras", -1),
        ("num_cameras", 100),
        ("num_cameras", 2.0),
        ("num_cameras", None),
        ("image_size", (15, 8)),
        ("image_size", (16, 7)),
        ("image_size", (16.5, 8)),
        ("image_size", (16.0, 8.0)),
        ("image_size", (16,)),
        ("image_size", None),
        ("image_size", 128),
        ("image_size", "32x16"),
        ("image_size", (True, 8)),
        # k < 100 in file names: 150 frames crashed mid-run, leaving a .partial folder
        ("frames_per_view", (1, 150)),
        ("frames_per_view", (1.5, 2)),
        ("frames_per_view", 3),
        ("cameras_per_id", (2,)),
        ("cameras_per_id", (2.5, 3)),
        ("weather", {"clear": float("nan")}),
        ("weather", {"clear": float("inf")}),
        ("weather", ["clear"]),
        ("hours", ((9, 17),)),
        ("hours", ((9, 17, 0),)),
        ("occlusion", "0.1"),
        ("distractors", None),
        ("low_res_height", (50, 10)),
        ("low_res_height", (0, 0)),
        ("box_margin", (0.5, 0.1)),
        ("box_margin", (-1.0, 0.0)),
        ("frame_size", (0, 0)),
        ("camera", 5),
        ("camera", {"hfov_deg": (0.0, 0.0)}),
        ("camera", {"distance": (0.0, 0.0)}),
        ("camera", {"zoom": 2.0}),
        ("style", {"jpeg_quality": (0, 200)}),
        ("style", {"exposure": (-1.0, -1.0)}),
        ("clothing", {"backpack": 2.0}),
        ("clothing", {"upper_types": {"dress": 1.0}}),  # men could draw nothing
        ("clothing", {"lower_types": {"long_skirt": 1.0}}),
        ("clothing", {"upper_types": {"cape": 1.0}}),
    ],
)
def test_bad_preset_fields_name_the_field_and_write_nothing(tmp_path, field, value):
    with pytest.raises(PresetError, match=field):
        get_preset("market-like", **{field: value})
    with pytest.raises(PresetError, match=field):
        generate("market-like", tmp_path / "x", 3, processes=1, **{field: value})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("size", [(16, 8), (17, 9), (33, 31), (20, 300)])
def test_tiny_and_odd_sizes_render_exactly(tmp_path, size):
    data = generate_in_memory("duke-like", 2, seed=1, encode=True, max_images=3, image_size=size)
    assert data.images.shape == (3, *size, 3) and data.images.dtype == np.uint8
    assert data.images.std() > 0  # a picture, not a constant
    if size == (17, 9):
        root = generate(
            "mini-gspr", tmp_path / "ds", 2, seed=1, processes=1, **{**TINY, "image_size": size}
        )
        rows = read_manifest(root / "manifest.csv")
        assert {Image.open(root / r["path"]).size for r in rows} == {(9, 17)}


@pytest.mark.parametrize(
    "seed, err", [(-1, SynthError), (2**32, SynthError), (1.5, TypeError), (None, TypeError)]
)
def test_bad_seeds_are_refused(seed, err):
    with pytest.raises(err, match="seed"):
        build_world("mini-gspr", 3, seed)


def test_seeds_numpy_ints_and_thread_counts_give_the_same_bytes():
    kw = {"encode": True, "max_images": 6, **TINY}
    a = generate_in_memory("market-like", 4, seed=3, **kw)
    b = generate_in_memory("market-like", 4, seed=np.int64(3), **kw)
    c = generate_in_memory("market-like", 4, seed=4, **kw)
    assert a.images.tobytes() == b.images.tobytes() and a.rows == b.rows
    assert a.images.tobytes() != c.images.tobytes()
    # BLAS / OpenMP thread counts of the process do not change a byte
    code = (
        "import hashlib, numpy as np; from smcr.synth import generate_in_memory; "
        "d = generate_in_memory('market-like', 4, seed=3, encode=True, max_images=6, "
        "image_size=(16, 8), num_cameras=2, views_per_camera=1); "
        "print(hashlib.sha256(d.images.tobytes()).hexdigest())"
    )
    want = hashlib.sha256(a.images.tobytes()).hexdigest()
    for threads in ("1", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
                   MKL_NUM_THREADS=threads)  # fmt: skip
        got = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        assert got == want, threads


def test_output_folder_that_is_a_file_or_unnamed_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(SynthError, match="out_dir .* is not a folder"):
            generate("mini-gspr", f, 2, processes=1, overwrite=overwrite, **TINY)
    with pytest.raises(SynthError, match="is a file, not a folder"):
        generate("mini-gspr", f / "ds", 2, processes=1, **TINY)
    for bad in (None, 3, ["ds"]):
        with pytest.raises(TypeError, match="out_dir must be a path"):
            generate("mini-gspr", bad, 2, processes=1, **TINY)
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        for bad in ("", ".", "..", "/"):
            with pytest.raises(SynthError, match="out_dir must name"):
                generate("mini-gspr", bad, 2, processes=1, overwrite=True, **TINY)
    finally:
        os.chdir(cwd)
    assert f.read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["file"]


def test_partial_that_is_a_file_or_has_a_damaged_plan(tmp_path):
    (tmp_path / "ds.partial").write_text("mine")
    for resume in (True, False):
        with pytest.raises(FileExistsError, match="ds.partial exists and is not a folder"):
            generate("mini-gspr", tmp_path / "ds", 2, processes=1, resume=resume, **TINY)
    assert (tmp_path / "ds.partial").read_text() == "mine"
    (tmp_path / "ds.partial").unlink()
    (tmp_path / "ds.partial").mkdir()
    (tmp_path / "ds.partial" / "plan.json").write_text('{"seed": ')  # cut short
    with pytest.raises(SynthError, match="different plan"):
        generate("mini-gspr", tmp_path / "ds", 2, processes=1, **TINY)
    out = generate("mini-gspr", tmp_path / "ds", 2, processes=1, resume=False, **TINY)
    assert read_manifest(out / "manifest.csv") and not (tmp_path / "ds.partial").exists()


def test_overwrite_keeps_a_users_old_folder(tmp_path):
    out = generate("mini-gspr", tmp_path / "ds", 2, seed=1, processes=1, **TINY)
    (tmp_path / "ds.old").mkdir()
    (tmp_path / "ds.old" / "backup.txt").write_text("mine")
    generate("mini-gspr", out, 2, seed=2, processes=1, overwrite=True, **TINY)
    assert json.loads((out / "meta.json").read_text())["seed"] == 2
    assert (tmp_path / "ds.old" / "backup.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["ds", "ds.old"]  # no trash left behind


def test_interrupted_overwrite_keeps_the_old_dataset(tmp_path, monkeypatch):
    out = generate("mini-gspr", tmp_path / "ds", 4, seed=1, processes=1, **TINY)
    old = _digest(out)
    monkeypatch.setattr(gen, "CHUNK", 3)
    real = gen.encode_image
    calls = {"n": 0}

    def stopping(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # the second image of the second chunk
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(gen, "encode_image", stopping)
    with pytest.raises(KeyboardInterrupt):
        generate("mini-gspr", out, 4, seed=2, processes=1, overwrite=True, **TINY)
    assert _digest(out) == old  # the user's dataset is untouched
    partial = tmp_path / "ds.partial"
    assert not list(partial.rglob("*.tmp"))
    assert len(list((partial / "labels").iterdir())) == 1  # one chunk done, none half-done
    # the new dataset cannot be put in place: the old one is put back
    monkeypatch.setattr(gen, "encode_image", real)
    real_rename = type(out).rename

    def failing_rename(self, target):
        if self.name == "ds.partial":
            raise OSError("simulated failure")
        return real_rename(self, target)

    monkeypatch.setattr(type(out), "rename", failing_rename)
    with pytest.raises(OSError, match="simulated"):
        generate("mini-gspr", out, 4, seed=2, processes=1, overwrite=True, **TINY)
    assert _digest(out) == old
    assert sorted(os.listdir(tmp_path)) == ["ds", "ds.partial"]
    monkeypatch.undo()
    generate("mini-gspr", out, 4, seed=2, processes=1, overwrite=True, **TINY)  # resumes
    fresh = generate("mini-gspr", tmp_path / "fresh", 4, seed=2, processes=1, **TINY)
    assert _digest(out) == _digest(fresh)
    assert sorted(os.listdir(tmp_path)) == ["ds", "fresh"]


def test_labels_the_readers_parse_are_the_generators_own(tmp_path):
    # two-digit cameras and viewpoints (c12s10), distractors, three subsets
    kw = {
        "image_size": (16, 8),
        "num_cameras": 12,
        "views_per_camera": 10,
        "frames_per_view": (1, 2),
        "cameras_per_id": (2, 2),
        "distractors": 0.2,
    }
    root = generate("market-like", tmp_path / "ds", 4, seed=5, processes=1, **kw)
    record = generate_in_memory("market-like", 4, seed=5, **kw).rows  # the generator's record
    want = sorted((r["path"], r["subset"], r["pid"], r["camid"]) for r in record)
    manifest = read_manifest(root / "manifest.csv")
    assert sorted((r["path"], r["subset"], r["pid"], r["camid"]) for r in manifest) == want
    assert max(r["camid"] for r in record) >= 10 and max(r["viewpoint"] for r in record) == 10
    assert any(r["pid"] == 0 for r in record)
    on_disk = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.jpg"))
    assert on_disk == sorted(r[0] for r in want)
    for rel in on_disk:  # the readers' file-name rule gives the recorded labels
        m = MARKET_RE.match(os.path.basename(rel))
        row = next(r for r in record if r["path"] == rel)
        assert (int(m.group(1)), int(m.group(2))) == (row["pid"], row["camid"])
    by_path = {str(root / r["path"]): r for r in record}
    for ds in (
        read_synthetic(root, relabel_train=False),
        read_market_style(root, cam_range=None, relabel_train=False),
        read_dataset(root, relabel_train=False),
    ):
        for s in ("train", "query", "gallery"):
            got = sorted((x.path, x.pid, x.camid) for x in ds.subset(s))
            exp = sorted(
                (p, r["pid"], r["camid"] - 1)  # readers' camids are 0-based
                for p, r in by_path.items()
                if r["subset"] == s and (r["pid"] != 0 or s == "gallery")
            )
            assert got == exp, s


def test_single_camera_output(tmp_path):
    with pytest.raises(PresetError, match="num_cameras.*test_fraction=0"):
        generate("market-like", tmp_path / "x", 3, processes=1, num_cameras=1, image_size=(16, 8))
    root = generate(
        "market-like", tmp_path / "one", 3, processes=1, num_cameras=1, test_fraction=0.0,
        image_size=(16, 8),
    )  # fmt: skip
    ds = read_dataset(root)
    assert ds.stats()["train"][0] == 3 and ds.stats()["train"][2] == 1
    assert {x.camid for x in ds.train} == {0} and not ds.query and not ds.gallery


def test_in_memory_subsets_must_be_a_tuple():
    with pytest.raises(TypeError, match="subsets must be a tuple"):
        generate_in_memory("mini-gspr", 2, subsets="train", **TINY)
    data = generate_in_memory("mini-gspr", 2, subsets=("train",), **TINY)
    assert set(data.subsets) == {"train"} and len(data.images) == len(data.rows) > 0
