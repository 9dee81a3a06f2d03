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

__all__ = ["ExportParityError", "ExportReport", "add_export_parser", "export_onnx"]


class ExportParityError(RuntimeError):
    """onnxruntime's embeddings differ from PyTorch's by more than the tolerance."""


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
        raise RuntimeError(
            f"ONNX export needs the {module!r} package: pip install 'smcr[onnx]' "
            "(onnx and onnxruntime)"
        ) from e


def export_onnx(
    model: nn.Module | str | os.PathLike,
    path: str | os.PathLike,
    *,
    image_size: tuple[int, int] = (256, 128),
    opset: int = 17,
    check: bool = True,
    sample_inputs: torch.Tensor | None = None,
    min_cosine: float = 0.999,
    dynamo: bool = False,
) -> ExportReport:
    """Export `model` (an nn.Module or smcr checkpoint path) to ONNX at `path`.

    Args:
        image_size: (height, width) of the traced input.
        opset: ONNX opset version.
        check: run the file in onnxruntime (CPU) and compare with PyTorch.
        sample_inputs: (B, 3, H, W) normalised images for the check (use real images:
            `smcr.extract.load_image`); default 8 random normal images.
        min_cosine: the smallest acceptable row-wise cosine similarity.
        dynamo: use torch.export-based exporter (needs onnxscript) instead of TorchScript's.

    Returns:
        ExportReport. Raises ExportParityError when the check fails.
    """
    from .extract import _check_size, resolve_model

    h, w = _check_size(image_size)
    net = copy.deepcopy(resolve_model(model)).cpu().eval()  # the caller's model is untouched
    _require("onnx")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
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
                str(out),
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
                str(out),
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
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
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
    sample = None
    if args.images:
        from .extract import list_images, load_image

        paths = list_images(args.images)[: args.num_images]
        sample = torch.stack([load_image(p, (args.height, args.width)) for p in paths])
    report = export_onnx(
        args.checkpoint,
        args.output,
        image_size=(args.height, args.width),
        opset=args.opset,
        check=not args.no_check,
        sample_inputs=sample,
        min_cosine=args.min_cosine,
        dynamo=args.dynamo,
    )
    print(report)
    return 0


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`smcr export --format onnx`: write a checkpoint as ONNX and check it with onnxruntime."""
    p = subparsers.add_parser(
        "export", help="export a checkpoint to ONNX", description=add_export_parser.__doc__
    )
    p.add_argument("--checkpoint", required=True, help="smcr checkpoint (save_checkpoint)")
    p.add_argument("--output", "-o", required=True, help="the .onnx file to write")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument(
        "--images",
        default=None,
        help="folder of real images for the parity check (default: random inputs)",
    )
    p.add_argument("--num-images", type=int, default=16)
    p.add_argument("--min-cosine", type=float, default=0.999)
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    p.add_argument("--dynamo", action="store_true", help="torch.export-based exporter")
    p.set_defaults(func=_run_export)
    return p
