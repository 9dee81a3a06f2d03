"""ONNX export of a re-ID model, checked against onnxruntime.

    report = smcr.export_onnx(model_or_checkpoint, "reid.onnx", sample_inputs=images)
    report.min_cosine   # >= 0.999, else ExportParityError

The graph maps `images` (B, 3, H, W) float32 (ImageNet-normalised) to `embeddings` (B, D)
(unit rows), with a dynamic batch axis. Needs the `onnx` package (the exporter) and
`onnxruntime` (the parity check): pip install 'smcr[onnx]'.
"""

from __future__ import annotations

import argparse
import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .fileio import _tmp_path

__all__ = [
    "MAX_OPSET",
    "MIN_OPSET",
    "ExportParityError",
    "ExportReport",
    "MissingExtraError",
    "add_export_parser",
    "export_onnx",
]

# Opset 11 is the first that exports IBN's instance norm; the newest is the newest the
# TorchScript exporter of this torch knows (20 in torch 2.5-2.9).
MIN_OPSET = 11
try:
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as MAX_OPSET
except ImportError:  # the constant is private; 20 is its value since torch 2.3
    MAX_OPSET = 20


class ExportParityError(RuntimeError):
    """onnxruntime's embeddings differ from PyTorch's by more than the tolerance."""


class MissingExtraError(RuntimeError):
    """The optional `onnx` / `onnxruntime` packages export needs are not installed."""


@dataclass(frozen=True)
class ExportReport:
    """path: the .onnx file; checked: whether onnxruntime was compared; min_cosine,
    mean_cosine, max_abs_diff: row-wise agreement of ORT and PyTorch embeddings on the
    check inputs (NaN when not checked); num_inputs: images compared."""

    path: str
    checked: bool
    min_cosine: float
    mean_cosine: float
    max_abs_diff: float
    num_inputs: int

    def __str__(self) -> str:
        if not self.checked:
            return f"exported {self.path} (not checked)"
        return (
            f"exported {self.path}; onnxruntime vs PyTorch on {self.num_inputs} images: "
            f"cosine min {self.min_cosine:.6f} mean {self.mean_cosine:.6f}, "
            f"max |diff| {self.max_abs_diff:.2e}"
        )


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"ONNX export needs the {module!r} package: pip install 'smcr[onnx]' "
            "(onnx and onnxruntime)"
        ) from e


