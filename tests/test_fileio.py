"""smcr.fileio: atomic writes and the `<out>.partial` protocol every dataset writer uses."""

from __future__ import annotations

import importlib
import json
import os
import stat

import pytest
import torch
from smcr import fileio
from smcr.fileio import (
    atomic_save,
    atomic_write_bytes,
    atomic_write_text,
    open_partial,
    publish_partial,
)


class Boom(Exception):
    pass


def test_atomic_write_replaces_and_creates_parents(tmp_path):
    p = tmp_path / "a" / "b" / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_bytes(p, b"two", sync=False)
    assert p.read_bytes() == b"two"
    assert sorted(x.name for x in p.parent.iterdir()) == ["f.txt"]  # no temporaries left


def test_written_files_get_the_usual_mode_or_keep_their_own(tmp_path):
    mask = os.umask(0o022)
    try:
        importlib.reload(fileio)  # the default mode is read from the umask at import
        p = tmp_path / "manifest.csv"
        fileio.atomic_write_text(p, "a")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644  # not mkstemp's 0600
        p.chmod(0o640)
        fileio.atomic_save({"x": 1}, p)
        assert stat.S_IMODE(p.stat().st_mode) == 0o640
    finally:
        os.umask(mask)
        importlib.reload(fileio)


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "ckpt.pt"
    atomic_save({"w": torch.arange(3)}, p)

    class Unpicklable:
        def __reduce__(self):
            raise Boom("cannot pickle")

    with pytest.raises(Boom):
        atomic_save({"w": Unpicklable()}, p)
    assert torch.equal(torch.load(p, weights_only=True)["w"], torch.arange(3))
    assert [x.name for x in tmp_path.iterdir()] == ["ckpt.pt"]


def _mismatch(p):
    return Boom(f"{p} holds another plan")


def test_partial_resumes_same_plan_and_refuses_another(tmp_path):
    out = tmp_path / "ds"
    part = open_partial(out, {"seed": 1}, resume=True, plan_name="plan.json", mismatch=_mismatch)
    assert part == tmp_path / "ds.partial"
    (part / "done.jpg").write_bytes(b"x")
    # same plan: the work so far is kept
    again = open_partial(out, {"seed": 1}, resume=True, plan_name="plan.json", mismatch=_mismatch)
    assert (again / "done.jpg").is_file()
    # another plan: refused, nothing touched
    with pytest.raises(Boom, match="another plan"):
        open_partial(out, {"seed": 2}, resume=True, plan_name="plan.json", mismatch=_mismatch)
    assert (part / "done.jpg").is_file()
    assert json.loads((part / "plan.json").read_text()) == {"seed": 1}
    # resume=False starts afresh
    fresh = open_partial(out, {"seed": 2}, resume=False, plan_name="plan.json", mismatch=_mismatch)
    assert not (fresh / "done.jpg").exists()
    assert json.loads((fresh / "plan.json").read_text()) == {"seed": 2}


def test_publish_replaces_an_old_folder_and_drops_stale_temporaries(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old.jpg").write_bytes(b"old")
    part = open_partial(out, {}, resume=True, plan_name=".plan.json", mismatch=_mismatch)
    (part / "sub").mkdir()
    (part / "sub" / "new.jpg").write_bytes(b"new")
    (part / "sub" / ".new2.jpg.abc123.tmp").write_bytes(b"half")  # a write killed mid-way
    (part / ".plan.json").unlink()
    publish_partial(part, out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["sub", "sub/new.jpg"]
    assert not part.exists() and not (tmp_path / "ds.old").exists()
