"""Translator training on toy domains: it learns a known colour transform, keeps cycles
consistent, writes its sample grids, and a stopped run continues exactly where it stopped."""

import json

import pytest
import torch
from PIL import Image
from smcr.models import build_model
from smcr.translate import (
    IdeClassifier,
    TranslateConfig,
    TranslateError,
    Translator,
    build_generators,
    train_translator,
)
from smcr.translate.data import load_domain
from smcr.translate.toy import colour_stats, make_toy_domain, toy_colour_transform

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    a = make_toy_domain(root / "a", num_ids=8, images_per_id=6, seed=0)
    b = make_toy_domain(
        root / "b", num_ids=8, images_per_id=6, seed=1, transform=toy_colour_transform
    )
    return a, b


def tiny(**kw):
    base = dict(
        image_size=(32, 16),
        ngf=4,
        n_res_blocks=1,
        ndf=8,
        d_layers=2,
        epochs=2,
        decay_epochs=1,
        iters_per_epoch=3,
        batch_size=4,
        pool_size=4,
        samples=3,
        ide_width=0.125,
        ide_pretrain_epochs=1,
        ide_pretrain_batch=16,
    )
    return TranslateConfig(**{**base, **kw})


def _cycle_error(g_ab, g_ba, a, b):
    with torch.no_grad():
        return 0.5 * float((g_ba(g_ab(a)) - a).abs().mean() + (g_ab(g_ba(b)) - b).abs().mean())


def test_learns_known_colour_transform_and_cycles(toy, tmp_path):
    a_root, b_root = toy
    cfg = TranslateConfig(
        image_size=(32, 16),
        ngf=8,
        n_res_blocks=1,
        ndf=16,
        d_layers=2,
        mu3=0.0,
        epochs=6,
        decay_epochs=3,
        iters_per_epoch=20,
        pool_size=10,
        samples=4,
    )
    A = load_domain(a_root, cfg.image_size)
    B = load_domain(b_root, cfg.image_size)
    xa, xb = A.images.float() / 127.5 - 1, B.images.float() / 127.5 - 1
    g_ab0, g_ba0 = build_generators(cfg)  # the run's initial weights
    cycle_before = _cycle_error(g_ab0.eval(), g_ba0.eval(), xa, xb)

    res = train_translator(a_root, b_root, tmp_path / "run", cfg)
    assert res.finished and res.translator_path.is_file()
    tr = Translator.load(tmp_path / "run")
    fake_b = tr.translate(A.images)  # uint8 in, uint8 out
    assert fake_b.dtype == torch.uint8 and fake_b.shape == A.images.shape
    s_a, s_b, s_f = (colour_stats(x.float() / 255) for x in (A.images, B.images, fake_b))
    moved = 1 - float((s_f - s_b).norm() / (s_a - s_b).norm())
    assert moved > 0.6, f"translated colour statistics moved only {moved:.2f} of the way"
    cycle_after = _cycle_error(tr.g_ab, tr.g_ba, xa, xb)
    assert cycle_after < 0.8 * cycle_before
    hist = res.history
    assert len(hist) == 6 and hist[-1]["sample_cycle_l1"] < hist[0]["sample_cycle_l1"]
    # the lr stays 2e-4 for 3 epochs, then decays linearly
    assert [round(h["lr"] / 2e-4, 3) for h in hist] == [1, 1, 1, 0.75, 0.5, 0.25]
    grids = sorted((tmp_path / "run" / "samples").glob("epoch_*.png"))
    assert len(grids) == 6
    with Image.open(grids[-1]) as im:  # 6 rows (real/fake/rec x 2 domains) x 4 samples
        assert im.size == (4 * (16 + 2) + 2, 6 * (32 + 2) + 2)


def test_resume_continues_exactly(toy, tmp_path):
    a_root, b_root = toy
    cfg = tiny(siamese=True, siamese_start_epoch=1)
    whole = train_translator(a_root, b_root, tmp_path / "whole", cfg)
    assert whole.finished and whole.step == 6

    part = train_translator(a_root, b_root, tmp_path / "part", cfg, max_steps=4)
    assert not part.finished and part.step == 4 and part.translator_path is None
    assert (tmp_path / "part" / "checkpoint.pt").is_file()
    assert len(part.history) == 1  # epoch 1 done, stopped inside epoch 2
    rest = train_translator(a_root, b_root, tmp_path / "part", cfg)
    assert rest.finished and rest.step == 6

    w = torch.load(whole.translator_path, weights_only=True)
    p = torch.load(rest.translator_path, weights_only=True)
    for g in ("g_ab", "g_ba"):
        for k in w[g]:
            assert torch.equal(w[g][k], p[g][k]), f"{g}.{k} differs after resume"
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(w["history"]) == strip(p["history"])

    again = train_translator(a_root, b_root, tmp_path / "part", cfg)
    assert again.reused and again.finished
    with pytest.raises(TranslateError, match="other inputs or settings"):
        train_translator(a_root, b_root, tmp_path / "part", cfg.replace(seed=1))
    assert train_translator(
        a_root, b_root, tmp_path / "part", cfg.replace(seed=1), resume=False
    ).finished


def test_checkpoint_of_other_settings_is_refused(toy, tmp_path):
    a_root, b_root = toy
    train_translator(a_root, b_root, tmp_path / "r", tiny(mu3=0.0), max_steps=1)
    with pytest.raises(TranslateError, match="other inputs or settings"):
        train_translator(a_root, b_root, tmp_path / "r", tiny(mu3=0.0, lr=1e-4))
    info = json.loads((tmp_path / "r" / "inputs.json").read_text())
    assert info["from"]["images"] == 48 and info["from"]["ids"] == 8


def test_given_classifier_is_used_and_not_modified(toy, tmp_path):
    a_root, b_root = toy
    clf = IdeClassifier(build_model(arch="resnet18", width=0.125, num_classes=8))
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    res = train_translator(
        a_root, b_root, tmp_path / "c", tiny(epochs=1, decay_epochs=0), classifier=clf
    )
    assert res.finished and "loss_c" in res.history[0] and "ide_acc" in res.history[0]
    assert all(torch.equal(before[k], v) for k, v in clf.state_dict().items())
    wrong = IdeClassifier(build_model(arch="resnet18", width=0.125, num_classes=5))
    with pytest.raises(TranslateError, match="logits"):
        train_translator(a_root, b_root, tmp_path / "w", tiny(), classifier=wrong)


def test_bad_inputs_name_the_argument(toy, tmp_path):
    a_root, _ = toy
    with pytest.raises(ValueError, match="missing"):
        train_translator(a_root, tmp_path / "missing", tmp_path / "x", tiny())
    with pytest.raises(TypeError, match="config"):
        train_translator(a_root, a_root, tmp_path / "x", config={"epochs": 1})
    with pytest.raises(TranslateError, match="max_steps"):
        train_translator(a_root, a_root, tmp_path / "x", tiny(), max_steps=0)
    with pytest.raises(TranslateError, match="device"):
        train_translator(a_root, a_root, tmp_path / "x", tiny(), device="tpu")


@pytest.mark.cuda
def test_trains_and_translates_on_cuda(toy, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    a_root, b_root = toy
    res = train_translator(a_root, b_root, tmp_path / "g", tiny(siamese=True), device="cuda")
    assert res.finished
    x = load_domain(a_root, (32, 16)).images[:6]
    on_gpu = Translator.load(res.translator_path, "cuda").translate(x)
    on_cpu = Translator.load(res.translator_path).translate(x)
    assert (on_gpu.int() - on_cpu.int()).abs().max() <= 2  # uint8 rounding of fp differences
