"""The ``smcr`` command. Each sub-command lives beside the code it drives; this module
only assembles them:

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
"""

from __future__ import annotations

import argparse
import json
import sys


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
