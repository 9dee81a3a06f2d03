"""Weights from local files only: pretrained state dicts in the field's layouts, and smcr
checkpoints (config + state dict). Nothing here touches the network.

Layouts mapped onto `ReIDModel` (and onto a bare `ResNet` trunk):
  torchvision / timm ResNet   conv1.weight, bn1.*, layer1.0.conv1.weight, ..., fc.*
                              (timm's deep-stem "d" variants are not mapped)
  IBN-Net (XingangPan)        the same, with layerN.M.bn1.IN.* / layerN.M.bn1.BN.*
  SpCL / MMT checkpoints      module.base.0 (conv1), base.1 (bn1), base.3-6 (layer1-4),
                              feat_bn (neck), classifier; {'state_dict': ...} wrappers
  smcr                        backbone.*, pool.*, neck.*, classifier.*
A `module.` prefix (DataParallel/DDP) is stripped. Into a DSBN model, a plain BN's entry
fills both `bn_s` and `bn_t`. `fc.*` (ImageNet classifier) is reported as unexpected.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..fileio import atomic_save
from .reid import ModelConfig, ReIDModel, build_model
from .resnet import ResNet

__all__ = [
    "CHECKPOINT_FORMAT",
    "LoadReport",
    "load_checkpoint",
    "load_checkpoint_with_extras",
    "load_pretrained",
    "load_state_file",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "smcr-reid-v1"
_SPCL_BASE = {"0": "conv1", "1": "bn1", "3": "layer1", "4": "layer2", "5": "layer3", "6": "layer4"}
_TRUNK_ROOTS = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")


@dataclass
class LoadReport:
    """What `load_pretrained` did.

    loaded: model keys filled from the file; missing: model keys the file lacks
    (BatchNorm `num_batches_tracked` counters excluded); unexpected: file keys (after
    mapping) that the model lacks; mismatched: (key, model shape, file shape), skipped.
    """

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every trunk key was loaded and nothing had the wrong shape."""
        return not self.mismatched and not any(
            k.startswith("backbone.") or k.startswith(_TRUNK_ROOTS) for k in self.missing
        )

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.path}"]
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                shown = ", ".join(keys[:8]) + (
                    f", ... ({len(keys)} in all)" if len(keys) > 8 else ""
                )
                lines.append(f"{title} ({len(keys)}): {shown}")
        for k, ms, fs in self.mismatched:
            lines.append(f"shape mismatch (skipped): {k}: model {list(ms)} vs file {list(fs)}")
        return "\n".join(lines)


