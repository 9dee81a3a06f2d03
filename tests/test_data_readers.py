"""Readers on fixture trees of every layout, and every bad case naming its path."""

import numpy as np
import pytest
import torch
from PIL import Image
from smcr.data import (
    BadFileNameError,
    CorruptImageError,
    DatasetLayoutError,
    DatasetNotFoundError,
    EmptyDatasetError,
    ReidImageDataset,
    UnmatchedQueryError,
    detect_format,
    format_stats,
    load_image,
    read_custom,
    read_dataset,
    read_dukemtmc,
    read_market1501,
    read_msmt17,
    read_synthetic,
    verify_images,
)
from smcr.synth import generate
from smcr.synth.cli import main as cli_main


def _img(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((8, 4, 3), value, np.uint8)
    arr[0, 0] = (value * 7) % 256
    Image.fromarray(arr).save(path)


def _market(root, cams=(1, 2, 3), junk=True):
    for pid in (2, 7, 9):
        for c in cams[:2]:
            _img(root / "bounding_box_train" / f"{pid:04d}_c{c}s1_000{pid}51_0{c}.jpg", pid)
    for pid in (3, 5):
        _img(root / "query" / f"{pid:04d}_c{cams[0]}s2_000451_00.jpg", pid)
        for c in cams[1:]:
            _img(root / "bounding_box_test" / f"{pid:04d}_c{c}s2_000{c}51_00.jpg", pid)
    if junk:
        _img(root / "bounding_box_test" / f"-1_c{cams[0]}s1_000000_00.jpg", 1)
        _img(root / "bounding_box_test" / f"0000_c{cams[1]}s1_000001_00.jpg", 2)
        _img(root / "bounding_box_train" / f"-1_c{cams[0]}s1_000000_00.jpg", 1)
        (root / "query" / "Thumbs.db").write_bytes(b"x")
    return root


def test_market1501_conventions(tmp_path):
    _market(tmp_path / "Market-1501-v15.09.15")
    ds = read_market1501(tmp_path)  # root may be the parent folder
    assert ds.root.name == "Market-1501-v15.09.15"
    assert len(ds.train) == 6 and {s.pid for s in ds.train} == {0, 1, 2}  # relabelled, -1 dropped
    assert {s.camid for s in ds.train} == {0, 1}  # 0-based
    assert {s.pid for s in ds.query} == {3, 5}  # raw pids
    assert 0 in {s.pid for s in ds.gallery} and -1 not in {s.pid for s in ds.gallery}
    assert ds.dropped == {"train": 1, "query": 0, "gallery": 1}
    assert ds.stats() == {"train": (3, 6, 2), "query": (2, 2, 1), "gallery": (2, 5, 2)}
    table = format_stats(ds)
    assert "# ids" in table and "gallery  |     2 |        5 |         2" in table
    assert detect_format(tmp_path) == "market1501"


def test_duke_same_naming_more_cameras(tmp_path):
    _market(tmp_path / "DukeMTMC-reID", cams=(6, 7, 8))
    ds = read_dukemtmc(tmp_path)
    assert {s.camid for s in ds.train} == {5, 6}
    assert detect_format(tmp_path) == "dukemtmc"
    assert read_dataset(tmp_path).name == "dukemtmc"
    with pytest.raises(BadFileNameError, match="camera must be in 1..6"):
        read_market1501(tmp_path / "DukeMTMC-reID")


@pytest.mark.parametrize(
    "version, tr, te",
    [("MSMT17_V1", "train", "test"), ("MSMT17_V2", "mask_train_v2", "mask_test_v2")],
)
def test_msmt17_v1_and_v2(tmp_path, version, tr, te):
    base = tmp_path / version
    lists = {"train": [], "val": [], "query": [], "gallery": []}
    for pid in (0, 1, 2):
        for cam in (1, 4):
            rel = f"{pid:04d}/{pid:04d}_00{cam}_{cam:02d}_0303morning_0015_0.jpg"
            _img(base / tr / rel, pid)
            lists["train" if pid < 2 else "val"].append(f"{rel} {pid}")
    for pid in (5, 6):
        for cam in (2, 15):
            rel = f"{pid:04d}/{pid:04d}_000_{cam:02d}_0303noon_0001_1.jpg"
            _img(base / te / rel, pid)
            lists["query" if cam == 2 else "gallery"].append(f"{rel} {pid}")
    for k, v in lists.items():
        (base / f"list_{k}.txt").write_text("\n".join(v) + "\n")
    ds = read_msmt17(tmp_path)
    assert len(ds.train) == 6 and ds.num_train_pids == 3  # list_train + list_val
    assert {s.camid for s in ds.query} == {1} and {s.camid for s in ds.gallery} == {14}
    assert all(p.endswith(".jpg") and te in p for p, _, _ in ds.gallery)
    assert len(read_msmt17(base, include_val=False).train) == 4
    assert detect_format(tmp_path) == "msmt17"
    (base / "list_query.txt").write_text("0005/bad.jpg 5\n")
    with pytest.raises(BadFileNameError, match="list_query.txt:1"):
        read_msmt17(tmp_path)
    (base / "list_gallery.txt").unlink()
    (base / "list_query.txt").write_text("\n".join(lists["query"]))
    with pytest.raises(DatasetLayoutError, match="list_gallery.txt"):
        read_msmt17(tmp_path)


def test_synthetic_manifest(tmp_path):
    root = generate("market-like", tmp_path / "syn", 4, seed=1, processes=1, image_size=(32, 16))
    ds = read_synthetic(root)
    assert detect_format(root) == "synthetic"
    assert len(ds.meta["train"]) == len(ds.train) and ds.meta["train"][0]["location"]
    # a manifest that disagrees with its file names is refused
    text = (root / "manifest.csv").read_text().splitlines()
    cols = text[1].split(",")
    cols[3] = str(int(cols[3]) % 6 + 1)  # wrong camera
    (root / "manifest.csv").write_text("\n".join([text[0], ",".join(cols)] + text[2:]) + "\n")
    with pytest.raises(DatasetLayoutError, match="file name .* says"):
        read_synthetic(root)


def test_custom_csv_folder_and_pid_folders(tmp_path):
    for i in range(6):
        _img(tmp_path / "imgs" / f"{i}.png", i * 20)
    (tmp_path / "all.csv").write_text(
        "path,pid,camid,subset\nimgs/0.png,1,0,train\nimgs/1.png,1,1,train\nimgs/2.png,2,0,train\n"
        "imgs/3.png,5,0,query\nimgs/4.png,5,1,gallery\nimgs/5.png,6,1,gallery\n"
    )
    ds = read_custom(tmp_path / "all.csv")
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (3, 1, 2)
    assert read_dataset(tmp_path / "all.csv").name == "custom"
    # train/<pid>/ folders (a folder of pid-labelled images), camera from c<N> when present
    for pid in (10, 11):
        for c in (1, 2):
            _img(tmp_path / "pf" / "train" / str(pid) / f"img_c{c}_{pid}.jpg", pid)
    ds = read_custom(tmp_path / "pf")
    assert len(ds.train) == 4 and {s.camid for s in ds.train} == {0, 1} and not ds.query
    (tmp_path / "bad.csv").write_text("file,id\nx,1\n")
    with pytest.raises(DatasetLayoutError, match="bad.csv.*path,pid,camid"):
        read_custom(tmp_path / "bad.csv")
    (tmp_path / "missing.csv").write_text("path,pid,camid\nnope.jpg,1,0\n")
    with pytest.raises(DatasetNotFoundError, match="nope.jpg"):
        read_custom(tmp_path / "missing.csv")


def test_bad_layouts_name_the_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does-not-exist"):
        read_market1501(tmp_path / "does-not-exist")
    with pytest.raises(DatasetLayoutError, match="bounding_box_train"):
        read_market1501(tmp_path)
    root = _market(tmp_path / "m1")
    for f in (root / "query").iterdir():
        f.unlink()
    with pytest.raises(EmptyDatasetError, match="query"):
        read_market1501(root)
    (root / "query").rmdir()
    with pytest.raises(DatasetLayoutError, match=r"m1/query"):
        read_market1501(root)
    root = _market(tmp_path / "m2")
    _img(root / "bounding_box_test" / "person_12.jpg")
    with pytest.raises(BadFileNameError, match="person_12.jpg"):
        read_market1501(root)
    with pytest.raises(DatasetLayoutError, match="expected a CSV file"):
        read_custom(tmp_path / "m1" / "bounding_box_train")


def test_query_without_cross_camera_match(tmp_path):
    root = _market(tmp_path / "m", junk=False)
    _img(root / "query" / "0042_c1s1_000001_00.jpg")
    _img(root / "bounding_box_test" / "0042_c1s1_000002_00.jpg")  # same camera only
    with pytest.raises(UnmatchedQueryError, match="0042_c1s1_000001_00.jpg"):
        read_market1501(root)
    assert len(read_market1501(root, validate=False).query) == 3


def test_corrupt_image_is_reported_with_its_path(tmp_path):
    root = _market(tmp_path / "m", junk=False)
    bad = root / "bounding_box_train" / "0002_c1s1_000251_01.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    ds = read_market1501(root)
    with pytest.raises(CorruptImageError, match="0002_c1s1_000251_01.jpg"):
        verify_images(ds.train)
    with pytest.raises(CorruptImageError):
        load_image(str(bad))
    data = ReidImageDataset(ds.train)
    i = [k for k, s in enumerate(ds.train) if s.path == str(bad)][0]
    with pytest.raises(CorruptImageError):
        data[i]
    assert cli_main(["check-data", str(root), "--verify"]) == 2


def test_dataset_returns_image_pid_camid_index(tmp_path):
    ds = read_market1501(_market(tmp_path / "m"))
    data = ReidImageDataset(ds.gallery, transform=lambda x: x.float() / 255)
    img, pid, camid, index = data[3]
    assert img.shape == (3, 8, 4) and img.dtype == torch.float32
    assert (pid, camid, index) == (ds.gallery[3].pid, ds.gallery[3].camid, 3)
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    imgs, pids, camids, idx = next(iter(loader))
    assert imgs.shape == (4, 3, 8, 4) and idx.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="empty"):
        ReidImageDataset([])
