"""`evaluate`: features (or a distance matrix) and labels in, EvalResult out; and the
`smcr evaluate` command."""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any, NamedTuple

import torch

from .distance import METRICS, _check_pair, distance_blocks
from .metrics import (
    EvalResult,
    NoValidQueryError,
    _check_max_rank,
    check_exclude,
    check_flag,
    check_int,
    check_labels,
    evaluate_distmat,
    finish_ranking,
    identity_pairs,
    new_rank_state,
    rank_block,
)
from .rerank import re_ranking

__all__ = ["MARKET_PATTERN", "add_evaluate_parser", "evaluate", "parse_labels"]

# Market-1501 / DukeMTMC-reID file names: 0002_c1s1_000451_03.jpg -> pid 2, camera 1.
MARKET_PATTERN = r"([-\d]+)_c(\d+)"


def evaluate(
    query_features: Any,
    gallery_features: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    *,
    metric: str = "cosine",
    rerank: bool = False,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    max_rank: int = 50,
    single_camera: bool = False,
    block_rows: int | None = None,
    knn_backend: str = "exact",
    exclude: Any = None,
    same_image: Any = None,
) -> EvalResult:
    """mAP, mINP and CMC Rank-1/5/10 of query features against gallery features.

    The Market-1501 protocol: gallery items of the query's identity and camera are removed,
    junk (pid -1) gallery items are ignored, distractors (pid 0) stay. See
    `evaluate_distmat` for the metrics and `re_ranking` for the re-ranking.

    Args:
        query_features, gallery_features: (Q, D), (G, D) float tensors or arrays (CPU or
            CUDA; the work runs on their device).
        q_pids, g_pids, q_camids, g_camids: integer labels, (Q,), (G,), (Q,), (G,).
        metric: "cosine" (1 - cos) or "euclidean" (squared).
        rerank: k-reciprocal re-ranking with k1, k2, lambda_value (20, 6, 0.3).
        max_rank: length of `result.cmc`.
        single_camera: keep same-camera matches (custom data shot by one camera).
        block_rows: query rows per distance block (memory: block_rows x G floats);
            default 1024 on CPU, 8192 on a GPU.
        knn_backend: kNN backend of the re-ranking graph.
        exclude: (K, 2) (query index, gallery index) pairs left out of the ranking (for
            instance frames of the query's own tracklet).
        same_image: (K, 2) (query index, gallery index) pairs that are one image: a query's
            own file in the gallery (`smcr evaluate` passes them, so that a folder evaluated
            against itself never matches a query with itself). They are left out of the
            ranking like `exclude`, and with `rerank` each is one point of the re-ranking
            graph (`re_ranking`'s `same_image`): the gallery copy is not a neighbour of its
            own query. Pairs whose features differ are refused there.

    Returns:
        EvalResult; raises NoValidQueryError (a ValueError) when no query has a match.
    """
    q, g = _check_pair(query_features, gallery_features, metric)
    nq, ng = q.shape[0], g.shape[0]
    max_rank = min(_check_max_rank(max_rank), ng)
    labels = check_labels(q_pids, g_pids, q_camids, g_camids, nq, ng)
    exclude = check_exclude(exclude, nq, ng)
    same = check_exclude(same_image, nq, ng, "same_image")
    if same is not None and same.numel():
        # left out of the ranking too (the pairs as given; duplicates are harmless)
        exclude = same if exclude is None or not exclude.numel() else torch.cat([exclude, same])
    rerank = check_flag(rerank, "rerank")
    single_camera = check_flag(single_camera, "single_camera")
    if block_rows is None:
        block_rows = 1024 if q.device.type == "cpu" else 8192
    try:
        block_rows = check_int(block_rows, "block_rows", 1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"block_rows must be an int >= 1, got {block_rows!r}") from e
    if rerank:
        dist = re_ranking(
            q,
            g,
            k1=k1,
            k2=k2,
            lambda_value=lambda_value,
            metric=metric,
            knn_backend=knn_backend,
            same_image=same,
        )
        return evaluate_distmat(
            dist, *labels, max_rank=max_rank, single_camera=single_camera, exclude=exclude
        )
    pairs = identity_pairs(*labels, single_camera=single_camera, exclude=exclude)
    st = new_rank_state(pairs, ng)
    for r0, d in distance_blocks(q, g, metric, block_rows):
        rank_block(d, r0, st)
        del d
    return finish_ranking(st, nq, max_rank)


