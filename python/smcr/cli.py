"""The ``smcr`` command. Each sub-command lives beside the code it drives; this module
assembles them and holds what they share: the error handler of `main`, the argparse types
of numeric options, the check of output paths and the choice of a model's input size.

    smcr train        train SMCR from a YAML config or a shipped recipe
    smcr extract      embed a folder of images with a checkpoint
    smcr translate    train a domain translator (train) or translate a dataset (apply)
    smcr synth        generate a synthetic re-ID dataset (or --preview its contact sheet)
    smcr check-data   print the subset / #ids / #images / #cameras table of a dataset
    smcr evaluate     (alias: eval) mAP / mINP / CMC of a checkpoint on query and gallery folders
    smcr visrank      pictures of ranked lists (paper Fig. 6)
    smcr export       ONNX export with an onnxruntime parity check
    smcr backends     which kernels are compiled (CPU, CUDA, OpenMP threads, faiss)
    smcr demo         the demo of `make demo`

Errors caused by the user's input (a missing or corrupt file, a bad option value, a
dataset in the wrong layout) end the command with one line, ``smcr <command>: error:
<message>``, on stderr and exit status 2; Ctrl-C ends it with ``smcr <command>:
interrupted`` and status 130. Set SMCR_TRACEBACK=1 to get the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

EPILOG = (
    "Errors in the input end a command with one line 'smcr COMMAND: error: ...' (exit "
    "status 2). Set SMCR_TRACEBACK=1 in the environment to see the full traceback."
)

# The image size of checkpoints that do not record theirs (SpCL's test transform).
DEFAULT_IMAGE_SIZE = (256, 128)


def _backends(args: argparse.Namespace) -> int:
    from smcr_ext import backends

    print(json.dumps(backends(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .demo import add_demo_parser
    from .evaluation import add_evaluate_parser
    from .export import add_export_parser
    from .synth.cli import add_check_data_parser, add_synth_parser
    from .training.cli import add_extract_parser, add_train_parser
    from .translate.cli import add_translate_parser
    from .visualize import add_visrank_parser

    parser = argparse.ArgumentParser(
        prog="smcr",
        description="Unsupervised domain-adaptive person re-ID with synthetic data (SMCR).",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train_parser(sub)
    add_extract_parser(sub)
    add_translate_parser(sub)
    add_synth_parser(sub)
    add_check_data_parser(sub)
    add_evaluate_parser(sub)
    add_visrank_parser(sub)
    add_export_parser(sub)
    add_demo_parser(sub)
    p = sub.add_parser("backends", help="print which kernels are compiled")
    p.set_defaults(func=_backends)
    return parser


# --------------------------------------------------------------------------- errors


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that mean "bad input", reported in one line by `main`.

    ValueError covers the package's own errors (DatasetError, NoValidQueryError,
    SynthError, ConfigError, ...) and UnicodeDecodeError; OSError covers the file errors
    and PIL's UnidentifiedImageError. RuntimeError is not here: where one comes from bad
    input (a corrupt checkpoint, a device string) it is turned into a ValueError at its
    source, so that a real bug still shows its traceback.
    """
    import yaml

    from .export import ExportParityError, MissingExtraError

    return (
        ValueError,
        TypeError,
        OSError,
        EOFError,
        re.error,
        pickle.UnpicklingError,
        yaml.YAMLError,
        ExportParityError,
        MissingExtraError,
    )


def error_message(e: BaseException) -> str:
    """`e` as one line. An error re-raised by a DataLoader worker carries the worker's
    traceback in its message; the original message is its last line."""
    text = str(e).strip()
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    if not text:
        text = type(e).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Run ``args.func(args)``; bad input and Ctrl-C end it with one line on stderr
    (status 2 and 130). SMCR_TRACEBACK=1 lets every exception through."""
    if os.environ.get("SMCR_TRACEBACK", "0") not in ("", "0"):
        return int(args.func(args) or 0)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except user_errors() as e:
        print(f"{prog}: error: {error_message(e)}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's own usage errors (status 2) and --help (0)
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args, f"smcr {args.command}")


# --------------------------------------------------------------------------- argument helpers


def _number_type(cast: type, what: str, lo: float, hi: float | None = None):
    """An argparse type: `cast(text)` >= lo (and <= hi); NaN never passes."""

    def parse(text: str):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not (v >= lo and (hi is None or v <= hi)):
            where = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise argparse.ArgumentTypeError(
                f"must be {what} {where}, got {v if cast is int else text}")
        return v

    parse.__name__ = f"{cast.__name__} >= {lo}" if hi is None else f"{cast.__name__} in [{lo}, {hi}]"
    return parse


def int_at_least(lo: int):
    """An argparse type: an int >= lo."""
    return _number_type(int, "an integer", lo)


def int_in(lo: int, hi: int):
    """An argparse type: an int in [lo, hi]."""
    return _number_type(int, "an integer", lo, hi)


def float_in(lo: float, hi: float):
    """An argparse type: a float in [lo, hi] (NaN refused)."""
    return _number_type(float, "a number", lo, hi)


def check_output_path(path: str | os.PathLike, flag: str, *, folder: bool = False) -> Path:
    """`path` as an output file (or a `folder`) that can be written, checked before any
    work is done; nothing is created. Raises ValueError naming `flag`."""
    p = Path(path)
    if folder and p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {os.fspath(path)!r} exists and is not a folder")
    if not folder and p.is_dir():
        raise ValueError(f"{flag} {os.fspath(path)!r} is a folder; give a file name")
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {os.fspath(path)!r} cannot be created: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {os.fspath(path)!r} cannot be written: {parent} is read-only")
    return p


def choose_image_size(
    args: argparse.Namespace, recorded: tuple[int, int] | None, checkpoint: Any
) -> tuple[int, int]:
    """(H, W) for a model's inputs: --height / --width where given, else the size the
    checkpoint records (`recorded`), else DEFAULT_IMAGE_SIZE with a one-line warning."""
    height, width = args.height, args.width
    if height is not None and width is not None:
        return height, width
    if recorded is None:
        prog = f"smcr {getattr(args, 'command', None) or ''}".rstrip()
        h, w = DEFAULT_IMAGE_SIZE
        print(
            f"{prog}: warning: checkpoint {os.fspath(checkpoint)!r} does not record its input "
            f"size; using {height or h}x{width or w} (set --height/--width)",
            file=sys.stderr,
        )
        recorded = DEFAULT_IMAGE_SIZE
    return height or recorded[0], width or recorded[1]


def add_image_size_args(p: argparse.ArgumentParser) -> None:
    """--height / --width, default None: the size the checkpoint records."""
    p.add_argument(
        "--height",
        type=int_at_least(1),
        default=None,
        help="input height (default: the checkpoint's, else 256)",
    )
    p.add_argument(
        "--width",
        type=int_at_least(1),
        default=None,
        help="input width (default: the checkpoint's, else 128)",
    )


if __name__ == "__main__":
    sys.exit(main())
