"""Readers of person re-ID datasets into one structure, :class:`ReidDataset`.

Layouts (root may be the dataset folder itself or the folder that contains it):

* Market-1501: ``Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/``, names
  ``0002_c1s1_000451_03.jpg`` parsed with ``([-\\d]+)_c(\\d+)``; pid -1 (junk) dropped, pid 0
  (distractor) kept in the gallery only; cameras 1-6.
* DukeMTMC-reID: ``DukeMTMC-reID/`` with the same folders and naming; cameras 1-8.
* MSMT17: V1 ``MSMT17_V1/{train,test}/`` and V2 ``MSMT17_V2/{mask_train_v2,mask_test_v2}/`` with
  ``list_{train,val,query,gallery}.txt`` (lines ``0000/0000_000_01_..._0.jpg 0``; the camera
  is the third ``_`` field). Train = list_train + list_val (32,621 images, as the paper).
* Synthetic (``smcr synth``): ``manifest.csv`` beside the Market-style folders.
* Custom: a CSV with ``path,pid,camid[,subset]``; a folder with ``train.csv`` / ``query.csv`` /
  ``gallery.csv``; or a folder with ``train/``, ``query/``, ``gallery/`` holding Market-style
  names or one sub-folder per pid (camera from ``c<N>`` in the name, else 0).

Conventions (as torchreid / SpCL): camid is 0-based (file camera - 1); training pids are
relabelled to 0..N-1 in order of raw pid; query and gallery keep raw pids.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .errors import (
    BadFileNameError,
    DatasetLayoutError,
    DatasetNotFoundError,
    EmptyDatasetError,
    UnmatchedQueryError,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
MARKET_RE = re.compile(r"([-\d]+)_c(\d+)")
SUBSETS = ("train", "query", "gallery")


class ReidSample(NamedTuple):
    """One image: absolute path, identity (relabelled in train), 0-based camera."""

    path: str
    pid: int
    camid: int


@dataclass
class ReidDataset:
    """Train / query / gallery lists of one dataset.

    ``meta`` optionally holds one dict of extra labels per sample (synthetic manifests),
    aligned with the lists; ``dropped`` counts junk / distractor images left out.
    """

    name: str
    root: Path
    train: list[ReidSample]
    query: list[ReidSample]
    gallery: list[ReidSample]
    meta: dict[str, list[dict]] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def subset(self, name: str) -> list[ReidSample]:
        """The 'train', 'query' or 'gallery' list."""
        if name not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {name!r}")
        return getattr(self, name)

    def stats(self) -> dict[str, tuple[int, int, int]]:
        """{subset: (#ids, #images, #cameras)}; pid 0 distractors do not count as ids."""
        out = {}
        for s in SUBSETS:
            items = self.subset(s)
            ids = {x.pid for x in items if not (s == "gallery" and x.pid == 0)}
            out[s] = (len(ids), len(items), len({x.camid for x in items}))
        return out

    @property
    def num_train_pids(self) -> int:
        """Number of training identities (the classifier size)."""
        return len({x.pid for x in self.train})


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetLayoutError(f"{path}: missing folder; expected {what}")
    return path


def _find_root(root: Path, names: tuple[str, ...], marker: str) -> Path:
    """The folder holding ``marker``: root itself or root/<one of names>."""
    if not root.exists():
        raise DatasetNotFoundError(f"{root}: dataset root does not exist")
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset root must be a folder")
    if (root / marker).exists():
        return root
    for n in names:
        for cand in (root / n, root / n.lower()):
            if (cand / marker).exists():
                return cand
            for sub in cand.iterdir() if cand.is_dir() else []:
                if sub.is_dir() and (sub / marker).exists():
                    return sub
    raise DatasetLayoutError(
        f"{root}: no {marker}/ found in it or in {', '.join(n + '/' for n in names)}; "
        f"expected the {names[0]} layout"
    )


def _market_dir(folder: Path, subset: str, cam_range: tuple[int, int] | None) -> tuple[list, int]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and _is_image(p))
    if not files:
        raise EmptyDatasetError(
            f"{folder}: no images (expected .jpg files like 0002_c1s1_000451_03.jpg)"
        )
    out, dropped = [], 0
    for p in files:
        m = MARKET_RE.match(p.name)
        if m is None:
            raise BadFileNameError(
                f"{p}: bad file name; expected <pid>_c<camera>..., e.g. 0002_c1s1_000451_03.jpg"
            )
        try:
            pid, cam = int(m.group(1)), int(m.group(2))
        except ValueError:
            raise BadFileNameError(
                f"{p}: bad pid {m.group(1)!r}; expected <pid>_c<camera>... with an integer pid "
                f"(-1 = junk), e.g. 0002_c1s1_000451_03.jpg"
            ) from None
        if pid == -1 or (pid == 0 and subset != "gallery"):
            dropped += 1
            continue
        if pid < -1:
            raise BadFileNameError(f"{p}: pid must be >= -1, got {pid}")
        if cam < 1:
            raise BadFileNameError(f"{p}: cameras are numbered from 1 (c1), got c{cam}")
        if cam_range is not None and not cam_range[0] <= cam <= cam_range[1]:
            raise BadFileNameError(
                f"{p}: camera must be in {cam_range[0]}..{cam_range[1]} for this dataset, got {cam}"
            )
        out.append(ReidSample(str(p), pid, cam - 1))
    return out, dropped


def relabel(samples: list[ReidSample]) -> list[ReidSample]:
    """Map pids to 0..N-1 in order of raw pid (training labels)."""
    ids = {pid: i for i, pid in enumerate(sorted({s.pid for s in samples}))}
    return [ReidSample(s.path, ids[s.pid], s.camid) for s in samples]


def check_queries(query: list[ReidSample], gallery: list[ReidSample], where: Path) -> None:
    """Raise :class:`UnmatchedQueryError` if a query has no same-pid gallery image from
    another camera (the standard protocol removes same-camera matches). Single-camera data
    (every query and gallery image from one camera, evaluated with ``single_camera=True``)
    needs a same-pid gallery image other than the query's own file instead."""
    cams: dict[int, set[int]] = {}
    for g in gallery:
        cams.setdefault(g.pid, set()).add(g.camid)
    if len({x.camid for x in query} | {x.camid for x in gallery}) == 1:
        files: dict[int, set[str]] = {}
        for g in gallery:
            files.setdefault(g.pid, set()).add(g.path)
        for q in query:
            if not (files.get(q.pid, set()) - {q.path}):
                raise UnmatchedQueryError(
                    f"{q.path}: query pid {q.pid} has no other gallery image of the same pid in "
                    f"{where} (single-camera data); expected at least one"
                )
        return
    for q in query:
        if not (cams.get(q.pid, set()) - {q.camid}):
            raise UnmatchedQueryError(
                f"{q.path}: query pid {q.pid} camera {q.camid + 1} has no gallery image of the "
                f"same pid from another camera in {where}; expected at least one"
            )


def _finish(name, root, train, query, gallery, dropped, relabel_train, validate, meta=None):
    if validate and query:
        check_queries(query, gallery, root)
    return ReidDataset(
        name=name,
        root=root,
        train=relabel(train) if relabel_train else train,
        query=query,
        gallery=gallery,
        meta=meta or {},
        dropped=dropped,
    )


def read_market_style(
    root: str | Path,
    name: str = "market1501",
    folder_names: tuple[str, ...] = ("Market-1501-v15.09.15", "Market-1501", "market1501"),
    cam_range: tuple[int, int] | None = (1, 6),
    relabel_train: bool = True,
    validate: bool = True,
) -> ReidDataset:
    """Read a Market-1501-layout dataset (also DukeMTMC-reID and our synthetic trees)."""
    base = _find_root(Path(root), folder_names, "bounding_box_train")
    lists, dropped = {}, {}
    for subset, d in (
        ("train", "bounding_box_train"),
        ("query", "query"),
        ("gallery", "bounding_box_test"),
    ):
        folder = _need_dir(base / d, f"{d}/ beside bounding_box_train/ (Market-1501 layout)")
        lists[subset], dropped[subset] = _market_dir(folder, subset, cam_range)
        if not lists[subset]:
            raise EmptyDatasetError(f"{folder}: every image is junk (pid -1) or a distractor")
    return _finish(
        name,
        base,
        lists["train"],
        lists["query"],
        lists["gallery"],
        dropped,
        relabel_train,
        validate,
    )


def read_market1501(
    root: str | Path, relabel_train: bool = True, validate: bool = True
) -> ReidDataset:
    """Market-1501 (cameras 1-6)."""
    return read_market_style(
        root, "market1501", cam_range=(1, 6), relabel_train=relabel_train, validate=validate
    )


def read_dukemtmc(
    root: str | Path, relabel_train: bool = True, validate: bool = True
) -> ReidDataset:
    """DukeMTMC-reID (cameras 1-8; withdrawn by its authors: we only read existing copies)."""
    return read_market_style(
        root,
        "dukemtmc",
        folder_names=("DukeMTMC-reID", "dukemtmc-reid", "dukemtmc"),
        cam_range=(1, 8),
        relabel_train=relabel_train,
        validate=validate,
    )


_MSMT_VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}


