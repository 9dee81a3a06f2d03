"""`smcr translate train` / `apply` through argparse, as the `smcr` command will run them."""

import argparse

import pytest
import yaml
from smcr.data import read_dataset
from smcr.translate import add_translate_parser
from smcr.translate.cli import main
from smcr.translate.toy import make_toy_domain, toy_colour_transform

pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_then_apply(tmp_path, capsys):
    a = make_toy_domain(tmp_path / "a", num_ids=3, images_per_id=4, seed=0)
    b = make_toy_domain(
        tmp_path / "b", num_ids=3, images_per_id=4, seed=1, transform=toy_colour_transform
    )
    cfg = tmp_path / "t.yaml"
    cfg.write_text(
        yaml.safe_dump(
            dict(
                image_size=[32, 16],
                ngf=4,
                n_res_blocks=1,
                ndf=8,
                d_layers=2,
                decay_epochs=0,
                batch_size=4,
                ide_width=0.125,
                ide_pretrain_epochs=1,
                samples=2,
            )
        )
    )
    run = tmp_path / "run"
    argv = ["train", "--from", str(a), "--to", str(b), "--out", str(run), "--config", str(cfg)]
    assert main([*argv, "--epochs", "1", "--iters", "2"]) == 0
    assert (run / "translator.pt").is_file() and (run / "samples" / "epoch_001.png").is_file()
    assert "translator:" in capsys.readouterr().out

    out = tmp_path / "out"
    assert main(["apply", "--translator", str(run), "--data", str(a), "--out", str(out)]) == 0
    assert "bounding_box_train" not in capsys.readouterr().err
    assert len(read_dataset(out).train) == len(read_dataset(a).train)
    assert main(["apply", "--translator", str(run), "--data", str(a), "--out", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_errors_name_the_path(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert (
        main(["train", "--from", str(missing), "--to", str(missing), "--out", str(tmp_path / "r")])
        == 2
    )
    assert str(missing) in capsys.readouterr().err
    assert (
        main(
            [
                "apply",
                "--translator",
                str(tmp_path / "r"),
                "--data",
                str(missing),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "translator" in capsys.readouterr().err


def test_parser_wires_functions():
    parser = argparse.ArgumentParser(prog="smcr")
    add_translate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "translate",
            "train",
            "--from",
            "x",
            "--to",
            "y",
            "--out",
            "z",
            "--size",
            "64x32",
            "--siamese",
        ]
    )
    assert args.func.__name__ == "run_train" and args.size == (64, 32) and args.siamese
    args = parser.parse_args(
        [
            "translate",
            "apply",
            "--translator",
            "r",
            "--data",
            "d",
            "--out",
            "o",
            "--direction",
            "BA",
        ]
    )
    assert args.func.__name__ == "run_apply" and args.direction == "BA"
    assert parser.parse_args(["translate"]).func(None) == 2
