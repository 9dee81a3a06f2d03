"""`smcr translate train` and `smcr translate apply`.

`add_translate_parser(subparsers)` adds `translate` (with the two sub-commands, each setting
`func`, which takes the parsed namespace and returns an exit code) to an argparse
sub-parser set; `python -m smcr.translate.cli ...` runs them standalone.

    smcr translate train --from data/market_like --to data/duke_like --out runs/m2d
    smcr translate apply --translator runs/m2d --data data/market_like --out data/m2d
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_translate_parser", "main"]


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"--size must look like 64x32 (HEIGHTxWIDTH), got {text!r}"
        ) from e
    return h, w


def _build_config(args: argparse.Namespace):
    from .config import TranslateConfig, load_config

    overrides = {}
    for arg, name in (
        ("size", "image_size"),
        ("epochs", "epochs"),
        ("decay_epochs", "decay_epochs"),
        ("iters", "iters_per_epoch"),
        ("batch_size", "batch_size"),
        ("res_blocks", "n_res_blocks"),
        ("ngf", "ngf"),
        ("seed", "seed"),
        ("ide_pretrain_epochs", "ide_pretrain_epochs"),
    ):
        v = getattr(args, arg)
        if v is not None:
            overrides[name] = v
    if args.siamese:
        overrides["siamese"] = True
    if args.residual:
        overrides["residual"] = True
    if args.no_ide:
        overrides["mu3"] = 0.0
    if args.config:
        return load_config(args.config, **overrides)
    if args.gpu_size:
        return TranslateConfig.gpu(**overrides)
    return TranslateConfig(**overrides)


def run_train(args: argparse.Namespace) -> int:
    """Train a translator from --from to --to into --out."""
    from smcr.data import DatasetError

    from .classifier import IdeClassifier
    from .config import TranslateError
    from .trainer import train_translator

    try:
        config = _build_config(args)
        classifier = None
        if args.classifier:
            from smcr.models import load_checkpoint

            classifier = IdeClassifier(load_checkpoint(args.classifier))
        result = train_translator(
            args.from_data,
            args.to_data,
            args.out,
            config,
            classifier=classifier,
            device=args.device,
            resume=not args.no_resume,
            max_steps=args.max_steps,
            max_images=args.max_images,
            checkpoint_every=args.checkpoint_every,
            load_workers=args.workers,
            log=None if args.quiet else print,
        )
    except (TranslateError, DatasetError, FileExistsError, TypeError, ValueError) as e:
        print(f"smcr translate train: error: {e}", file=sys.stderr)
        return 2
    if result.finished:
        print(f"translator: {result.translator_path}")
        return 0
    print(f"stopped at epoch {result.epoch + 1}, step {result.step}; run again to continue")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    """Translate the dataset --data with --translator into --out."""
    from smcr.data import DatasetError, format_stats, read_dataset

    from .apply import translate_dataset
    from .config import TranslateError

    try:
        subsets = tuple(s.strip() for s in args.subsets.split(",") if s.strip())
        out = translate_dataset(
            args.translator,
            args.data,
            args.out,
            args.direction,
            subsets=subsets,
            batch_size=args.batch_size,
            device=args.device,
            keep_size=args.keep_size,
            overwrite=args.overwrite,
            resume=not args.no_resume,
            log=None if args.quiet else print,
        )
    except (TranslateError, DatasetError, FileExistsError, TypeError, ValueError) as e:
        print(f"smcr translate apply: error: {e}", file=sys.stderr)
        return 2
    root = out / Path(args.data).name if Path(args.data).is_file() else out
    if not args.quiet:
        print(format_stats(read_dataset(root)))
    return 0


def add_translate_parser(subparsers) -> argparse.ArgumentParser:
    """Add `translate` (sub-commands `train`, `apply`) to `subparsers`."""
    p = subparsers.add_parser(
        "translate",
        help="train an SPGAN/eSPGAN domain translator or translate a dataset with one",
        description="Identity-preserving image-to-image translation between re-ID domains "
        "(eSPGAN: CycleGAN + identity mapping + re-ID cross-entropy; SPGAN's contrastive "
        "loss as an option).",
    )
    sub = p.add_subparsers(dest="translate_command", metavar="COMMAND")
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])

    t = sub.add_parser(
        "train",
        help="train a translator between the train sets of two datasets",
        description="Train G_AB (--from -> --to) and G_BA on unpaired images of two "
        "datasets. Resumes an interrupted run in --out; writes a sample grid per epoch to "
        "--out/samples/ and the final generators to --out/translator.pt.",
    )
    t.add_argument(
        "--from",
        dest="from_data",
        required=True,
        metavar="DATASET",
        help="labelled source dataset root (its labels feed the re-ID loss)",
    )
    t.add_argument(
        "--to",
        dest="to_data",
        required=True,
        metavar="DATASET",
        help="target-style dataset root (labels unused)",
    )
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--config", help="YAML file of TranslateConfig fields")
    t.add_argument(
        "--gpu-size",
        action="store_true",
        help="the published size: 256x128, 9 residual blocks, 64 filters",
    )
    t.add_argument("--size", type=_size, help="image size HEIGHTxWIDTH (default 64x32)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--decay-epochs", type=int, help="epochs of linear lr decay at the end")
    t.add_argument("--iters", type=int, help="iterations per epoch")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--res-blocks", type=int, help="residual blocks per generator")
    t.add_argument("--ngf", type=int, help="generator filters")
    t.add_argument("--seed", type=int)
    t.add_argument("--ide-pretrain-epochs", type=int)
    t.add_argument("--siamese", action="store_true", help="add SPGAN's contrastive loss")
    t.add_argument(
        "--residual",
        action="store_true",
        help="generators that predict a change to their input (start near the identity; for "
        "short CPU schedules)",
    )
    t.add_argument(
        "--no-ide",
        action="store_true",
        help="no re-ID cross-entropy (mu3 = 0): plain CycleGAN + identity mapping",
    )
    t.add_argument(
        "--classifier",
        help="smcr checkpoint of a re-ID model with a classifier "
        "over --from's train identities (default: train a small one first)",
    )
    t.add_argument("--max-images", type=int, help="use the first N train images per domain")
    t.add_argument("--max-steps", type=int, help="stop after N iterations (run again to continue)")
    t.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="N",
        help="also checkpoint every N iterations",
    )
    t.add_argument("--device", default="cpu")
    t.add_argument("--workers", type=int, default=0, help="image decoding workers")
    t.add_argument("--no-resume", action="store_true", help="discard an unfinished run in --out")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=run_train)

    a = sub.add_parser(
        "apply",
        help="translate a whole dataset (same layout, names, labels and manifest)",
        description="Translate every image of --data with a trained translator into --out, "
        "keeping the layout, file names and label files; resumable and atomic.",
    )
    a.add_argument("--translator", required=True, help="translator.pt or its training folder")
    a.add_argument("--data", required=True, help="dataset root to translate")
    a.add_argument("--out", required=True, help="output dataset root")
    a.add_argument(
        "--direction",
        choices=["AB", "BA"],
        default="AB",
        help="AB: --from style -> --to style of the training run (default); BA back",
    )
    a.add_argument(
        "--subsets",
        default="train,query,gallery",
        help="subsets to translate (others are copied unchanged)",
    )
    a.add_argument("--batch-size", type=int, default=64)
    a.add_argument(
        "--keep-size",
        action="store_true",
        help="resize the translations back to each image's original size",
    )
    a.add_argument("--device", default="cpu")
    a.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    a.add_argument("--no-resume", action="store_true", help="restart an unfinished --out")
    a.add_argument("--quiet", action="store_true")
    a.set_defaults(func=run_apply)
    return p


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: `python -m smcr.translate.cli train|apply ...`."""
    parser = argparse.ArgumentParser(prog="smcr")
    add_translate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["translate", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
