"""Translate a whole dataset to disk: same layout, file names, labels and manifest.

    translate_dataset("runs/m2d", "data/market_like", "data/market_like_to_duke", "AB")

The output mirrors the dataset's root folder (the folder `smcr.data.read_dataset` reports
as `root`): every image the layout lists is replaced by its translation under the same
relative path and name, and the layout's label files at the top of the root
(`manifest.csv`, `identities.csv`, `meta.json` of a synthetic set; MSMT17's `list_*.txt`;
a custom set's CSVs, with every image path written relative to the root) are copied.
Market-1501-style folders are translated whole, junk (pid -1) images included. A dataset
given as one CSV list is exactly that list: only the images it names are translated and
only the list itself is written (as `out_dir / <its name>`, paths relative), whatever
else lies in its folder. Images come out at the translator's size (`keep_size=True`
resizes them back); JPEGs are written at quality 95. `translation.json` records the
source, the translator and the direction. `out_dir` may not be, or hold, the dataset's
folder or any of its files (replacing it would delete them).

Subsets not named in `subsets` are copied unchanged (hard links where possible), so the
result still opens with every reader.

Work goes into `<out_dir>.partial/`; each image is written to a temporary name and
renamed, so a stopped run resumes where it stopped (same plan required) and a reader never
sees half a file; the finished folder is checked with `read_dataset` and renamed to
`out_dir` at once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image

from smcr.data import detect_format, load_image, read_dataset, resize
from smcr.data.readers import IMAGE_EXTENSIONS, SUBSETS
from smcr.fileio import (
    atomic_write_bytes,
    atomic_write_text,
    open_partial,
    publish_partial,
    sha256_json,
)

from .config import TranslateError
from .trainer import Translator

__all__ = ["list_dataset_files", "translate_dataset"]

_MARKET_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


def _rel(path: str | Path, base: Path) -> str:
    p = Path(path).resolve()
    try:
        return p.relative_to(base).as_posix()
    except ValueError:
        raise TranslateError(
            f"image {path} lies outside the dataset root {base} (for a CSV list: the CSV's "
            f"folder); translate_dataset mirrors that folder, so every listed image must be "
            f"inside it"
        ) from None


def _csv_list_names(root: Path, kind: str) -> set[str]:
    """Names of the CSV lists (path,pid,camid) of a custom dataset at `root`, whose paths
    are rewritten relative to the root in the output."""
    if kind != "custom":
        return set()
    if root.is_file():
        return {root.name}
    return {f"{s}.csv" for s in SUBSETS if (root / f"{s}.csv").is_file()}


def list_dataset_files(
    root: str | os.PathLike,
) -> tuple[str, Path, list[tuple[str, str]], list[str]]:
    """What a dataset consists of, for mirroring.

    Returns (kind, base, images, label_files): the layout `detect_format` finds, the root
    folder that holds it, `(relative path, subset)` of every image to carry over, in a
    stable order, and the relative paths of the label files at the top of `base`. For a
    dataset given as one CSV list, `base` is the CSV's folder, the images are those it
    lists and the only label file is the CSV itself.
    """
    root = Path(root)
    kind = detect_format(root)
    if kind == "synthetic":
        from smcr.synth.labeler import ManifestError, read_manifest

        base = root.resolve()
        try:
            rows = read_manifest(base / "manifest.csv", check_files=True)
        except ManifestError as e:
            raise TranslateError(str(e)) from e
        images = [(Path(r["path"]).as_posix(), r["subset"]) for r in rows]
    else:
        ds = read_dataset(root, kind, relabel_train=False, validate=False)
        base = Path(ds.root).resolve()
        if kind in ("market-style", "market1501", "dukemtmc"):
            images = []
            for subset, d in _MARKET_DIRS.items():
                folder = base / d
                images += [
                    (p.relative_to(base).as_posix(), subset)
                    for p in sorted(folder.iterdir())
                    if p.is_file() and _is_image(p)
                ]
        else:
            images = [(_rel(s.path, base), sub) for sub in SUBSETS for s in ds.subset(sub)]
    seen: set[str] = set()
    unique = []
    for rel, sub in images:
        if rel not in seen:
            seen.add(rel)
            unique.append((rel, sub))
    if root.is_file():  # a CSV list: nothing else of its folder belongs to the dataset
        return kind, base, unique, [root.name]
    labels = sorted(
        p.name
        for p in base.iterdir()
        if p.is_file()
        and not _is_image(p)
        and not p.name.startswith(".")
        and p.name != "translation.json"
    )
    return kind, base, unique, labels


def _encode(img: torch.Tensor, suffix: str, quality: int) -> bytes:
    """(3, H, W) uint8 -> file bytes in the format of `suffix`."""
    pil = Image.fromarray(img.permute(1, 2, 0).contiguous().numpy())
    buf = io.BytesIO()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP"}[suffix.lower()]
    if fmt == "JPEG":
        pil.save(buf, format=fmt, quality=quality)
    else:
        pil.save(buf, format=fmt)
    return buf.getvalue()


def _copy_label_file(src: Path, dst: Path, base: Path, is_list: bool = False) -> None:
    """Copy a label file; a CSV with a `path` column gets absolute paths made relative.

    is_list: `src` is a CSV list of a custom dataset (read as the readers do: BOM and
    spaces after commas allowed); each of its paths is written as the path of the image
    translate_dataset wrote, relative to `base` (so '../', './' or a symlink inside the
    root still point at the translated file).
    """
    if src.suffix.lower() != ".csv" and not is_list:
        atomic_write_bytes(dst, src.read_bytes())
        return
    with open(src, newline="", encoding="utf-8-sig" if is_list else None) as f:
        reader = csv.DictReader(f, skipinitialspace=is_list)
        cols = reader.fieldnames or []
        rows = list(reader)
    if "path" not in cols:
        atomic_write_bytes(dst, src.read_bytes())
        return
    if is_list:
        new = [
            _rel(p if Path(p).is_absolute() else src.parent / p, base)
            for p in (r["path"].strip() for r in rows)
        ]
        changed = [n != r["path"] for n, r in zip(new, rows, strict=True)]
    else:
        new = [_rel(r["path"], base) if Path(r["path"]).is_absolute() else r["path"] for r in rows]
        changed = [Path(r["path"]).is_absolute() for r in rows]
    if not any(changed):
        atomic_write_bytes(dst, src.read_bytes())
        return
    for r, n in zip(rows, new, strict=True):
        r["path"] = n
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(dst, buf.getvalue())


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_out_apart(out: Path, base: Path, rels: Sequence[str]) -> None:
    """Refuse an `out` that is the dataset's folder, holds it, or holds one of its files
    (`rels`, relative to `base`): replacing `out` would delete the source."""
    o = out.resolve()
    if o == base or o in base.parents:
        raise TranslateError(
            f"out_dir {out} must not be the dataset's folder {base} or a folder that holds it "
            f"(replacing it would delete the dataset)"
        )
    if base in o.parents:  # allowed beside a CSV list, if it holds none of the dataset's files
        for rel in rels:
            if o in (base / rel).parents:
                raise TranslateError(
                    f"out_dir {out} holds {base / rel}, a file of the dataset; choose a "
                    f"folder outside the dataset"
                )


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def translate_dataset(
    translator: Translator | str | os.PathLike,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    direction: str = "AB",
    *,
    subsets: Sequence[str] = SUBSETS,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    keep_size: bool = False,
    jpeg_quality: int = 95,
    overwrite: bool = False,
    resume: bool = True,
    reuse: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Translate every image of the dataset at `data` with `translator` (a Translator, a
    translator.pt or its training folder) in `direction` ('AB': from-domain -> to-domain,
    'BA' back) into `out_dir`; see the module docstring. Returns `out_dir` (for a dataset
    given as one CSV file, the translated list is `out_dir / <that file's name>`).

    overwrite: replace an existing `out_dir` (only once the new one is complete).
    resume: continue an unfinished `<out_dir>.partial` of the same plan; False restarts it.
    reuse: return an existing `out_dir` at once when its translation.json records the same
        plan (translator, direction, source files, label files' contents, settings).
    """
    for name, v in (("data", data), ("out_dir", out_dir)):
        if not isinstance(v, (str, os.PathLike)):
            raise TypeError(
                f"{name} must be a path (str or os.PathLike), got {type(v).__name__} {v!r}"
            )
    if not isinstance(translator, (Translator, str, os.PathLike)):
        raise TypeError(
            f"translator must be a Translator or the path of translator.pt or its training "
            f"folder, got {type(translator).__name__} {translator!r}"
        )
    if isinstance(subsets, str) or not isinstance(subsets, Sequence):
        raise TypeError(
            f"subsets must be a sequence of subset names, e.g. ('train',), got "
            f"{type(subsets).__name__} {subsets!r}"
        )
    if not isinstance(translator, Translator):
        translator = Translator.load(translator, device)
    translator.generator(direction)  # validates direction
    bad = [s for s in subsets if s not in SUBSETS]
    if bad or not subsets:
        raise TranslateError(
            f"subsets must be a non-empty selection of {SUBSETS}, got {list(subsets)}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TranslateError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if (
        isinstance(jpeg_quality, bool)
        or not isinstance(jpeg_quality, int)
        or not 1 <= jpeg_quality <= 100
    ):
        raise TranslateError(f"jpeg_quality must be an int in [1, 100], got {jpeg_quality!r}")
    say = log or (lambda _msg: None)
    out = Path(out_dir)
    src_root = Path(data)
    if out.resolve() == src_root.resolve() or src_root.resolve() in out.resolve().parents:
        raise TranslateError(f"out_dir {out} must not be the dataset {src_root} or inside it")
    if out.exists() and not out.is_dir():
        raise TranslateError(f"out_dir {out} exists and is not a folder")

    kind, base, images, label_files = list_dataset_files(src_root)
    if not images:
        raise TranslateError(f"{src_root}: the dataset holds no images")
    _check_out_apart(out, base, [rel for rel, _ in images] + label_files)
    sizes = [(base / rel).stat().st_size for rel, _ in images]
    plan = {
        # /2: the plan holds the label files (a /1 translation is redone once, not reused)
        "format": "smcr.translated-dataset/2",
        "translator_key": translator.key,
        "direction": direction,
        "kind": kind,
        "source": str(base),
        "source_files": sha256_json(
            [[rel, sub, n] for (rel, sub), n in zip(images, sizes, strict=True)]
        ),
        # labels held in files (CSV lists, manifests, MSMT lists): a changed label is
        # another plan, so `reuse` never returns a translation with stale labels
        "label_files": [[name, _file_sha256(base / name)] for name in label_files],
        "subsets": sorted(subsets),
        "image_size": list(translator.config.image_size),
        "keep_size": bool(keep_size),
        "jpeg_quality": jpeg_quality,
    }
    if out.exists():
        info_file = out / "translation.json"
        if reuse and info_file.is_file():
            info = json.loads(info_file.read_text())
            if {k: info.get(k) for k in plan} == plan:
                say(f"translate apply: {out} already holds this translation")
                return out
        if not overwrite:
            raise FileExistsError(
                f"{out} already exists; pass overwrite=True (--overwrite) to replace it"
            )
    partial = open_partial(
        out, plan, resume=resume, plan_name=".plan.json",
        mismatch=lambda p: TranslateError(
            f"{p} holds an unfinished translation of another plan (translator, dataset, "
            f"settings, or one written by an older smcr); delete it or pass resume=False "
            f"(--no-resume)"
        ),
    )

    keep = set(subsets)
    todo, copied = [], 0
    for rel, sub in images:
        dst = partial / rel
        if dst.is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if sub in keep:
            todo.append(rel)
        else:
            _link_or_copy(base / rel, dst)
            copied += 1
    done_before = len(images) - len(todo) - copied
    say(
        f"translate apply: {kind} dataset {base}: {len(images)} images, {len(todo)} to translate "
        f"({done_before} already done, {copied} copied unchanged)"
    )
    size = tuple(translator.config.image_size)
    t0 = time.perf_counter()
    for i in range(0, len(todo), batch_size):
        chunk = todo[i : i + batch_size]
        raw = [load_image(str(base / rel)) for rel in chunk]  # (3, h, w) uint8 each
        batch = torch.stack(
            [resize(x, size).round_().clamp_(0, 255).to(torch.uint8) for x in raw]
        )  # (B, 3, H, W)
        fake = translator.translate(batch, direction, batch_size)
        for rel, x, y in zip(chunk, raw, fake, strict=True):
            if keep_size and tuple(x.shape[-2:]) != size:
                y = resize(y, tuple(x.shape[-2:])).round_().clamp_(0, 255).to(torch.uint8)
            atomic_write_bytes(partial / rel, _encode(y, Path(rel).suffix, jpeg_quality))
        if (i // batch_size) % 20 == 0:
            say(f"translate apply: {min(i + batch_size, len(todo))}/{len(todo)} images")
    lists = _csv_list_names(src_root, kind)
    for name in label_files:
        _copy_label_file(base / name, partial / name, base, is_list=name in lists)
    info = dict(
        plan,
        trained_from=translator.meta.get("from", {}),
        trained_to=translator.meta.get("to", {}),
    )
    info["translated_images"] = sum(1 for _, s in images if s in keep)
    atomic_write_text(
        partial / "translation.json", json.dumps(info, indent=1, sort_keys=True) + "\n"
    )
    check = partial / src_root.name if src_root.is_file() else partial
    try:  # the result must open like its source
        read_dataset(check, "market-style" if kind in ("market1501", "dukemtmc") else kind)
    except ValueError as e:
        # the plan file stays: a rerun resumes this work (nothing is translated twice)
        raise TranslateError(f"translated dataset {partial} does not open: {e}") from e
    publish_partial(partial, out, plan_name=".plan.json")
    say(f"translate apply: wrote {out} ({len(todo)} images in {time.perf_counter() - t0:.1f} s)")
    return out
