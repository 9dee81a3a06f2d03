"""The entry point of the SMCR pipeline: a translated dataset, trained and written once,
then reused from an on-disk cache while its inputs and settings do not change.

    d_sr = translate_domain("data/gspr", "data/market", "cache/translate", cfg)       # D^SR
    d_rt = translate_domain("data/market", "data/duke", "cache/translate", cfg)       # D^RT
    train_set = read_dataset(d_rt.root)   # source images in the target's style, source labels

Layout of `cache_dir`:
    translators/<run key[:16]>/      a `train_translator` folder (resumes if interrupted)
    datasets/<dataset key[:16]>/     a `translate_dataset` output

The run key hashes the config and the two train lists (relative path, pid, camid, file size
per image; see `samples_fingerprint`) and the given classifier's weights; the dataset key
adds the direction, the translated dataset's file list and the output settings. Anything
else (device, number of workers, logging) does not enter the keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from smcr.data.readers import SUBSETS

from ..fileio import sha256_json
from .apply import list_dataset_files, translate_dataset
from .config import TranslateConfig, TranslateError
from .data import samples_fingerprint, train_samples
from .files import module_fingerprint
from .trainer import Translator, run_key, train_translator

__all__ = ["CachedTranslation", "translate_domain"]


@dataclass
class CachedTranslation:
    """root: the translated dataset (open it with `smcr.data.read_dataset`); translator: the
    translator.pt used; run_key / dataset_key: the cache keys; trained / translated: whether
    this call trained the translator / wrote the dataset (False = reused from the cache)."""

    root: Path
    translator: Path
    run_key: str
    dataset_key: str
    trained: bool
    translated: bool


def translate_domain(
    from_data: str | os.PathLike,
    to_data: str | os.PathLike,
    cache_dir: str | os.PathLike,
    config: TranslateConfig | None = None,
    *,
    classifier: nn.Module | None = None,
    apply_to: str | os.PathLike | None = None,
    direction: str = "AB",
    subsets: Sequence[str] = SUBSETS,
    keep_size: bool = False,
    max_images: int | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    load_workers: int = 0,
    log: Callable[[str], None] | None = None,
) -> CachedTranslation:
    """Train (or reuse) the translator from `from_data` to `to_data`, then translate
    `apply_to` (default: `from_data`) in `direction` and return the translated dataset.

    from_data, to_data: dataset roots; the translator trains on their train lists, with
        `from_data`'s labels in the identity-preserving loss (mu3).
    classifier: an already trained classifier of `from_data`'s train identities (see
        `train_translator`); its weights enter the key.
    subsets: which subsets of `apply_to` are translated; the others are copied unchanged
        (D^SR / D^RT need only ("train",)).
    The other arguments are those of `train_translator` and `translate_dataset`.
    """
    config = TranslateConfig() if config is None else config
    if not isinstance(config, TranslateConfig):
        raise TypeError(f"config must be a TranslateConfig, got {type(config).__name__}")
    for name, v in (("from_data", from_data), ("to_data", to_data), ("cache_dir", cache_dir)):
        if not isinstance(v, (str, os.PathLike)):
            raise TypeError(f"{name} must be a path, got {type(v).__name__}")
    apply_to = from_data if apply_to is None else apply_to
    if not isinstance(apply_to, (str, os.PathLike)):
        raise TypeError(f"apply_to must be a dataset root, got {type(apply_to).__name__}")
    cache = Path(cache_dir)
    if cache.exists() and not cache.is_dir():
        raise TranslateError(f"cache_dir {cache} exists and is not a folder")

    ds_a, list_a = train_samples(from_data, max_images, "from_data")
    ds_b, list_b = train_samples(to_data, max_images, "to_data")
    cls_fp = module_fingerprint(classifier) if (classifier is not None and config.mu3 > 0) else None
    key = run_key(
        config,
        samples_fingerprint(list_a, ds_a.root),
        samples_fingerprint(list_b, ds_b.root),
        cls_fp,
    )
    run_dir = cache / "translators" / key[:16]
    result = train_translator(
        ds_a,
        ds_b,
        run_dir,
        config,
        classifier=classifier,
        device=device,
        max_images=max_images,
        load_workers=load_workers,
        log=log,
    )
    if not result.finished or result.translator_path is None:
        raise TranslateError(f"translator training in {run_dir} did not finish")

    kind, base, images, _ = list_dataset_files(apply_to)
    dataset_key = sha256_json(
        {
            "run": key,
            "direction": direction,
            "kind": kind,
            "files": [[rel, sub, (base / rel).stat().st_size] for rel, sub in images],
            "subsets": sorted(subsets),
            "keep_size": bool(keep_size),
        }
    )
    out = cache / "datasets" / dataset_key[:16]
    translator = Translator.load(result.translator_path, device)
    info = out / "translation.json"
    before = info.stat().st_mtime_ns if info.is_file() else None
    translate_dataset(
        translator,
        apply_to,
        out,
        direction,
        subsets=subsets,
        batch_size=batch_size,
        device=device,
        keep_size=keep_size,
        overwrite=True,
        reuse=True,
        log=log,
    )
    root = out / Path(apply_to).name if Path(apply_to).is_file() else out
    translated = before is None or info.stat().st_mtime_ns != before
    return CachedTranslation(
        root, result.translator_path, key, dataset_key, not result.reused, translated
    )