def parse_labels(names: list[str], pattern: str = MARKET_PATTERN) -> tuple[list[int], list[int]]:
    """(pids, camids) from file names with a regex of two groups (pid, camera).

    The default reads Market-1501/DukeMTMC names (`0002_c1s1_000451_03.jpg` -> 2, 1).
    """
    if isinstance(names, (str, bytes)):
        raise TypeError(f"names must be a list of file names, got a single {type(names).__name__}")
    try:
        rx = re.compile(pattern)
    except (re.error, TypeError) as e:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression ({e})") from e
    if rx.groups < 2:
        raise ValueError(f"pattern must have two groups (pid, camera), got {pattern!r}")
    pids, cams = [], []
    for name in names:
        m = rx.search(os.path.basename(name))
        if m is None:
            raise ValueError(f"file name {name!r} does not match the label pattern {pattern!r}")
        try:
            pids.append(int(m.group(1)))
            cams.append(int(m.group(2)))
        except (TypeError, ValueError) as e:  # a group that matched text or nothing
            raise ValueError(
                f"file name {name!r}: pattern {pattern!r} must capture integer pid and camera, "
                f"got {m.group(1)!r} and {m.group(2)!r}"
            ) from e
    return pids, cams


# --------------------------------------------------------------------------- CLI


