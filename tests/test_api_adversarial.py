"""Bad arguments to the Python API: PseudoLabeler, smcr.train, the data readers and the
translator's loader / apply. Each case failed (crash, raw deep error or silent wrong answer)
before its fix."""

from __future__ import annotations

import json
import shutil

import pytest
import smcr
import torch
from PIL import Image
from smcr.config import ConfigError
from smcr.data import BadFileNameError, DatasetLayoutError, read_dataset
from smcr.translate import TranslateError, Translator


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 32), (120, 60, 30)).save(path)


# --------------------------------------------------------------------------- PseudoLabeler
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"min_samples": 2.5}, TypeError, "min_samples must be an int"),
        ({"min_samples": "4"}, TypeError, "min_samples must be an int"),
        ({"k1": 0}, ValueError, "k1 must be >= 1"),
        ({"k1": True}, TypeError, "k1 must be an int"),
        ({"k2": 0}, ValueError, "k2 must be >= 1"),
        ({"k1": 10, "k2": 20}, ValueError, "k2 must be <= 10"),
        ({"knn_backend": "bogus"}, ValueError, "knn_backend must be one of"),
        ({"eps": "a"}, TypeError, "eps must be a number"),
    ],
)
def test_pseudo_labeler_checks_its_arguments_at_construction(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        smcr.PseudoLabeler(**kwargs)


@pytest.mark.parametrize("n", [0, 1])
def test_pseudo_labeler_names_too_few_points(n):
    with pytest.raises(ValueError, match="features must hold at least 2 rows"):
        smcr.PseudoLabeler(k1=1, k2=1)(torch.ones(n, 4))


def test_pseudo_labeler_collapse_policy_on_identical_features():
    x = torch.nn.functional.normalize(torch.randn(5, 8).repeat_interleave(6, 0), dim=1)
    labeler = smcr.PseudoLabeler(k1=5, k2=2, min_samples=2, collapse_policy="keep_previous")
    first = labeler(x.numpy())  # NumPy input
    assert first.num_clusters == 5 and not first.kept_previous
    with pytest.warns(RuntimeWarning, match="keeping the previous labels"):
        again = labeler(torch.ones(30, 8))
    assert again.kept_previous and torch.equal(again.labels, first.labels)
    with pytest.raises(smcr.ClusteringCollapsed):
        smcr.PseudoLabeler(k1=5, k2=2, min_samples=2)(torch.ones(30, 8))


# --------------------------------------------------------------------------- smcr.train
@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((5,), {}, TypeError, "config must be a TrainConfig"),
        ((None, "schedule.epochs=1"), {}, TypeError, "overrides must be a list"),
        ((None, [3]), {}, TypeError, r"overrides\[0\] must be a 'key=value' string"),
        ((None, ["=3"]), {}, ConfigError, "empty key part"),
        ((None, ["a..b=1"]), {}, ConfigError, "empty key part"),
        ((None, ["schedule.epochs=[1"]), {}, ConfigError, "not valid YAML"),
        ((None, ["a.b"]), {}, ConfigError, "needs KEY=VALUE"),
        ((None,), {"progress": "yes"}, TypeError, "progress must be a bool"),
        ((None,), {"callback": "print"}, TypeError, "callback must be None or a callable"),
    ],
)
def test_train_checks_its_arguments_before_running(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        smcr.train(*args, **kwargs)


# --------------------------------------------------------------------------- data readers
def _market(root, extra=()):
    for sub, name in [
        ("bounding_box_train", "0001_c1s1_000001_00.jpg"),
        ("bounding_box_train", "0001_c2s1_000001_00.jpg"),
        ("query", "0001_c1s1_000002_00.jpg"),
        ("bounding_box_test", "0001_c2s1_000002_00.jpg"),
        *extra,
    ]:
        _img(root / sub / name)
    return root


@pytest.mark.parametrize("name", ["1-2_c1s1_000001_00.jpg", "0002_c0s1_000001_00.jpg"])
def test_market_style_bad_pid_or_camera_zero_names_the_file(tmp_path, name):
    root = _market(tmp_path / "m", [("bounding_box_train", name)])
    with pytest.raises(BadFileNameError, match=name.split("_")[0]):
        read_dataset(root)


def test_custom_folders_reject_camera_zero_and_negative_pid_folders(tmp_path):
    _img(tmp_path / "c0" / "train" / "1" / "x_c0.jpg")
    with pytest.raises(BadFileNameError, match="numbered from 1"):
        read_dataset(tmp_path / "c0")
    _img(tmp_path / "neg" / "train" / "-1" / "x.jpg")
    with pytest.raises(BadFileNameError, match=">= 0"):
        read_dataset(tmp_path / "neg")


def test_csv_rows_short_negative_or_spaced(tmp_path):
    _img(tmp_path / "imgs" / "a.jpg")
    short = tmp_path / "short.csv"
    short.write_text("path,pid,camid\nimgs/a.jpg,1\n")
    with pytest.raises(DatasetLayoutError, match="short.csv:2: .*fewer fields"):
        read_dataset(short)
    neg = tmp_path / "neg.csv"
    neg.write_text("path,pid,camid\nimgs/a.jpg,1,-1\n")
    with pytest.raises(BadFileNameError, match="neg.csv:2: pid and camid must be >= 0"):
        read_dataset(neg)
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("path, pid, camid\nimgs/a.jpg, 3, 0\n")
    assert read_dataset(spaced).train[0].camid == 0


def test_single_camera_custom_data_reads(tmp_path):
    root = tmp_path / "one_cam"
    for sub, pid, name in [
        ("train", 1, "a"),
        ("train", 2, "b"),
        ("query", 1, "q"),
        ("gallery", 1, "g"),
        ("gallery", 2, "h"),
    ]:
        _img(root / sub / str(pid) / f"{name}.jpg")
    ds = read_dataset(root)
    assert len(ds.query) == 1 and {s.camid for s in ds.query + ds.gallery} == {0}


def test_reader_root_of_a_wrong_type_is_named(tmp_path):
    with pytest.raises(TypeError, match="root must be a path"):
        read_dataset(None)


# --------------------------------------------------------------------------- translator files
@pytest.mark.parametrize("content", [b"", b"path,pid,camid\n", "damaged"])
def test_translator_load_rejects_empty_text_and_damaged_files(tmp_path, content):
    p = tmp_path / "translator.pt"
    if content == "damaged":
        from smcr.translate.trainer import TRANSLATOR_FORMAT

        torch.save({"format": TRANSLATOR_FORMAT, "config": {}, "g_ab": {"x": torch.ones(1)}}, p)
    else:
        p.write_bytes(content)
    with pytest.raises(TranslateError, match="translator.pt: ") as info:
        Translator.load(p)
    assert "\n" not in str(info.value) and str(info.value).rstrip()[-1] != ":"


def test_apply_whose_check_fails_keeps_its_plan_for_the_rerun(tmp_path, monkeypatch):
    from smcr.translate import apply as apply_mod
    from smcr.translate.config import TranslateConfig
    from smcr.translate.trainer import build_generators

    cfg = TranslateConfig(n_res_blocks=0, ngf=4)
    g_ab, g_ba = build_generators(cfg)
    tr = Translator(cfg, g_ab, g_ba, {"key": "k"})
    data = _market(tmp_path / "m")
    real = apply_mod.read_dataset
    calls = {"n": 0}

    def failing_check(root, kind="auto", **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the check of the finished folder (1st call lists the source)
            raise DatasetLayoutError("simulated check failure")
        return real(root, kind, **kw)

    monkeypatch.setattr(apply_mod, "read_dataset", failing_check)
    with pytest.raises(TranslateError, match="does not open"):
        apply_mod.translate_dataset(tr, data, tmp_path / "out")
    assert json.loads((tmp_path / "out.partial" / ".plan.json").read_text())
    monkeypatch.setattr(apply_mod, "read_dataset", real)
    out = apply_mod.translate_dataset(tr, data, tmp_path / "out")  # resumes, no mismatch
    assert (out / "query" / "0001_c1s1_000002_00.jpg").is_file()
    shutil.rmtree(out)
