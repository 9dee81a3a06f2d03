"""The SMCR pipeline on tiny configurations: every stage runs, resume is exact, and the
failure paths (NaN, collapse, bad config) stop cleanly."""

import json

import pytest
import torch
from smcr.cluster import ClusteringCollapsed
from smcr.config import ConfigError, TrainConfig, load_config
from smcr.training import TrainingDiverged, engine, train

import smcr_ext


def tiny(tmp, cache, **over):
    cfg = {
        "data": {
            "source": {"preset": "market-like", "ids": 12, "seed": 1, "render_size": [64, 32]},
            "target": {"preset": "duke-like", "ids": 12, "seed": 2, "render_size": [64, 32]},
            "image_size": [64, 32],
            "batch_source": 16,
            "batch_target": 16,
            "num_instances": 4,
            "test_batch": 64,
        },
        "model": {"arch": "resnet18_ibn_a", "width": 0.125, "dsbn": True},
        "translator": {"enabled": False},
        "pretrain": {"mode": "source", "epochs": 1, "iters": 3, "warmup_epochs": 1},
        "smcr": {"branches": "rihr", "cluster": {"k1": 8, "k2": 3, "eps": 0.6, "min_samples": 3}},
        "schedule": {"epochs": 2, "iters": 3, "eval_every": 2},
        "run": {"out": str(tmp / "run"), "cache": str(cache), "ranked_lists": 1, "threads": 1},
    }
    for k, v in over.items():
        node = cfg
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return cfg


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def records(run_dir, stage):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("stage") == stage]


def test_one_run_writes_every_output(tmp_path, cache):
    res = train(tiny(tmp_path, cache), progress=False)
    d = res.run_dir
    for name in ("config.yaml", "train.log", "metrics.jsonl", "report.md", "checkpoint.pt",
                 "model_rihr.pt", "map.png", "clusters.png"):
        assert (d / name).is_file(), name
    assert list((d / "ranked_lists").glob("*.png"))
    assert set(res.metrics) == {"direct_transfer", "rihr_student", "rihr_teacher", "fused"}
    for m in res.metrics.values():
        assert 0.0 <= m["mAP"] <= 1.0 and 0.0 <= m["rank1"] <= m["rank5"] <= m["rank10"] <= 1.0
    state = torch.load(res.checkpoint, weights_only=True)  # loads without pickled code
    assert state["epoch"] == 2 and set(state["branches"]) == {"rihr"}
    assert len(records(d, "cluster")) == 2 and len(records(d, "refine")) == 2
    assert "| fused |" in (d / "report.md").read_text()
    # the exported model is an smcr checkpoint
    from smcr.models import load_checkpoint

    assert load_checkpoint(d / "model_rihr.pt").embedding_dim > 0


def test_exported_model_records_its_input_size(tmp_path, cache):
    """model_<branch>.pt records the image size it was trained at, which evaluate, extract
    and export then use by default (not 256 x 128)."""
    from smcr.extract import checkpoint_image_size, load_model_checkpoint

    res = train(tiny(tmp_path, cache, **{"schedule.epochs": 1, "schedule.eval_every": 1}),
                progress=False)
    _, extras = load_model_checkpoint(res.run_dir / "model_rihr.pt")
    assert checkpoint_image_size(extras) == (64, 32)


@pytest.mark.parametrize("old_checkpoint", [False, True])
def test_resume_gives_the_same_pseudo_labels_and_losses(tmp_path, cache, old_checkpoint):
    full = train(tiny(tmp_path / "a", cache, **{"schedule.epochs": 3, "schedule.eval_every": 3}),
                 progress=False)

    class Killed(Exception):
        pass

    def kill_after_first_epoch(event, info):
        if event == "checkpoint" and info["epoch"] == 1:
            raise Killed(info["path"])

    cfg = tiny(tmp_path / "b", cache, **{"schedule.epochs": 3, "schedule.eval_every": 3})
    with pytest.raises(Killed) as killed:
        train(cfg, progress=False, callback=kill_after_first_epoch)
    if old_checkpoint:
        # a checkpoint written before the memory rows were kept in label order: the memory
        # in dataset order (target image k on row C_s + k) and no memory_target_row
        path = killed.value.args[0]
        state = torch.load(path, weights_only=True)
        for s in state["branches"].values():
            rows = s.pop("memory_target_row")
            n_labels = int(s["memory_labels"].max()) + 1
            k = s["memory_labels"][n_labels:].unique().numel()  # clusters (mean rows)
            c_s = int(rows.min()) - k
            for key in ("memory_features", "memory_labels"):
                s[key] = torch.cat([s[key][:c_s], s[key][rows]])
        torch.save(state, path)
    resumed = train(cfg, progress=False)  # run.resume = auto
    a, b = full.run_dir, resumed.run_dir
    key = lambda r: (r["epoch"], r["branch"], r["clusters"], r["un_clustered"], r["largest_cluster"])  # noqa: E731
    assert [key(r) for r in records(a, "cluster")] == [key(r) for r in records(b, "cluster")]
    la = [r["loss"] for r in records(a, "refine")]
    lb = [r["loss"] for r in records(b, "refine")]
    assert la == lb  # exactly: the resumed run replays the same batches and updates
    sa = torch.load(full.checkpoint, weights_only=True)["branches"]["rihr"]
    sb = torch.load(resumed.checkpoint, weights_only=True)["branches"]["rihr"]
    assert torch.equal(sa["labels"], sb["labels"])
    assert torch.equal(sa["memory_features"], sb["memory_features"])
    assert full.metrics == resumed.metrics


