"""`smcr train` and `smcr extract`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import resources
from pathlib import Path


def recipe_names() -> list[str]:
    """The YAML recipes shipped with smcr (configs/*.yaml)."""
    return sorted(p.name[:-5] for p in resources.files("smcr.configs").iterdir()
                  if p.name.endswith(".yaml"))


def resolve_config(name: str) -> Path:
    """A config path: an existing file, or the name of a shipped recipe."""
    path = Path(name)
    if path.is_file():
        return path
    candidate = resources.files("smcr.configs") / f"{name.removesuffix('.yaml')}.yaml"
    if candidate.is_file():
        return Path(str(candidate))
    raise FileNotFoundError(
        f"--config {name!r} is neither a file nor a shipped recipe ({', '.join(recipe_names())})"
    )


def run_train(args: argparse.Namespace) -> int:
    from ..cluster import ClusteringCollapsed
    from ..config import ConfigError
    from .api import train
    from .engine import TrainingDiverged

    if args.list:
        print("\n".join(recipe_names()))
        return 0
    overrides = list(args.set or [])
    if args.out:
        overrides.append(f"run.out={args.out}")
    if args.resume:
        overrides.append(f"run.resume={args.resume}")
    if args.device:
        overrides.append(f"run.device={args.device}")
    try:
        config = resolve_config(args.config) if args.config else None
        result = train(config, overrides, progress=not args.quiet)
    except (ConfigError, FileNotFoundError) as e:
        print(f"smcr train: error: {e}", file=sys.stderr)
        return 2
    except (TrainingDiverged, ClusteringCollapsed) as e:
        print(f"smcr train: stopped: {e} (the last good checkpoint is kept)", file=sys.stderr)
        return 3
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 reports
        print(result.report.read_text())
        print(f"run folder: {result.run_dir}")
    return 0


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train SMCR (synthetic pretraining, DTHR + RIHR, collaborative refinement)",
        description="Train SMCR from a YAML config (a file or a shipped recipe: --list).",
    )
    p.add_argument("--config", help="YAML file or recipe name (duke2market, market2msmt, demo, ...)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set schedule.epochs=10 (repeatable)")
    p.add_argument("--out", help="run folder (run.out)")
    p.add_argument("--resume", help="auto (default), never, or a checkpoint path (run.resume)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 (run.device)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--list", action="store_true", help="list the shipped recipes")
    p.set_defaults(func=run_train)
    return p


def run_extract(args: argparse.Namespace) -> int:
    from ..cli import check_output_path, choose_image_size
    from ..extract import checkpoint_image_size, extract, load_model_checkpoint, resolve_device
    from ..fileio import atomic_save

    device = resolve_device(args.device, "--device")
    out = check_output_path(args.out, "--out")
    model, extras = load_model_checkpoint(args.checkpoint)
    size = choose_image_size(args, checkpoint_image_size(extras, args.checkpoint), args.checkpoint)
    res = extract(model, args.images, batch_size=args.batch_size, device=device, flip=args.flip,
                  image_size=size, progress=not args.quiet)
    atomic_save({"names": res.names, "features": res.features.cpu()}, out)
    print(json.dumps({"images": len(res), "dim": int(res.features.shape[1]), "out": str(out)}))
    return 0


def add_extract_parser(subparsers) -> argparse.ArgumentParser:
    from ..cli import add_image_size_args, int_at_least

    p = subparsers.add_parser(
        "extract", help="embed a folder of images with a checkpoint",
        description="Write {'names': [...], 'features': (N, D) tensor} for a folder of images.")
    p.add_argument("checkpoint", help="an smcr model checkpoint (model_*.pt of a run)")
    p.add_argument("images", help="a folder of images")
    p.add_argument("--out", required=True, help="output .pt file")
    p.add_argument("--batch-size", type=int_at_least(1), default=128)
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--flip", action="store_true", help="average with the mirrored image")
    add_image_size_args(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_extract)
    return p