def read_msmt17(
    root: str | Path, include_val: bool = True, relabel_train: bool = True, validate: bool = True
) -> ReidDataset:
    """MSMT17 V1 (``train/``, ``test/``) or V2 (``mask_train_v2/``, ``mask_test_v2/``) with
    the four list files. ``include_val`` adds list_val to training (the paper's 32,621)."""
    root = Path(root)
    if not root.exists():
        raise DatasetNotFoundError(f"{root}: dataset root does not exist")
    base = None
    for cand in (
        [root] + [root / v for v in _MSMT_VERSIONS] + [root / "msmt17" / v for v in _MSMT_VERSIONS]
    ):
        if (cand / "list_train.txt").is_file():
            base = cand
            break
    if base is None:
        raise DatasetLayoutError(
            f"{root}: no list_train.txt found in it or in MSMT17_V1/ or MSMT17_V2/; expected the "
            f"MSMT17 layout (train/ + list_*.txt for V1, mask_train_v2/ + list_*.txt for V2)"
        )
    found = next(
        ((v, tr, te) for v, (tr, te) in _MSMT_VERSIONS.items() if (base / tr).is_dir()), None
    )
    if found is None:
        raise DatasetLayoutError(
            f"{base}: has list files but neither train/ (V1) nor mask_train_v2/ (V2) image folders"
        )
    version, tr, te = found
    test_dir = _need_dir(base / te, f"{te}/ beside {tr}/ ({version} layout)")

    def read_list(name: str, folder: Path) -> list[ReidSample]:
        lst = base / name
        if not lst.is_file():
            raise DatasetLayoutError(f"{lst}: missing list file of the {version} layout")
        out = []
        for ln, line in enumerate(lst.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise BadFileNameError(
                    f"{lst}:{ln}: expected '<relative path> <pid>', got {line!r}"
                )
            rel, pid_s = parts
            fields = Path(rel).name.split("_")
            try:
                pid, cam = int(pid_s), int(fields[2])
            except (ValueError, IndexError) as e:
                raise BadFileNameError(
                    f"{lst}:{ln}: {rel}: expected a name like 0000_000_01_0303morning_0015_0.jpg "
                    f"(camera = third field) and an integer pid"
                ) from e
            if pid < 0 or cam < 1:
                raise BadFileNameError(
                    f"{lst}:{ln}: pid must be >= 0 and camera >= 1, got {pid}, {cam}"
                )
            out.append(ReidSample(str(folder / rel), pid, cam - 1))
        if not out:
            raise EmptyDatasetError(f"{lst}: list file holds no images")
        return out

    train = read_list("list_train.txt", base / tr)
    if include_val and (base / "list_val.txt").is_file():
        train = train + read_list("list_val.txt", base / tr)
    query = read_list("list_query.txt", test_dir)
    gallery = read_list("list_gallery.txt", test_dir)
    return _finish("msmt17", base, train, query, gallery, {}, relabel_train, validate)


def read_synthetic(
    root: str | Path, relabel_train: bool = True, validate: bool = True, check_files: bool = True
) -> ReidDataset:
    """A dataset made by ``smcr synth``: the manifest is checked against the file names and
    its labels (weather, viewpoint, box ...) are kept in ``meta``."""
    from smcr.synth.labeler import ManifestError, read_manifest

    root = Path(root)
    if not root.exists():
        raise DatasetNotFoundError(f"{root}: dataset root does not exist")
    try:
        rows = read_manifest(root / "manifest.csv", check_files=check_files)
    except ManifestError as e:
        raise DatasetLayoutError(str(e)) from e
    lists: dict[str, list] = {s: [] for s in SUBSETS}
    meta: dict[str, list] = {s: [] for s in SUBSETS}
    for r in rows:
        if r["pid"] == 0 and r["subset"] != "gallery":
            continue
        lists[r["subset"]].append(
            ReidSample(str(root / r["path"]), int(r["pid"]), int(r["camid"]) - 1)
        )
        meta[r["subset"]].append(r)
    if not lists["train"] and not lists["query"]:
        raise EmptyDatasetError(f"{root / 'manifest.csv'}: no train or query images")
    return _finish(
        "synthetic",
        root,
        lists["train"],
        lists["query"],
        lists["gallery"],
        {},
        relabel_train,
        validate,
        meta,
    )


def _check_text(path: Path) -> None:
    """A clear error for a binary file given where a CSV list is expected."""
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetLayoutError(
            f"{path}: not a text CSV list (path,pid,camid[,subset]); a dataset root must be "
            f"a folder or such a CSV file ({e.reason} at byte {e.start})"
        ) from e


def _read_csv_list(path: Path) -> list[tuple[str, ReidSample]]:
    _check_text(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        cols = reader.fieldnames or []
        if not {"path", "pid", "camid"} <= set(cols):
            raise DatasetLayoutError(
                f"{path}: expected a header with path,pid,camid[,subset]; got {cols}"
            )
        out = []
        for r in reader:
            ln = reader.line_num
            if any(r.get(c) is None for c in ("path", "pid", "camid")):
                raise DatasetLayoutError(
                    f"{path}:{ln}: expected the columns {cols}, got a row with fewer fields: {r}"
                )
            try:
                pid, cam = int(r["pid"]), int(r["camid"])
            except ValueError as e:
                raise BadFileNameError(
                    f"{path}:{ln}: pid and camid must be integers, got {r}"
                ) from e
            if pid < 0 or cam < 0:
                raise BadFileNameError(
                    f"{path}:{ln}: pid and camid must be >= 0 (camid is 0-based), got "
                    f"pid={pid}, camid={cam}"
                )
            if not r["path"].strip():
                raise DatasetLayoutError(f"{path}:{ln}: empty path")
            p = Path(r["path"])
            if not p.is_absolute():
                p = path.parent / p
            if not p.is_file():
                raise DatasetNotFoundError(f"{path}:{ln}: image {p} does not exist")
            subset = (r.get("subset") or "train").strip()
            if subset not in SUBSETS:
                raise DatasetLayoutError(
                    f"{path}:{ln}: subset must be one of {SUBSETS}, got {subset!r}"
                )
            out.append((subset, ReidSample(str(p), pid, cam)))
    if not out:
        raise EmptyDatasetError(f"{path}: no rows")
    return out


def _folder_subset(folder: Path, subset: str) -> list[ReidSample]:
    """Market-style names directly in ``folder``, or one sub-folder per pid."""
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if subdirs:
        out = []
        for d in subdirs:
            try:
                pid = int(d.name)
            except ValueError as e:
                raise BadFileNameError(f"{d}: pid folders must be named by an integer pid") from e
            if pid < 0:
                raise BadFileNameError(f"{d}: pid folders must be named by an integer pid >= 0")
            files = sorted(p for p in d.iterdir() if p.is_file() and _is_image(p))
            if not files:
                raise EmptyDatasetError(f"{d}: no images in this pid folder")
            for p in files:
                m = re.search(r"c(\d+)", p.stem)
                cam = int(m.group(1)) if m else 1
                if cam < 1:
                    raise BadFileNameError(
                        f"{p}: cameras in file names are numbered from 1 (c1), got c{cam}"
                    )
                out.append(ReidSample(str(p), pid, cam - 1))
        return out
    samples, _ = _market_dir(folder, subset, None)
    return samples


def read_custom(root: str | Path, relabel_train: bool = True, validate: bool = True) -> ReidDataset:
    """A generic list of ``(path, pid, camid)``: a CSV file, a folder of CSVs, or a folder of
    ``train/`` / ``query/`` / ``gallery/`` image folders. CSV camids are taken as given
    (0-based); in folders the camera is ``c<N>`` of the name minus 1, or 0 without one."""
    root = Path(root)
    if not root.exists():
        raise DatasetNotFoundError(f"{root}: dataset root does not exist")
    lists: dict[str, list[ReidSample]] = {s: [] for s in SUBSETS}
    if root.is_file() and root.suffix.lower() in IMAGE_EXTENSIONS + (".webp", ".tif", ".tiff"):
        raise DatasetLayoutError(
            f"{root}: is an image file; expected a dataset folder or a CSV list "
            "(path,pid,camid[,subset])"
        )
    if root.is_file():
        for subset, s in _read_csv_list(root):
            lists[subset].append(s)
        base = root.parent
    elif any((root / f"{s}.csv").is_file() for s in SUBSETS):
        for s in SUBSETS:
            if (root / f"{s}.csv").is_file():
                lists[s] = [x for _, x in _read_csv_list(root / f"{s}.csv")]
        base = root
    elif any((root / s).is_dir() for s in SUBSETS):
        for s in SUBSETS:
            if (root / s).is_dir():
                lists[s] = _folder_subset(root / s, s)
        base = root
    else:
        raise DatasetLayoutError(
            f"{root}: expected a CSV file (path,pid,camid[,subset]), a folder with train.csv / "
            f"query.csv / gallery.csv, or a folder with train/ query/ gallery/ image folders"
        )
    if not lists["train"] and not lists["query"]:
        raise EmptyDatasetError(f"{root}: no train or query images")
    if bool(lists["query"]) != bool(lists["gallery"]):
        have, missing = ("query", "gallery") if lists["query"] else ("gallery", "query")
        where = (
            f"{missing}/ folder (beside {have}/)"
            if root.is_dir() and (root / have).is_dir()
            else f"{missing} list (beside the {have} one)"
        )
        raise DatasetLayoutError(
            f"{root}: has {have} images but no {where}; query and gallery come together"
        )
    return _finish(
        "custom",
        base,
        lists["train"],
        lists["query"],
        lists["gallery"],
        {},
        relabel_train,
        validate,
    )


READERS = {
    "market1501": read_market1501,
    "dukemtmc": read_dukemtmc,
    "msmt17": read_msmt17,
    "synthetic": read_synthetic,
    "custom": read_custom,
}


def _check_root(root: object) -> None:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike), got {type(root).__name__}")


def detect_format(root: str | Path) -> str:
    """Guess the layout of ``root``: one of READERS' keys."""
    _check_root(root)
    root = Path(root)
    if not root.exists():
        raise DatasetNotFoundError(f"{root}: dataset root does not exist")
    if root.is_file():
        return "custom"
    if (root / "manifest.csv").is_file():
        return "synthetic"
    names = {p.name.lower() for p in root.iterdir()} | {root.name.lower()}
    if any(n.startswith("msmt17") for n in names) or (root / "list_train.txt").is_file():
        return "msmt17"
    if any("duke" in n for n in names):
        return "dukemtmc"
    if any(n.startswith("market") for n in names):
        return "market1501"
    if any((root / d).is_dir() for d in ("bounding_box_train", "bounding_box_test")):
        return "market-style"  # a partial Market layout is reported by its reader
    return "custom"


def read_dataset(
    root: str | Path, kind: str = "auto", relabel_train: bool = True, validate: bool = True
) -> ReidDataset:
    """Read ``root`` with the reader for ``kind`` (``auto`` detects it)."""
    _check_root(root)
    if kind == "auto":
        kind = detect_format(root)
    if kind == "market-style":
        return read_market_style(
            root, "market-style", cam_range=None, relabel_train=relabel_train, validate=validate
        )
    if kind not in READERS:
        raise ValueError(
            f"kind must be 'auto', 'market-style' or one of {sorted(READERS)}, got {kind!r}"
        )
    return READERS[kind](root, relabel_train=relabel_train, validate=validate)


def format_stats(ds: ReidDataset) -> str:
    """The subset / #ids / #images / #cameras table."""
    st = ds.stats()
    lines = [
        f"dataset: {ds.name}  root: {ds.root}",
        "  ----------------------------------------",
        "  subset   | # ids | # images | # cameras",
        "  ----------------------------------------",
    ]
    for s in SUBSETS:
        n_id, n_img, n_cam = st[s]
        lines.append(f"  {s:<8} | {n_id:5d} | {n_img:8d} | {n_cam:9d}")
    lines.append("  ----------------------------------------")
    extra = {k: v for k, v in ds.dropped.items() if v}
    if extra:
        lines.append(f"  dropped (junk pid -1 / pid 0 outside the gallery): {extra}")
    return "\n".join(lines)