def test_resume_refuses_a_different_config(tmp_path, cache):
    cfg = tiny(tmp_path, cache, **{"schedule.epochs": 1})
    train(cfg, progress=False)
    cfg["smcr"]["alpha"] = 0.7
    with pytest.raises(ValueError, match="different configuration"):
        train(cfg, progress=False)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, cache, monkeypatch):
    cfg = tiny(tmp_path, cache, **{"schedule.epochs": 2})

    def stop(event, info):
        if event == "checkpoint":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False, callback=stop)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    before = ckpt.read_bytes()
    real = engine.HybridMemory.forward
    monkeypatch.setattr(engine.HybridMemory, "forward",
                        lambda self, f, r: real(self, f, r) * float("nan"))
    with pytest.raises(TrainingDiverged, match="refinement epoch 2 step 1"):
        train(cfg, progress=False)
    assert ckpt.read_bytes() == before
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1


def test_clustering_collapse_is_reported(tmp_path, cache):
    cfg = tiny(tmp_path, cache)
    cfg["smcr"]["cluster"]["min_samples"] = 500  # no core points: zero clusters
    with pytest.raises(ClusteringCollapsed, match="0 clusters"):
        train(cfg, progress=False)
    assert "clustering collapsed" in (tmp_path / "run" / "train.log").read_text()


@pytest.mark.parametrize("mode", ["translated", "raw"])
def test_synthetic_pretraining_and_both_branches_run(tmp_path, cache, mode):
    """Stage 1 on synthetic (translated to the source's style, or raw) + source images, then
    DTHR (translated source) + RIHR with collaborative refinement: the whole method."""
    cfg = tiny(tmp_path, cache, **{
        "data.synthetic": {"preset": "mini-gspr", "ids": 6, "seed": 3, "render_size": [64, 32]},
        "smcr.branches": "both",
        "translator": {"enabled": True, "options": {
            "epochs": 1, "decay_epochs": 0, "iters_per_epoch": 2, "batch_size": 4,
            "ide_pretrain_epochs": 1, "ngf": 8, "ndf": 8, "n_res_blocks": 1}},
        "pretrain.mode": mode,
        "schedule.epochs": 1, "schedule.eval_every": 1, "run.ranked_lists": 0,
    })
    res = train(cfg, progress=False)
    assert {"dthr_student", "rihr_teacher", "fused"} <= set(res.metrics)
    pre = records(res.run_dir, "pretrain")
    assert pre and all(torch.isfinite(torch.tensor(r["ce"])) for r in pre)
    refine = records(res.run_dir, "refine")[0]
    assert {"loss_joint_dthr", "loss_joint_rihr", "loss_col_dthr", "loss_col_rihr"} <= set(refine)
    log = (res.run_dir / "train.log").read_text()
    assert "source -> target (D^RT)" in log
    assert ("synthetic -> source (D^SR)" in log) == (mode == "translated")


def test_two_branches_without_translator_is_a_config_error(tmp_path, cache):
    with pytest.raises(ConfigError, match="translator.enabled"):
        load_config(tiny(tmp_path, cache, **{"smcr.branches": "both"}))


# ---------------------------------------------------------------- the paper's formulas


def test_total_loss_is_eq_17():
    l1, l2, c1, c2 = (torch.tensor(v) for v in (1.3, 0.7, 0.2, 0.9))
    alpha, beta = 0.5, 0.01
    expected = beta * (alpha * c1 + (1 - alpha) * c2) + 2 * (1 - beta) * (alpha * l1 + (1 - alpha) * l2)
    assert torch.allclose(engine.smcr_loss([l1, l2], [c1, c2], alpha, beta), expected)
    assert torch.allclose(engine.smcr_loss([l1, l2], [], 0.3, beta), 2 * (0.3 * l1 + 0.7 * l2))
    assert torch.equal(engine.smcr_loss([l1], [], alpha, beta), l1)


