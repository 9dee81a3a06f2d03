"""The automatic labeler: file names, manifest rows and their checks.

Every image gets a Market-1501-style name ``{pid:04d}_c{cam}s{view}_{frame:06d}_{k:02d}.jpg``
(pid 0 = distractor) inside ``bounding_box_train/``, ``query/`` or ``bounding_box_test/``, and
a row of ``manifest.csv`` with every label: identity, camera, viewpoint, weather, time of day,
the jittered box and the tight box around the projected body (frame pixels), the occlusion
fraction, the viewing azimuth, distance and capture height.

Note: cameras >= 10 are written with two digits (``c12s3``); read such names with
``([-\\d]+)_c(\\d+)`` (our readers do), not the single-digit ``_c(\\d)`` of older tools.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from ..fileio import atomic_write_text

SUBSET_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
NAME_RE = re.compile(r"^(-?\d+)_c(\d+)s(\d+)_(\d+)_(\d+)\.(jpg|png)$")

MANIFEST_COLUMNS = (
    "path",
    "subset",
    "pid",
    "camid",
    "viewpoint",
    "frame",
    "k",
    "location",
    "indoor",
    "weather",
    "hour",
    "azimuth",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "tight_x",
    "tight_y",
    "tight_w",
    "tight_h",
    "occlusion",
    "distance",
    "capture_height",
    "twin_of",
)
_INT_COLUMNS = ("pid", "camid", "viewpoint", "frame", "k", "indoor", "capture_height", "twin_of")
_FLOAT_COLUMNS = (
    "hour",
    "azimuth",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "tight_x",
    "tight_y",
    "tight_w",
    "tight_h",
    "occlusion",
    "distance",
)


class ManifestError(ValueError):
    """A manifest or label file is missing, malformed or disagrees with the file names."""


def image_name(pid: int, cam: int, view: int, frame: int, k: int, ext: str = "jpg") -> str:
    """The Market-1501-style file name of one image."""
    if pid < 0 or cam < 1 or view < 1 or frame < 0 or not 0 <= k < 100:
        raise ValueError(
            f"image_name: expected pid >= 0, cam >= 1, view >= 1, frame >= 0, 0 <= k < 100, got "
            f"pid={pid}, cam={cam}, view={view}, frame={frame}, k={k}"
        )
    return f"{pid:04d}_c{cam}s{view}_{frame:06d}_{k:02d}.{ext}"


def parse_image_name(name: str) -> tuple[int, int, int, int, int]:
    """(pid, cam, view, frame, k) of a name made by :func:`image_name`."""
    m = NAME_RE.match(Path(name).name)
    if m is None:
        raise ManifestError(
            f"{name}: expected a name like 0001_c3s2_000123_00.jpg (pid_c<cam>s<view>_frame_k)"
        )
    return tuple(int(g) for g in m.groups()[:5])  # type: ignore[return-value]


def format_row(row: dict) -> dict:
    """Round floats so manifests are compact and byte-stable."""
    out = {}
    for c in MANIFEST_COLUMNS:
        v = row[c]
        if c in _FLOAT_COLUMNS:
            out[c] = f"{float(v):.3f}"
        elif c in _INT_COLUMNS:
            out[c] = str(int(v))
        else:
            out[c] = str(v)
    return out


def write_manifest(rows: list[dict], path: Path) -> None:
    """Write ``rows`` (dicts with MANIFEST_COLUMNS) as CSV at ``path`` (atomically)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(format_row(r))
    atomic_write_text(path, buf.getvalue())


def read_manifest(path: str | Path, check_files: bool = True) -> list[dict]:
    """Read and check a manifest: columns, types, name/label agreement, subset folders and
    (with ``check_files``) that every image exists. Paths are relative to the manifest."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (expected manifest.csv of smcr synth)")
    root = path.parent
    rows: list[dict] = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [
            c for c in ("path", "subset", "pid", "camid") if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise ManifestError(f"{path}: missing columns {missing}; header is {reader.fieldnames}")
        for line, r in enumerate(reader, start=2):
            try:
                for c in _INT_COLUMNS:
                    if c in r and r[c] != "":
                        r[c] = int(r[c])
                for c in _FLOAT_COLUMNS:
                    if c in r and r[c] != "":
                        r[c] = float(r[c])
            except ValueError as e:
                raise ManifestError(f"{path}:{line}: bad number ({e})") from e
            if r["subset"] not in SUBSET_DIRS:
                raise ManifestError(
                    f"{path}:{line}: subset must be one of {sorted(SUBSET_DIRS)}, got {r['subset']!r}"
                )
            rel = Path(r["path"])
            if rel.parent.name != SUBSET_DIRS[r["subset"]]:
                raise ManifestError(
                    f"{path}:{line}: {rel} is not in {SUBSET_DIRS[r['subset']]}/ as its subset "
                    f"{r['subset']!r} requires"
                )
            pid, cam, view, frame, k = parse_image_name(rel.name)
            if (pid, cam) != (r["pid"], r["camid"]) or (
                "viewpoint" in r and view != r["viewpoint"]
            ):
                raise ManifestError(
                    f"{path}:{line}: file name {rel.name} says pid={pid} cam={cam} view={view} but "
                    f"the row says pid={r['pid']} cam={r['camid']} view={r.get('viewpoint')}"
                )
            if check_files and not (root / rel).is_file():
                raise ManifestError(f"{path}:{line}: image {root / rel} does not exist")
            rows.append(r)
    if not rows:
        raise ManifestError(f"{path}: manifest has no rows")
    return rows