def default_num_workers() -> int:
    """DataLoader workers of the commands: min(4, CPUs - 1), 0 on a single core."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def add_common_model_args(p: argparse.ArgumentParser) -> None:
    """--checkpoint, --query, --gallery, image and extraction options (shared by visrank)."""
    from ..cli import add_image_size_args, int_at_least

    p.add_argument("--checkpoint", required=True, help="smcr checkpoint (save_checkpoint)")
    p.add_argument("--query", required=True, help="folder of query images")
    p.add_argument("--gallery", required=True, help="folder of gallery images")
    p.add_argument(
        "--pattern",
        default=MARKET_PATTERN,
        help="regex with (pid, camera) groups for file names (default: Market-1501)",
    )
    add_image_size_args(p)
    p.add_argument("--batch-size", type=int_at_least(1), default=128)
    p.add_argument(
        "--device", default=None, help="auto, cpu, cuda, cuda:1 ... (default: cuda if available)"
    )
    p.add_argument("--flip", action="store_true", help="average with horizontally flipped images")
    p.add_argument(
        "--num-workers",
        type=int_at_least(0),
        default=default_num_workers(),
        help="DataLoader worker processes (default: min(4, CPUs - 1))",
    )
    p.add_argument("--metric", choices=METRICS, default="cosine")
    p.add_argument(
        "--single-camera",
        action="store_true",
        help="do not remove same-camera matches (custom single-camera data); a query's own "
        "image is still left out when query and gallery share files",
    )


class QueryGallery(NamedTuple):
    """What `extract_query_gallery` returns: features and labels of both folders, and the
    (query, gallery) index pairs that are the same file."""

    query: Any  # ExtractResult
    gallery: Any  # ExtractResult
    q_pids: list[int]
    q_camids: list[int]
    g_pids: list[int]
    g_camids: list[int]
    same_file: list[tuple[int, int]]
    device: torch.device
    image_size: tuple[int, int]


def _check_pattern(pattern: str) -> None:
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"--pattern {pattern!r} is not a valid regular expression ({e})") from e
    if rx.groups < 2:
        raise ValueError(f"--pattern must have two groups (pid, camera), got {pattern!r}")


def _folder(folder: str, flag: str) -> list:
    from ..extract import list_images

    try:
        return list_images(folder)
    except (FileNotFoundError, ValueError) as e:
        raise type(e)(f"{flag}: {e}") from e


def _labels(paths: list, pattern: str, flag: str) -> tuple[list[int], list[int]]:
    try:
        return parse_labels([p.name for p in paths], pattern)
    except ValueError as e:
        raise ValueError(f"{flag}: {e} (set --pattern to a regex with (pid, camera) groups)") from e


def _same_files(q_paths: list, g_paths: list) -> list[tuple[int, int]]:
    """(i, j) for every query i whose file is gallery item j (same inode: the same path,
    a symbolic or a hard link)."""

    def key(p) -> tuple[int, int]:
        st = os.stat(p)
        return st.st_dev, st.st_ino

    where = {key(p): j for j, p in enumerate(g_paths)}
    return [(i, where[key(p)]) for i, p in enumerate(q_paths) if key(p) in where]


def extract_query_gallery(args: argparse.Namespace) -> QueryGallery:
    """Check every argument, then extract both folders with the checkpoint."""
    from ..cli import choose_image_size
    from ..extract import checkpoint_image_size, extract, load_model_checkpoint, resolve_device

    device = resolve_device(args.device, "--device")
    _check_pattern(args.pattern)
    q_paths, g_paths = _folder(args.query, "--query"), _folder(args.gallery, "--gallery")
    qp, qc = _labels(q_paths, args.pattern, "--query")
    gp, gc = _labels(g_paths, args.pattern, "--gallery")
    model, extras = load_model_checkpoint(args.checkpoint)
    size = choose_image_size(args, checkpoint_image_size(extras, args.checkpoint), args.checkpoint)
    kw = dict(
        batch_size=args.batch_size,
        device=device,
        flip=args.flip,
        image_size=size,
        num_workers=args.num_workers,
    )
    q, g = extract(model, args.query, **kw), extract(model, args.gallery, **kw)
    return QueryGallery(q, g, qp, qc, gp, gc, _same_files(q_paths, g_paths), device, size)


def _run_evaluate(args: argparse.Namespace) -> int:
    from ..cli import check_output_path
    from ..fileio import atomic_write_text

    if args.json:
        check_output_path(args.json, "--json")
    r = extract_query_gallery(args)
    qf, gf = r.query.features, r.gallery.features
    if r.device.type == "cuda":
        qf, gf = qf.to(r.device), gf.to(r.device)
    try:
        res = evaluate(
            qf,
            gf,
            r.q_pids,
            r.g_pids,
            r.q_camids,
            r.g_camids,
            metric=args.metric,
            rerank=args.rerank,
            k1=args.k1,
            k2=args.k2,
            lambda_value=args.lambda_value,
            single_camera=args.single_camera,
            same_image=r.same_file,
        )
    except NoValidQueryError as e:
        if not (args.single_camera and r.same_file):
            raise
        raise NoValidQueryError(
            "no query has a match in the gallery: with --single-camera only a query's own "
            f"image is left out ({len(r.same_file)} queries are gallery files too), and no "
            "query identity has another image in the gallery"
        ) from e
    print(res)
    if args.json:
        atomic_write_text(args.json, json.dumps(res.as_dict(), indent=2) + "\n")
    return 0


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`smcr evaluate`: extract query and gallery folders with a checkpoint, print mAP,
    mINP and Rank-1/5/10 (Market-1501 protocol, labels from file names). A query whose
    own file is also in the gallery (the same folder given twice) never counts as its
    own match."""
    from ..cli import EPILOG, int_at_least

    p = subparsers.add_parser(
        "evaluate",
        aliases=["eval"],
        help="mAP / mINP / CMC of a checkpoint on query and gallery folders",
        description=add_evaluate_parser.__doc__,
        epilog=EPILOG,
    )
    add_common_model_args(p)
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")
    p.add_argument("--k1", type=int_at_least(1), default=20)
    p.add_argument("--k2", type=int_at_least(1), default=6)
    p.add_argument("--lambda-value", type=float, default=0.3)
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.set_defaults(func=_run_evaluate)
    return p
