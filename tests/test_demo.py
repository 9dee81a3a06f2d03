"""`smcr demo` (what `make demo` runs) on a tiny recipe: the four rows run and the table,
its JSON and each run's folder are written."""

import json

import yaml
from smcr.cli import main
from test_train_pipeline import tiny


def test_demo_writes_the_table(tmp_path, capsys):
    cfg = tiny(tmp_path, tmp_path / "unused", **{
        "data.synthetic": {"preset": "mini-gspr", "ids": 6, "seed": 3, "render_size": [64, 32]},
        "smcr.branches": "both",
        "translator": {"enabled": True, "options": {
            "epochs": 1, "decay_epochs": 0, "iters_per_epoch": 2, "batch_size": 4,
            "ide_pretrain_epochs": 1, "ngf": 8, "ndf": 8, "n_res_blocks": 1}},
        "pretrain.mode": "translated",
        "schedule.epochs": 1, "schedule.eval_every": 1, "run.ranked_lists": 1,
    })
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "demo"
    assert main(["demo", "--config", str(recipe), "--out", str(out), "--quiet"]) == 0
    table = (out / "table.md").read_text()
    for row in ("direct transfer (source-only stage 1)", "translated synthetic",
                "RIHR only", "SMCR w/o synthetic pretraining", "SMCR (full)"):
        assert row in table, row
    summary = json.loads((out / "table.json").read_text())
    assert 0.0 <= summary["SMCR (full)"]["mAP"] <= 1.0
    for run in ("rihr", "smcr_nosyn", "smcr"):
        assert (out / run / "report.md").is_file() and (out / run / "map.png").is_file()
    assert list((out / "smcr" / "ranked_lists").glob("*.png"))
    assert "SMCR vs direct transfer" in capsys.readouterr().out
