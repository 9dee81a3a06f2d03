"""`translate_domain`: the pipeline's entry point trains and translates once, then reuses the
cache until the config or an input list changes."""

import shutil

import pytest
from smcr.data import read_dataset
from smcr.translate import TranslateConfig, translate_domain
from smcr.translate.toy import make_toy_domain, toy_colour_transform

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cache_reuses_until_inputs_or_settings_change(tmp_path):
    a = make_toy_domain(tmp_path / "a", num_ids=4, images_per_id=4, seed=0)
    b = make_toy_domain(
        tmp_path / "b", num_ids=4, images_per_id=4, seed=1, transform=toy_colour_transform
    )
    cfg = TranslateConfig(
        image_size=(32, 16),
        ngf=4,
        n_res_blocks=1,
        ndf=8,
        d_layers=2,
        epochs=1,
        decay_epochs=0,
        iters_per_epoch=2,
        batch_size=4,
        mu3=0.0,
        samples=2,
    )
    cache = tmp_path / "cache"
    first = translate_domain(a, b, cache, cfg, subsets=("train",))
    assert first.trained and first.translated
    assert first.root.parent == cache / "datasets" and first.translator.is_file()
    ds = read_dataset(first.root)
    assert len(ds.train) == 16 and ds.root == first.root

    again = translate_domain(a, b, cache, cfg, subsets=("train",))
    assert not again.trained and not again.translated
    assert (again.root, again.run_key) == (first.root, first.run_key)

    # another setting: a new translator
    other = translate_domain(a, b, cache, cfg.replace(seed=3), subsets=("train",))
    assert other.trained and other.run_key != first.run_key

    # another input list (one more target image): a new translator
    src = b / "bounding_box_train" / "0001_c1s1_000000_00.png"
    shutil.copy(src, b / "bounding_box_train" / "0001_c1s1_000099_00.png")
    changed = translate_domain(a, b, cache, cfg, subsets=("train",))
    assert changed.trained and changed.run_key != first.run_key

    # the same translator applied the other way to the target: a new dataset, no training
    back = translate_domain(a, b, cache, cfg, apply_to=b, direction="BA", subsets=("train",))
    assert not back.trained and back.translated and back.root != changed.root
    assert len(read_dataset(back.root).train) == 17


def test_cache_rejects_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="from_data"):
        translate_domain(None, tmp_path, tmp_path / "c")
    with pytest.raises(TypeError, match="config"):
        translate_domain(tmp_path, tmp_path, tmp_path / "c", config={"epochs": 1})