def export_onnx(
    model: nn.Module | str | os.PathLike,
    path: str | os.PathLike,
    *,
    image_size: tuple[int, int] | None = None,
    opset: int = 17,
    check: bool = True,
    sample_inputs: torch.Tensor | None = None,
    min_cosine: float = 0.999,
    dynamo: bool = False,
) -> ExportReport:
    """Export `model` (an nn.Module or smcr checkpoint path) to ONNX at `path`.

    Args:
        image_size: (height, width) of the traced input; default: the size a checkpoint
            path records, else 256x128.
        opset: ONNX opset version.
        check: run the file in onnxruntime (CPU) and compare with PyTorch.
        sample_inputs: (B, 3, H, W) normalised images for the check (use real images:
            `smcr.extract.load_image`); default 8 random normal images.
        min_cosine: the smallest acceptable row-wise cosine similarity.
        dynamo: use torch.export-based exporter (needs onnxscript) instead of TorchScript's.

    Returns:
        ExportReport. Raises ExportParityError when the check fails.

    The file is written under a temporary name beside `path` and renamed to `path` only
    once the check passed: a failed export or check leaves an existing `path` untouched.
    """
    from .extract import _check_size, resolve_model_and_size

    if image_size is not None:
        image_size = _check_size(image_size)  # refused before any file is read
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be an int in [{MIN_OPSET}, {MAX_OPSET}], got {opset!r}")
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"path {os.fspath(path)!r} is a folder; give a .onnx file name")
    net, (h, w) = resolve_model_and_size(model, image_size)
    net = copy.deepcopy(net).cpu().eval()  # the caller's model is untouched
    _require("onnx")
    if check:
        _require("onnxruntime")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(out)  # .<name>.<random>.tmp beside out, with out's file mode
    try:
        report = _export_and_check(
            net, tmp, out, h, w, opset, check, sample_inputs, min_cosine, dynamo
        )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def _export_and_check(
    net: nn.Module,
    tmp: Path,
    out: Path,
    h: int,
    w: int,
    opset: int,
    check: bool,
    sample_inputs: torch.Tensor | None,
    min_cosine: float,
    dynamo: bool,
) -> ExportReport:
    """Export `net` to `tmp` and compare it with onnxruntime; the report names `out`."""
    dummy = torch.randn(2, 3, h, w)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*instance_norm.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        if dynamo:
            _require("onnxscript")
            torch.onnx.export(
                net,
                (dummy,),
                str(tmp),
                input_names=["images"],
                output_names=["embeddings"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                opset_version=max(opset, 18),
                dynamo=True,
                external_data=False,
            )
        else:
            torch.onnx.export(
                net,
                (dummy,),
                str(tmp),
                input_names=["images"],
                output_names=["embeddings"],
                dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
    if not check:
        nan = float("nan")
        return ExportReport(str(out), False, nan, nan, nan, 0)
    if sample_inputs is None:
        sample_inputs = torch.randn(8, 3, h, w, generator=torch.Generator().manual_seed(0))
    if not isinstance(sample_inputs, torch.Tensor) or sample_inputs.dim() != 4:
        raise ValueError(
            f"sample_inputs must be a (B, 3, H, W) tensor, got {getattr(sample_inputs, 'shape', type(sample_inputs).__name__)}"
        )
    x = sample_inputs.detach().float().cpu().contiguous()
    ort = _require("onnxruntime")
    sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(sess.run(["embeddings"], {"images": x.numpy()})[0])
    with torch.no_grad():
        ref = net(x).float()
    cos = F.cosine_similarity(got, ref, dim=1)
    report = ExportReport(
        path=str(out),
        checked=True,
        min_cosine=float(cos.min()),
        mean_cosine=float(cos.mean()),
        max_abs_diff=float((got - ref).abs().max()),
        num_inputs=x.shape[0],
    )
    if not report.min_cosine >= min_cosine:
        raise ExportParityError(f"{report}; below the required cosine {min_cosine}")
    return report


# --------------------------------------------------------------------------- CLI


def _run_export(args: argparse.Namespace) -> int:
    from .cli import check_output_path, choose_image_size
    from .extract import checkpoint_image_size, list_images, load_image, load_model_checkpoint

    check_output_path(args.output, "--output")
    model, extras = load_model_checkpoint(args.checkpoint)
    size = choose_image_size(args, checkpoint_image_size(extras, args.checkpoint), args.checkpoint)
    sample = None
    if args.images and not args.no_check:
        try:
            paths = list_images(args.images)[: args.num_images]
        except (FileNotFoundError, ValueError) as e:
            raise type(e)(f"--images: {e}") from e
        sample = torch.stack([load_image(p, size) for p in paths])  # (B, 3, H, W)
    report = export_onnx(
        model,
        args.output,
        image_size=size,
        opset=args.opset,
        check=not args.no_check,
        sample_inputs=sample,
        min_cosine=args.min_cosine,
        dynamo=args.dynamo,
    )
    print(report)
    return 0


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`smcr export --format onnx`: write a checkpoint as ONNX and check it with onnxruntime.
    The file is replaced only once the check passed."""
    from .cli import EPILOG, add_image_size_args, float_in, int_at_least, int_in

    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX",
        description=add_export_parser.__doc__,
        epilog=EPILOG,
    )
    p.add_argument("--checkpoint", required=True, help="smcr checkpoint (save_checkpoint)")
    p.add_argument("--output", "-o", required=True, help="the .onnx file to write")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    add_image_size_args(p)
    p.add_argument(
        "--opset",
        type=int_in(MIN_OPSET, MAX_OPSET),
        default=17,
        help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default 17)",
    )
    p.add_argument(
        "--images",
        default=None,
        help="folder of real images for the parity check (default: random inputs)",
    )
    p.add_argument(
        "--num-images",
        type=int_at_least(1),
        default=16,
        help="images of --images used (the first, by name)",
    )
    p.add_argument(
        "--min-cosine",
        type=float_in(-1.0, 1.0),
        default=0.999,
        help="smallest accepted cosine of ONNX vs PyTorch embeddings (default 0.999)",
    )
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    p.add_argument("--dynamo", action="store_true", help="torch.export-based exporter")
    p.set_defaults(func=_run_export)
    return p
