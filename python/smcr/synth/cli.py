"""Command-line entry points: ``smcr synth`` and ``smcr check-data``.

``add_synth_parser(subparsers)`` and ``add_check_data_parser(subparsers)`` add the two
sub-commands to an argparse sub-parser set (each sets ``func``, which takes the parsed
namespace and returns an exit code). ``python -m smcr.synth.cli ...`` runs them standalone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"--size must look like 256x128 (HEIGHTxWIDTH), got {text!r}"
        ) from e
    return h, w


def run_synth(args: argparse.Namespace) -> int:
    """Generate a dataset, or with ``--preview`` its contact sheet and pie charts."""
    from .generator import SynthError, generate
    from .presets import PresetError, get_preset, load_preset, preset_names
    from .preview import write_preview

    if args.list_presets:
        for name in preset_names():
            print(f"{name:14s} {get_preset(name).description}")
        return 0
    try:
        preset = load_preset(args.preset_file) if args.preset_file else get_preset(args.preset)
        if args.size:
            preset = get_preset(preset, image_size=args.size)
        if args.out is None:
            raise SynthError("--out DIR is required")
        if args.preview:
            paths = write_preview(preset, args.out, seed=args.seed, num_ids=min(args.ids or 30, 60))
            for p in paths:
                print(p)
            return 0
        if args.ids is None:
            raise SynthError("--ids N is required")
        t0 = time.time()
        root = generate(
            preset,
            args.out,
            args.ids,
            seed=args.seed,
            processes=args.processes,
            overwrite=args.overwrite,
            resume=not args.no_resume,
            progress=not args.quiet,
        )
    except (SynthError, PresetError, FileExistsError, TypeError) as e:
        print(f"smcr synth: error: {e}", file=sys.stderr)
        return 2
    from smcr.data.readers import format_stats, read_synthetic

    print(format_stats(read_synthetic(root)))
    print(f"wrote {root} in {time.time() - t0:.1f} s")
    return 0


def add_synth_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``synth`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    from .presets import preset_names

    p = subparsers.add_parser(
        "synth",
        help="generate a synthetic person re-ID dataset (GSPR-like)",
        description="Render a synthetic re-ID dataset in the Market-1501 layout with a manifest.",
    )
    p.add_argument(
        "--preset",
        default="mini-gspr",
        choices=preset_names(),
        help="dataset preset (default mini-gspr)",
    )
    p.add_argument(
        "--preset-file",
        type=Path,
        default=None,
        help="YAML preset: 'base: <preset>' plus fields to override",
    )
    p.add_argument("--ids", type=int, default=None, help="number of identities")
    p.add_argument("--out", type=Path, default=None, help="output dataset folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--processes", type=int, default=None, help="worker processes (default: all CPUs)"
    )
    p.add_argument("--size", type=_size, default=None, help="output HEIGHTxWIDTH, e.g. 128x64")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument(
        "--no-resume", action="store_true", help="start afresh instead of resuming <out>.partial"
    )
    p.add_argument(
        "--preview",
        action="store_true",
        help="write the contact sheet and pie charts into --out instead",
    )
    p.add_argument("--list-presets", action="store_true", help="list presets and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_synth)
    return p


def run_check_data(args: argparse.Namespace) -> int:
    """Print the subset / #ids / #images / #cameras table of a dataset."""
    from smcr.data import DatasetError, format_stats, read_dataset, verify_images

    try:
        ds = read_dataset(args.root, kind=args.format, validate=not args.no_query_check)
        print(format_stats(ds))
        if args.verify:
            n = sum(verify_images(ds.subset(s)) for s in ("train", "query", "gallery"))
            print(f"  verified: all {n} images decode")
    except DatasetError as e:
        print(f"smcr check-data: error: {e}", file=sys.stderr)
        return 2
    return 0


def add_check_data_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``check-data`` to ``subparsers``."""
    p = subparsers.add_parser(
        "check-data",
        help="read a re-ID dataset and print its statistics",
        description="Read Market-1501, DukeMTMC-reID, MSMT17 (V1/V2), smcr synthetic or custom "
        "(path,pid,camid) datasets and print subset / #ids / #images / #cameras.",
    )
    p.add_argument("root", type=Path, help="dataset root (or a CSV file for custom lists)")
    p.add_argument(
        "--format",
        default="auto",
        choices=["auto", "market1501", "market-style", "dukemtmc", "msmt17", "synthetic", "custom"],
    )
    p.add_argument("--verify", action="store_true", help="decode every image")
    p.add_argument(
        "--no-query-check",
        action="store_true",
        help="do not require a cross-camera gallery match for every query",
    )
    p.set_defaults(func=run_check_data)
    return p


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m smcr.synth.cli {synth,check-data} ...``."""
    parser = argparse.ArgumentParser(prog="smcr")
    sub = parser.add_subparsers(dest="command", required=True)
    add_synth_parser(sub)
    add_check_data_parser(sub)
    from smcr.cli import run_command

    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's usage errors (status 2) and --help (0)
        return e.code if isinstance(e.code, int) else 2
    return run_command(args, f"smcr {args.command}")


if __name__ == "__main__":
    sys.exit(main())
