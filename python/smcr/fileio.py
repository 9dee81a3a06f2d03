"""Safe file output, shared by every writer of the package: nothing a user wrote is ever
left half-written.

- :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_save`: write to a
  unique temporary file beside the target (``.<name>.<random>.tmp``), then rename it over
  the target; a reader sees the old file or the new one, never a part, and a failed write
  leaves no temporary behind.
- :func:`open_partial` / :func:`publish_partial`: the protocol of long, resumable dataset
  writers (synthetic generation, dataset translation): work goes into ``<out>.partial/``
  beside a plan file; a stopped run resumes only with the same plan; the finished folder
  replaces ``<out>`` by renames, so ``<out>`` is complete or absent (or its old version).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "atomic_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "open_partial",
    "publish_partial",
    "sha256_json",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes 0600 files; a written file gets the mode a plain open() would give it (or keeps
# the mode of the file it replaces), so datasets and checkpoints stay readable by others
_NEW_FILE_MODE = 0o666 & ~_umask()


def _tmp_path(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        mode = path.stat().st_mode & 0o7777 if path.is_file() else _NEW_FILE_MODE
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return Path(tmp)


def _replace_from_tmp(path: str | os.PathLike, write: Callable[[Any], None], sync: bool) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, sync: bool = True) -> None:
    """Write `data` to `path` atomically (parent folders are created). `sync` fsyncs the
    file before the rename (durable across a power cut); bulk writers of many small files
    that can be regenerated (images of a resumable run) may turn it off."""
    _replace_from_tmp(path, lambda f: f.write(data), sync)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` of `obj` to `path` atomically, fsynced (checkpoints)."""
    _replace_from_tmp(path, lambda f: torch.save(obj, f), True)


def sha256_json(obj: Any) -> str:
    """SHA-256 of the canonical JSON of `obj` (sorted keys, no spaces)."""
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def open_partial(
    out: Path,
    plan: dict[str, Any],
    *,
    resume: bool,
    plan_name: str,
    mismatch: Callable[[Path], Exception],
) -> Path:
    """Create or reopen ``<out>.partial/`` for the work described by `plan` (JSON-able).

    An existing partial folder is continued when `resume` is true and its plan file
    (`plan_name`) equals `plan`; with `resume` false it is deleted and started afresh; a
    different plan (or an unreadable plan file) with `resume` true raises
    ``mismatch(partial)`` and touches nothing. A file (not a folder) at ``<out>.partial``
    is never deleted: FileExistsError. Returns the partial folder, its plan file written."""
    partial = out.with_name(out.name + ".partial")
    plan_file = partial / plan_name
    if partial.exists() and not partial.is_dir():
        raise FileExistsError(
            f"{partial} exists and is not a folder; it is where the unfinished work of {out} "
            f"goes: move it away"
        )
    if partial.exists():
        try:
            same = plan_file.is_file() and json.loads(plan_file.read_text()) == plan
        except (ValueError, UnicodeDecodeError):  # a damaged plan is another plan
            same = False
        if resume and not same:
            raise mismatch(partial)
        if not resume:
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan_file, json.dumps(plan, indent=1, sort_keys=True))
    return partial


def publish_partial(partial: Path, out: Path, plan_name: str | None = None) -> None:
    """Make the finished `partial` folder `out`: renamed into place, an existing `out`
    moved aside first (into a new hidden folder ``.<out>.old.<random>/`` beside it, so no
    other file is ever replaced) and deleted only once the new one is in place; if the
    new one cannot be put in place, the old `out` is moved back. Temporaries of writes
    killed mid-way (``.*.tmp``) are removed first.

    plan_name: the plan file `open_partial` wrote; it is removed from the published folder,
    and kept in `partial` when publishing fails, so that a rerun resumes the finished work.
    """
    for stale in partial.rglob(".*.tmp"):
        stale.unlink()
    plan = None
    if plan_name is not None:
        plan = (partial / plan_name).read_bytes()
        (partial / plan_name).unlink()
    try:
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            old = trash / out.name
            out.rename(old)
            try:
                partial.rename(out)
            except BaseException:
                old.rename(out)
                trash.rmdir()
                raise
            shutil.rmtree(trash)
        else:
            partial.rename(out)
    except BaseException:
        if plan is not None and partial.is_dir():
            atomic_write_bytes(partial / plan_name, plan)
        raise
