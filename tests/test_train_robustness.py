"""Robustness of `smcr.train` around interruptions, caches and configuration: a run killed
in stage 1 continues exactly, the stage-1 cache follows the images' content, a refused
resume leaves config.yaml alone and names the differing keys, bad values fail at load
time naming the key, and metrics.jsonl holds each record of one run once."""

import json
import os

import pytest
import torch
from PIL import Image
from smcr.config import ConfigError, load_config
from smcr.training import train
from smcr.training.api import _files_digest, _images_digest
from smcr.training.domains import Domain


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two small generated datasets on disk (10 identities each, 64x32 images)."""
    from smcr.synth import generate

    root = tmp_path_factory.mktemp("data")
    generate("market-like", root / "m10", 10, seed=3, image_size=(64, 32), processes=1)
    generate("duke-like", root / "d10", 10, seed=2, image_size=(64, 32), processes=1)
    return root


def tiny(data, out, cache, **over):
    cfg = {
        "data": {
            "source": {"root": str(data / "m10")},
            "target": {"root": str(data / "d10")},
            "image_size": [32, 16],
            "batch_source": 8,
            "batch_target": 8,
            "num_instances": 2,
            "test_batch": 64,
            "bn_group": 8,
        },
        "model": {"arch": "resnet18_ibn_a", "width": 0.25},
        "translator": {"enabled": False},
        "pretrain": {"mode": "source", "epochs": 1, "iters": 2, "warmup_epochs": 1},
        "smcr": {"branches": "rihr", "cluster": {"k1": 8, "k2": 3, "eps": 0.6, "min_samples": 2,
                                                 "collapse_policy": "keep_previous"}},
        "schedule": {"epochs": 3, "iters": 3, "eval_every": 1},
        "run": {"out": str(out), "cache": str(cache), "ranked_lists": 0, "threads": 1},
    }
    for k, v in over.items():
        node = cfg
        *parts, last = k.split(".")
        for p in parts:
            node = node.setdefault(p, {})
        node[last] = v
    return cfg


class Killed(Exception):
    pass


def kill_at(event_name, epoch):
    def callback(event, info):
        if event == event_name and info["epoch"] == epoch:
            raise Killed(event, epoch)

    return callback


def records(run_dir, stage=None):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if stage is None or r.get("stage") == stage]


# ---------------------------------------------------------------- stage 1 resume


def test_a_run_killed_in_stage_1_continues_exactly(data, tmp_path):
    over = {"pretrain.epochs": 3, "schedule.epochs": 1}
    # separate caches: the second run must not find the first one's stage-1 result
    full = train(tiny(data, tmp_path / "a", tmp_path / "ca", **over), progress=False)

    cfg = tiny(data, tmp_path / "b", tmp_path / "cb", **over)
    run_b = tmp_path / "b"
    # killed after epoch 2's record is written but before its state is saved
    with pytest.raises(Killed):
        train(cfg, progress=False, callback=kill_at("pretrain", 2))
    saved = torch.load(run_b / "pretrain_checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 1
    assert not (run_b / "checkpoint.pt").exists()
    assert not list((tmp_path / "cb").glob("pretrain/*.pt"))  # stage 1 did not finish

    resumed = train(cfg, progress=False)
    assert "stage 1: resuming from epoch 2 of 3" in (run_b / "train.log").read_text()
    assert not (run_b / "pretrain_checkpoint.pt").exists()  # removed once stage 2 saved
    # each epoch's record once, with the losses of the uninterrupted run
    pa, pb = records(full.run_dir, "pretrain"), records(run_b, "pretrain")
    assert [r["epoch"] for r in pb] == [1, 2, 3]
    assert pa == pb
    sa = torch.load(full.checkpoint, weights_only=True)
    sb = torch.load(resumed.checkpoint, weights_only=True)
    assert sa["pretrained"].keys() == sb["pretrained"].keys()
    for k in sa["pretrained"]:
        assert torch.equal(sa["pretrained"][k], sb["pretrained"][k]), k
    assert full.metrics == resumed.metrics
    assert [r["loss"] for r in records(full.run_dir, "refine")] == [
        r["loss"] for r in records(run_b, "refine")]


def test_stage_1_resume_refuses_a_different_config(data, tmp_path):
    cfg = tiny(data, tmp_path / "run", tmp_path / "cache", **{"pretrain.epochs": 2})
    with pytest.raises(Killed):
        train(cfg, progress=False, callback=kill_at("pretrain_checkpoint", 1))
    cfg["pretrain"]["lr"] = 0.1
    with pytest.raises(ValueError, match=r"pretrain\.lr: 0\.00035 in the checkpoint, 0\.1 now"):
        train(cfg, progress=False)


# ---------------------------------------------------------------- content keys


def test_stage_1_cache_follows_the_image_content(data, tmp_path):
    import shutil

    src = tmp_path / "m10"
    shutil.copytree(data / "m10", src)
    over = {"data.source.root": str(src), "schedule.epochs": 1}
    cache = tmp_path / "cache"
    log = tmp_path / "run" / "train.log"
    train(tiny(data, tmp_path / "run", cache, **over), progress=False)
    train(tiny(data, tmp_path / "run", cache, **over, **{"run.resume": "never"}), progress=False)
    assert log.read_text().count("stage 1: reusing") == 1  # same images: reused
    assert len(list(cache.glob("pretrain/*.pt"))) == 1
    # the images at the same path change (each train image mirrored, in place)
    for p in sorted((src / "bounding_box_train").iterdir()):
        with Image.open(p) as im:
            flipped = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        flipped.save(p, quality=95)
    train(tiny(data, tmp_path / "run", cache, **over, **{"run.resume": "never"}), progress=False)
    assert log.read_text().count("stage 1: reusing") == 1  # retrained, not the stale model
    assert len(list(cache.glob("pretrain/*.pt"))) == 2


def test_images_digest_sees_one_pixel():
    images = torch.randint(0, 256, (4, 3, 8, 4), dtype=torch.uint8)
    d = Domain("x", images, torch.arange(4), torch.zeros(4, dtype=torch.int64), list("abcd"))
    before = _images_digest(d)
    assert _images_digest(Domain("y", images.clone(), d.pids, d.camids, list("wxyz"))) == before
    images[2, 1, 3, 2] ^= 1
    assert _images_digest(d) != before


def test_translation_cache_digest_sees_an_in_place_edit_of_the_same_size(data, tmp_path):
    import shutil

    root = tmp_path / "m10"
    shutil.copytree(data / "m10", root)
    before = _files_digest(root, data / "d10")
    p = sorted((root / "bounding_box_train").iterdir())[0]
    st = p.stat()
    raw = bytearray(p.read_bytes())
    raw[-3] ^= 0xFF  # same size, same modification time
    p.write_bytes(bytes(raw))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _files_digest(root, data / "d10") != before
    # a copy of the same files elsewhere keeps the key
    shutil.copytree(data / "m10", tmp_path / "elsewhere")
    assert _files_digest(tmp_path / "elsewhere", data / "d10") == _files_digest(data / "m10", data / "d10")


# ---------------------------------------------------------------- resume with another config


def test_a_refused_resume_keeps_config_yaml_and_names_every_key(data, tmp_path):
    cfg = tiny(data, tmp_path / "run", tmp_path / "cache", **{"schedule.epochs": 1})
    train(cfg, progress=False)
    config_yaml = tmp_path / "run" / "config.yaml"
    before = config_yaml.read_bytes()
    cfg["schedule"]["lr"] = 0.1
    cfg["smcr"]["alpha"] = 0.7
    with pytest.raises(ValueError, match="different configuration") as e:
        train(cfg, progress=False)
    assert "schedule.lr: 0.00035 in the checkpoint, 0.1 now" in str(e.value)
    assert "smcr.alpha: 0.5 in the checkpoint, 0.7 now" in str(e.value)
    assert config_yaml.read_bytes() == before


def test_a_finished_run_extends_when_only_schedule_epochs_grows(data, tmp_path):
    straight = train(tiny(data, tmp_path / "a", tmp_path / "cache", **{"schedule.epochs": 2}),
                     progress=False)
    cfg = tiny(data, tmp_path / "b", tmp_path / "cache", **{"schedule.epochs": 1})
    train(cfg, progress=False)
    cfg["schedule"]["epochs"] = 2
    extended = train(cfg, progress=False)
    assert [r["epoch"] for r in records(extended.run_dir, "refine")] == [1, 2]
    assert ([r["loss"] for r in records(straight.run_dir, "refine")]
            == [r["loss"] for r in records(extended.run_dir, "refine")])
    assert straight.metrics == extended.metrics
    assert "epochs: 2" in (extended.run_dir / "config.yaml").read_text()
    cfg["schedule"]["epochs"] = 1  # fewer epochs than the checkpoint holds
    with pytest.raises(ValueError, match="schedule.epochs: 1 now, but the checkpoint holds 2"):
        train(cfg, progress=False)


# ---------------------------------------------------------------- config values


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("schedule.gamma", -3, r"schedule\.gamma must be in \(0, 1\], got -3"),
        ("schedule.gamma", 0, r"schedule\.gamma must be in \(0, 1\]"),
        ("schedule.lr", -1, r"schedule\.lr must be > 0, got -1"),
        ("schedule.lr", float("nan"), r"schedule\.lr must be > 0"),
        ("schedule.weight_decay", -0.1, r"schedule\.weight_decay must be >= 0"),
        ("pretrain.epochs", 0, r"pretrain\.epochs must be >= 1, got 0"),
        ("pretrain.iters", -1, r"pretrain\.iters must be >= 1, got -1"),
        ("pretrain.lr", 0, r"pretrain\.lr must be > 0"),
        ("pretrain.weight_decay", -1, r"pretrain\.weight_decay must be >= 0"),
        ("pretrain.warmup_epochs", -1, r"pretrain\.warmup_epochs must be >= 0"),
        ("pretrain.label_smoothing", 1.0, r"pretrain\.label_smoothing must be in \[0, 1\)"),
        ("run.threads", -1, r"run\.threads must be >= 0, got -1"),
        ("run.ranked_lists", -2, r"run\.ranked_lists must be >= 0"),
        ("run.seed", -1, r"run\.seed must be >= 0"),
        ("run.device", "gpu", r"run\.device must be"),
        ("run.dist_timeout_min", 0, r"run\.dist_timeout_min must be > 0"),
        ("smcr.cluster.eps", -1, r"smcr\.cluster\.eps must be in \(0, 1\)"),
        ("smcr.cluster.min_samples", 0, r"smcr\.cluster\.min_samples must be >= 1"),
        ("smcr.cluster.k1", 0, r"smcr\.cluster\.k1 must be >= 1"),
        ("smcr.cluster.k2", 9, r"smcr\.cluster\.k2 must be in \[1, 8\]"),
        ("smcr.cluster.k1", 2.5, r"smcr\.cluster\.k1 must be an int"),
        ("smcr.cluster.knn_backend", "annoy", r"smcr\.cluster\.knn_backend must be one of"),
        ("smcr.cluster.criterion", "best", r"smcr\.cluster\.criterion must be"),
        ("smcr.cluster.epsilon", 0.5, r"unknown key\(s\) smcr\.cluster\.epsilon"),
        ("translator.options.epochz", 3, r"unknown key\(s\) translator\.options\.epochz"),
        ("translator.options.lr", -1, r"translator\.options\.lr must be"),
        ("smcr.temperature", 0, r"smcr\.temperature must be > 0"),
        ("smcr.ema", 1.5, r"smcr\.ema must be in \[0, 1\], got 1.5"),
        ("smcr.memory_momentum", -0.1, r"smcr\.memory_momentum must be in \[0, 1\]"),
        ("data.num_instances", 0, r"data\.num_instances must be >= 1, got 0"),
        ("data.test_batch", 0, r"data\.test_batch must be >= 1, got 0"),
        ("data.test_batch", -5, r"data\.test_batch must be >= 1, got -5"),
        ("data.bn_group", 1, r"data\.bn_group must be 0 \(the whole batch\) or >= 2"),
        ("data.batch_source", 0, r"data\.batch_source must be >= 1"),
        ("data.source.format", "cuhk", r"data\.source\.format must be one of"),
        ("data.target", {"preset": "nowhere-like", "ids": 10}, r"data\.target\.preset"),
        ("data.target", {"preset": "duke-like", "ids": 10, "seed": -1},
         r"data\.target\.seed must be >= 0"),
        ("data.target", {"preset": "duke-like", "ids": 10, "render_size": [4, 4]},
         r"data\.target\.render_size"),
    ],
)
def test_bad_values_fail_at_load_naming_the_key(tmp_path, key, value, match):
    cfg = tiny(tmp_path, tmp_path / "run", tmp_path / "cache", **{key: value})
    with pytest.raises(ConfigError, match=match):
        load_config(cfg)


def test_the_tiny_config_itself_loads(tmp_path):
    load_config(tiny(tmp_path, tmp_path / "run", tmp_path / "cache"))


# ---------------------------------------------------------------- metrics.jsonl


def test_metrics_hold_each_record_once_after_a_resume(data, tmp_path):
    cfg = tiny(data, tmp_path / "run", tmp_path / "cache")
    # killed after epoch 2's records are written, before its checkpoint
    with pytest.raises(Killed):
        train(cfg, progress=False, callback=kill_at("epoch", 2))
    res = train(cfg, progress=False)
    assert [r["epoch"] for r in records(res.run_dir, "cluster")] == [1, 2, 3]
    assert [r["epoch"] for r in records(res.run_dir, "refine")] == [1, 2, 3]
    assert [r["epoch"] for r in records(res.run_dir, "eval")] == [1, 2, 3]
    assert len(records(res.run_dir, "pretrain")) == len(records(res.run_dir, "direct_transfer")) == 1
    assert res.history == records(res.run_dir)


def test_a_fresh_run_in_an_old_folder_starts_fresh_metrics(data, tmp_path):
    cfg = tiny(data, tmp_path / "run", tmp_path / "cache", **{"schedule.epochs": 2})
    first = train(cfg, progress=False)
    old = records(first.run_dir)
    cfg["run"]["resume"] = "never"
    second = train(cfg, progress=False)
    assert [r["epoch"] for r in records(second.run_dir, "refine")] == [1, 2]
    assert second.history == records(second.run_dir)
    assert [r["stage"] for r in second.history].count("direct_transfer") == 1
    prev = [json.loads(x) for x in (second.run_dir / "metrics.prev.jsonl").read_text().splitlines()]
    assert prev == old
    assert (second.run_dir / "checkpoint.prev.pt").is_file()


def test_single_camera_target_is_evaluated_with_same_camera_matches():
    """Custom single-camera target data: the evaluation between epochs keeps same-camera
    matches (the standard protocol would leave no valid query)."""
    import torch
    from smcr.training import engine
    from smcr.training.domains import Domain

    def domain(pids):
        n = len(pids)
        return Domain("t", torch.zeros(n, 3, 8, 4, dtype=torch.uint8), torch.tensor(pids),
                      torch.zeros(n, dtype=torch.long), [f"{i}.jpg" for i in range(n)])

    q, g = domain([0, 1]), domain([0, 0, 1, 1])
    feats = {2: torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
             4: torch.tensor([[1.0, 0.1], [0.9, 0.0], [0.0, 1.0], [0.1, 0.9]])}
    res = engine.evaluate_models({"m": lambda d: feats[len(d.pids)]}, q, g)
    assert res["m"]["mAP"] == 1.0 and res["m"]["rank1"] == 1.0


class _FakeWriter:
    """Stands in for torch.utils.tensorboard.SummaryWriter (tensorboard is optional and not
    installed here): one events file per writer, one line per scalar."""

    count = 0

    def __init__(self, logdir: str) -> None:
        os.makedirs(logdir, exist_ok=True)
        _FakeWriter.count += 1
        self.path = os.path.join(logdir, f"events.{_FakeWriter.count}")
        open(self.path, "w").close()

    def add_scalar(self, tag, value, step):
        with open(self.path, "a") as f:
            f.write(f"{tag} {step} {value}\n")

    def flush(self):
        pass

    def close(self):
        pass


def _events(folder):
    return sorted(line for p in sorted(folder.glob("events.*")) for line in p.read_text().splitlines())


def test_tensorboard_events_mirror_metrics_of_this_run_only(tmp_path, monkeypatch):
    # Events of an earlier run in a reused folder used to stay beside the new run's, and a
    # resume wrote again the epochs after its checkpoint: TensorBoard showed both. Now the
    # events follow metrics.jsonl: fresh run -> tensorboard.prev/, resume -> the kept records.
    import sys
    import types

    from smcr.training.rundir import RunDir

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard",
                        types.SimpleNamespace(SummaryWriter=_FakeWriter))
    recs = [{"stage": "eval", "epoch": e, "mAP": 0.1 * e} for e in range(3)]
    first = RunDir(tmp_path)
    first.start_metrics()
    for r in recs:
        first.log_metrics(r)
    assert _events(tmp_path / "tensorboard") == [f"eval/mAP {e} {0.1 * e}" for e in range(3)]
    # a resume from a checkpoint that covers the first two records
    resumed = RunDir(tmp_path)
    resumed.keep_metrics(2, None)
    resumed.log_metrics({"stage": "eval", "epoch": 2, "mAP": 0.5})
    assert _events(tmp_path / "tensorboard") == ["eval/mAP 0 0.0", "eval/mAP 1 0.1",
                                                 "eval/mAP 2 0.5"]
    assert len(_events(tmp_path / "tensorboard.prev")) == 3
    # a fresh run in the same folder: the earlier events are tensorboard.prev, none remain
    fresh = RunDir(tmp_path)
    fresh.start_metrics()
    assert _events(tmp_path / "tensorboard") == []
    assert _events(tmp_path / "tensorboard.prev") == ["eval/mAP 0 0.0", "eval/mAP 1 0.1",
                                                      "eval/mAP 2 0.5"]
