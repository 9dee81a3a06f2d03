"""`evaluate`: features (or a distance matrix) and labels in, EvalResult out; and the
`smcr evaluate` command."""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any

import torch

from .distance import METRICS, _check_pair, distance_blocks
from .metrics import (
    EvalResult,
    _check_max_rank,
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

    Returns:
        EvalResult; raises NoValidQueryError (a ValueError) when no query has a match.
    """
    q, g = _check_pair(query_features, gallery_features, metric)
    nq, ng = q.shape[0], g.shape[0]
    max_rank = min(_check_max_rank(max_rank), ng)
    labels = check_labels(q_pids, g_pids, q_camids, g_camids, nq, ng)
    if rerank:
        dist = re_ranking(
            q, g, k1=k1, k2=k2, lambda_value=lambda_value, metric=metric, knn_backend=knn_backend
        )
        return evaluate_distmat(dist, *labels, max_rank=max_rank, single_camera=single_camera)
    if block_rows is None:
        block_rows = 1024 if q.device.type == "cpu" else 8192
    if isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < 1:
        raise ValueError(f"block_rows must be an int >= 1, got {block_rows!r}")
    pairs = identity_pairs(*labels, single_camera=bool(single_camera))
    st = new_rank_state(pairs, ng)
    for r0, d in distance_blocks(q, g, metric, block_rows):
        rank_block(d, r0, st)
        del d
    return finish_ranking(st, nq, max_rank)


def parse_labels(names: list[str], pattern: str = MARKET_PATTERN) -> tuple[list[int], list[int]]:
    """(pids, camids) from file names with a regex of two groups (pid, camera).

    The default reads Market-1501/DukeMTMC names (`0002_c1s1_000451_03.jpg` -> 2, 1).
    """
    rx = re.compile(pattern)
    if rx.groups < 2:
        raise ValueError(f"pattern must have two groups (pid, camera), got {pattern!r}")
    pids, cams = [], []
    for name in names:
        m = rx.search(os.path.basename(name))
        if m is None:
            raise ValueError(f"file name {name!r} does not match the label pattern {pattern!r}")
        pids.append(int(m.group(1)))
        cams.append(int(m.group(2)))
    return pids, cams


# --------------------------------------------------------------------------- CLI


def add_common_model_args(p: argparse.ArgumentParser) -> None:
    """--checkpoint, --query, --gallery, image and extraction options (shared by visrank)."""
    p.add_argument("--checkpoint", required=True, help="smcr checkpoint (save_checkpoint)")
    p.add_argument("--query", required=True, help="folder of query images")
    p.add_argument("--gallery", required=True, help="folder of gallery images")
    p.add_argument(
        "--pattern",
        default=MARKET_PATTERN,
        help="regex with (pid, camera) groups for file names (default: Market-1501)",
    )
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)"
    )
    p.add_argument("--flip", action="store_true", help="average with horizontally flipped images")
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--metric", choices=METRICS, default="cosine")
    p.add_argument(
        "--single-camera",
        action="store_true",
        help="do not remove same-camera matches (custom single-camera data)",
    )


def extract_query_gallery(args: argparse.Namespace):
    """Extract both folders with the checkpoint; returns (query, gallery) ExtractResults."""
    from ..extract import extract, resolve_device, resolve_model

    model = resolve_model(args.checkpoint)
    kw = dict(
        batch_size=args.batch_size,
        device=resolve_device(args.device),
        flip=args.flip,
        image_size=(args.height, args.width),
        num_workers=args.num_workers,
    )
    return extract(model, args.query, **kw), extract(model, args.gallery, **kw)


def _run_evaluate(args: argparse.Namespace) -> int:
    q, g = extract_query_gallery(args)
    qp, qc = parse_labels(q.names, args.pattern)
    gp, gc = parse_labels(g.names, args.pattern)
    qf, gf = q.features, g.features
    if args.device is not None and torch.device(args.device).type == "cuda":
        qf, gf = qf.to(args.device), gf.to(args.device)
    res = evaluate(
        qf,
        gf,
        qp,
        gp,
        qc,
        gc,
        metric=args.metric,
        rerank=args.rerank,
        k1=args.k1,
        k2=args.k2,
        lambda_value=args.lambda_value,
        single_camera=args.single_camera,
    )
    print(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res.as_dict(), f, indent=2)
    return 0


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`smcr evaluate`: extract query and gallery folders with a checkpoint, print mAP,
    mINP and Rank-1/5/10 (Market-1501 protocol, labels from file names)."""
    p = subparsers.add_parser(
        "evaluate",
        aliases=["eval"],
        help="mAP / mINP / CMC of a checkpoint on query and gallery folders",
        description=add_evaluate_parser.__doc__,
    )
    add_common_model_args(p)
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")
    p.add_argument("--k1", type=int, default=20)
    p.add_argument("--k2", type=int, default=6)
    p.add_argument("--lambda-value", type=float, default=0.3)
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.set_defaults(func=_run_evaluate)
    return p