def test_mean_teacher_update_is_eq_11_with_warm_up():
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    t0 = [p.clone() for p in teacher.parameters()]
    engine.ema_update(teacher, student, 0.999, step=0)  # a = min(0, 0.999) = 0: copy
    for pt, ps in zip(teacher.parameters(), student.parameters(), strict=True):
        assert torch.allclose(pt, ps)
    teacher2 = torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p, q in zip(teacher2.parameters(), t0, strict=True):
            p.copy_(q)
    engine.ema_update(teacher2, student, 0.999, step=9)  # a = min(0.9, 0.999) = 0.9
    for pt, p0, ps in zip(teacher2.parameters(), t0, student.parameters(), strict=True):
        assert torch.allclose(pt, 0.9 * p0 + 0.1 * ps)


def test_teacher_bn_statistics_follow_the_student_only_when_asked():
    student, teacher = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    student.train()(torch.randn(16, 3) * 3 + 2)  # the student's statistics move
    before = teacher.running_mean.clone()
    engine.ema_update(teacher, student, 0.99, step=100)  # collaborative: its own statistics
    assert torch.equal(teacher.running_mean, before)
    engine.ema_update(teacher, student, 0.99, step=100, buffers=True)  # no teacher forward
    assert torch.allclose(teacher.running_mean, 0.99 * before + 0.01 * student.running_mean)
    assert teacher.num_batches_tracked == 0  # integer buffers are left alone


def test_fused_embedding_is_eq_16():
    f1 = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    f2 = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    fused = engine.fused_features(f1, f2, 0.5)
    assert torch.allclose(fused, torch.nn.functional.normalize(0.5 * f1 + 0.5 * f2, dim=1))


def test_collaborative_term_is_the_soft_triplet_toward_the_other_teacher():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(8, 6, generator=g, requires_grad=True)
    teacher = torch.randn(8, 6, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss = smcr_ext.soft_triplet(student, teacher, labels).loss
    # MMT's soft triplet (the paper's Eq. 13-15 with errata (a), (b)), written out:
    d_s = torch.cdist(student, student)
    d_t = torch.cdist(teacher, teacher)
    same = labels[:, None] == labels[None, :]
    ap = torch.where(same, d_s, torch.full_like(d_s, -1e9)).argmax(1)
    an = torch.where(~same, d_s, torch.full_like(d_s, 1e9)).argmin(1)
    i = torch.arange(8)
    p = torch.log_softmax(torch.stack([d_s[i, ap], d_s[i, an]], 1), 1)
    q = torch.softmax(torch.stack([d_t[i, ap], d_t[i, an]], 1), 1)
    assert torch.allclose(loss, -(q * p).sum(1).mean(), atol=1e-5)


def test_default_config_is_the_papers():
    c = TrainConfig()
    assert (c.smcr.alpha, c.smcr.beta, c.smcr.temperature, c.smcr.ema) == (0.5, 0.01, 0.05, 0.999)
    assert (c.schedule.lr, c.schedule.weight_decay, c.schedule.epochs, c.schedule.iters) == (
        3.5e-4, 5e-4, 50, 400)
    assert (c.schedule.step_size, c.schedule.gamma, c.data.batch_source, c.data.num_instances) == (
        20, 0.1, 64, 4)
    assert c.model["arch"] == "resnet50_ibn_a" and c.smcr.memory_momentum == 0.2


def test_shipped_recipes_load():
    from smcr.training.cli import recipe_names, resolve_config

    names = recipe_names()
    for expected in ("duke2market", "market2duke", "market2msmt", "duke2msmt", "demo",
                     "duke2market_minigspr", "market2duke_minigspr"):
        assert expected in names
    for name in names:
        cfg = load_config(resolve_config(name))
        assert cfg.smcr.branches == "both" and cfg.pretrain.mode == "translated"
    msmt = load_config(resolve_config("market2msmt"))
    assert msmt.schedule.iters == 800 and msmt.data.target.format == "msmt17"
    with pytest.raises(FileNotFoundError, match="neither a file nor a shipped recipe"):
        resolve_config("no-such-recipe")


@pytest.mark.parametrize(
    "override, match",
    [
        ("smcr.alpha=1.5", "smcr.alpha must be in"),
        ("pretrain.mode=cyclegan", "pretrain.mode must be"),
        ("data.batch_source=30", "multiple of data.num_instances"),
        ("schedule.epochs=0", "schedule.epochs must be >= 1"),
        ("smcr.colaborative=true", "unknown key"),
        ("schedule.lr=fast", "schedule.lr must be float"),
        ("model.arch=vgg16", "model: arch must be one of"),
    ],
)
def test_bad_config_values_name_the_key(override, match):
    from smcr.training.cli import resolve_config

    with pytest.raises(ConfigError, match=match):
        load_config(resolve_config("demo"), [override])