def _check_local_path(path: Any, name: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path to a local file, got {type(path).__name__}")
    s = os.fspath(path)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", s):
        raise ValueError(
            f"{name} must be a local file; weights are never downloaded, got the URL {s!r}"
        )
    p = Path(s).expanduser()
    if p.is_dir():
        raise ValueError(f"{name} {s!r} is a folder, not a weights file")
    if not p.is_file():
        raise FileNotFoundError(f"{name}: no such file {s!r}")
    return p


def load_state_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a local .pth/.pth.tar/.pt file: unwrapped from {'state_dict'|
    'model'|'state_dict_ema': ...}, tensors only, loaded with weights_only=True.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for a
    folder or a file torch cannot load safely (empty, truncated, not written by torch.save,
    pickled objects other than tensors and plain data)."""
    p = _check_local_path(path)
    obj = _torch_load(p, "cpu", f"{os.fspath(path)!r} is not a weights file")
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise ValueError(
            f"{os.fspath(path)!r} does not hold a state dict (got {type(obj).__name__})"
        )
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _torch_load(p: Path, map_location: Any, what: str) -> Any:
    """torch.load(weights_only=True) of `p`; a file it cannot read raises ValueError(what (why))."""
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4" of a plain pickle
            warnings.simplefilter("ignore")
            return torch.load(p, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as e:  # truncated zip, empty file, pickle of something else ...
        raise ValueError(f"{what} ({_load_failure(p, e)})") from e


def _canonical(key: str) -> str:
    """A file key in the smcr ReIDModel layout."""
    while key.startswith("module."):
        key = key[len("module.") :]
    m = re.match(r"^base\.(\d+)\.(.*)$", key)
    if m and m.group(1) in _SPCL_BASE:
        return f"backbone.{_SPCL_BASE[m.group(1)]}.{m.group(2)}"
    if key.startswith("feat_bn."):
        return "neck." + key[len("feat_bn.") :]
    if key.startswith(_TRUNK_ROOTS):
        return "backbone." + key
    return key


def _plain_name(model_key: str) -> str:
    return model_key.replace(".bn_s.", ".").replace(".bn_t.", ".")


def load_pretrained(
    model: nn.Module, path: str | os.PathLike, *, strict: bool = False
) -> LoadReport:
    """Copy the matching tensors of a local weights file into `model` (a ReIDModel or a
    bare ResNet trunk) and report what matched.

    Args:
        model: the network to fill (in place).
        path: a local file; URLs are refused (nothing is downloaded).
        strict: raise ValueError unless every trunk tensor was loaded with its shape.

    Returns:
        LoadReport (also printable).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    src = {_canonical(k): v for k, v in load_state_file(path).items()}
    prefix = "backbone." if isinstance(model, ResNet) else ""
    if prefix:  # a bare trunk: its own keys lack the "backbone." root
        src = {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in src.items()}
    target = model.state_dict()
    report = LoadReport(path=os.fspath(path))
    used: set[str] = set()
    new_state: dict[str, torch.Tensor] = {}
    for key, cur in target.items():
        src_key = key if key in src else _plain_name(key)
        if src_key not in src:
            if not key.endswith("num_batches_tracked"):
                report.missing.append(key)
            continue
        used.add(src_key)
        val = src[src_key]
        if tuple(val.shape) != tuple(cur.shape):
            report.mismatched.append((key, tuple(cur.shape), tuple(val.shape)))
            continue
        new_state[key] = val.to(dtype=cur.dtype)
        report.loaded.append(key)
    report.unexpected = sorted(k for k in src if k not in used)
    if strict and not report.ok:
        raise ValueError(f"strict load of {os.fspath(path)!r} failed:\n{report}")
    model.load_state_dict(new_state, strict=False)
    return report


def save_checkpoint(model: ReIDModel, path: str | os.PathLike, **extra: Any) -> None:
    """Save `model` with its config so that `load_checkpoint(path)` rebuilds it.

    extra: more entries (epoch, metrics ...) stored alongside; they must be plain data
    that ``torch.load(weights_only=True)`` reads back (None, bool, int, float, str,
    tensors, and lists / tuples / dicts of them): a NumPy scalar or a Path is refused with
    a TypeError naming the entry, before anything is written.

    Everything is checked before the file is touched (the config must describe the
    network's state dict: a DSBN-converted or collapsed network needs its ``config.dsbn``
    updated), and the write is atomic: a failed or interrupted save leaves the previous
    file at `path` as it was.
    """
    if not isinstance(model, ReIDModel):
        raise TypeError(f"model must be a ReIDModel, got {type(model).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    if Path(path).is_dir():
        raise ValueError(f"path {os.fspath(path)!r} is a folder; give a checkpoint file name")
    reserved = {"format", "config", "state_dict"} & set(extra)
    if reserved:
        raise ValueError(f"extra must not use the reserved keys {sorted(reserved)}")
    _check_plain_data(extra)
    state = model.state_dict()
    _check_state_fits_config(model.config, state)
    obj = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_dict(),
        "state_dict": state,
        **extra,
    }
    atomic_save(obj, path)  # never a half-written checkpoint


def _weights_only_round_trip(obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.load(buf, weights_only=True)


def _check_plain_data(extra: dict[str, Any]) -> None:
    """Every entry of `extra` must survive a weights_only load (else the checkpoint written
    would not load): checked by a round trip of the entries alone, in memory."""
    try:
        _weights_only_round_trip(extra)
        return
    except Exception:
        pass
    for key, value in extra.items():
        try:
            _weights_only_round_trip(value)
        except Exception as e:
            first = str(e).strip().splitlines()
            why = next((ln.strip() for ln in first if "Unsupported global" in ln), "")
            raise TypeError(
                f"extra entry {key!r} ({type(value).__name__}: {value!r:.80}) is not plain data "
                "that torch.load(weights_only=True) reads back; store Python numbers, str, "
                f"lists, dicts or tensors instead (e.g. int(x), str(path), x.tolist())"
                + (f" [{why}]" if why else "")
            ) from e
    raise TypeError("extra is not plain data that torch.load(weights_only=True) reads back")


def _state_diff(expected: dict[str, Any], got: dict[str, Any], limit: int = 5) -> str:
    """Missing keys, unexpected keys and shape mismatches between two state dicts, in words
    (empty when they agree). `num_batches_tracked` counters may be missing."""

    def shown(keys: list[str]) -> str:
        more = f", ... ({len(keys)} in all)" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more

    missing = [k for k in expected if k not in got and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in got if k not in expected]
    mismatched = []
    for k, v in got.items():
        if k in expected:
            shape = tuple(getattr(v, "shape", ()))
            want = tuple(expected[k].shape)
            if not isinstance(v, torch.Tensor) or shape != want:
                mismatched.append(
                    f"{k}: expected {list(want)}, got "
                    + (f"{list(shape)}" if isinstance(v, torch.Tensor) else type(v).__name__)
                )
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {shown(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {shown(unexpected)}")
    if mismatched:
        parts.append(f"shape mismatches ({len(mismatched)}): {shown(mismatched)}")
    return "; ".join(parts)


def _reference_state(config: ModelConfig) -> dict[str, torch.Tensor]:
    """The state dict (keys and shapes, on the meta device) of the network `config` builds."""
    with torch.device("meta"):
        return build_model(config).state_dict()


def _check_state_fits_config(config: ModelConfig, state: dict[str, torch.Tensor]) -> None:
    diff = _state_diff(_reference_state(config), state)
    if diff:
        has_dsbn = any(".bn_s." in k or ".bn_t." in k for k in state)
        hint = ""
        if has_dsbn != config.dsbn:
            hint = (
                f"; the network {'has' if has_dsbn else 'has no'} DSBN layers but "
                f"model.config.dsbn is {config.dsbn}: set model.config = "
                f"dataclasses.replace(model.config, dsbn={has_dsbn})"
            )
        raise ValueError(
            f"model.config does not describe the network's state dict, so the checkpoint "
            f"would not load ({diff}){hint}; nothing was written"
        )


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> ReIDModel:
    """Rebuild the ReIDModel saved by `save_checkpoint` (weights_only load, strict keys)."""
    return load_checkpoint_with_extras(path, map_location)[0]


def load_checkpoint_with_extras(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                                ) -> tuple[ReIDModel, dict[str, Any]]:
    """The ReIDModel saved by `save_checkpoint` and the checkpoint's other entries (e.g.
    "image_size", "alpha"), read in one weights_only load.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for a
    folder or anything that is not an smcr checkpoint (empty, truncated, another format,
    weights that do not fit its config)."""
    if isinstance(path, (str, os.PathLike)) and Path(path).is_dir():
        raise ValueError(f"checkpoint {os.fspath(path)!r} is a folder, not a checkpoint file")
    p = _check_local_path(path, "checkpoint")
    what = f"checkpoint {os.fspath(path)!r} is not an smcr checkpoint"
    obj = _torch_load(p, map_location, what)
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{what} (no format={CHECKPOINT_FORMAT!r}); to load pretrained weights into a new "
            "network use build_model(arch=..., pretrained=path)"
        )
    damaged = f"checkpoint {os.fspath(path)!r} is damaged"
    config = obj.get("config")
    if isinstance(config, dict):
        unknown = sorted(set(config) - {f.name for f in fields(ModelConfig)}, key=str)
        if unknown:
            raise ValueError(
                f"checkpoint {os.fspath(path)!r} records model settings this version of smcr "
                f"does not know ({unknown}); was it written by a newer smcr?"
            )
    state = obj.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"{damaged} (its state_dict is {type(state).__name__}, not a dict)")
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}  # DataParallel / DDP
    try:
        model = build_model(ModelConfig.from_dict(config))
    except (TypeError, ValueError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{damaged} (its model config: {detail})") from e
    try:
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        detail = _state_diff(model.state_dict(), state)
        if not detail:
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{damaged}: its weights do not fit its config ({detail})") from e
    extras = {k: v for k, v in obj.items() if k not in ("format", "config", "state_dict")}
    return model, extras


def _load_failure(path: Path, e: Exception) -> str:
    """Why torch.load failed, in a few words."""
    text = str(e).strip()
    if path.stat().st_size == 0:
        return "the file is empty"
    if "zip archive" in text:
        return "truncated or damaged: " + text.split(". ")[0]
    if "Unsupported global" in text:
        return (
            "it pickles Python objects other than tensors and plain data (e.g. NumPy "
            "arrays), which a weights_only load refuses; re-save it with tensors only"
        )
    if "Weights only load failed" in text or isinstance(e, KeyError):
        return "not a file written by torch.save"
    first = text.splitlines()[0][:120] if text else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__
