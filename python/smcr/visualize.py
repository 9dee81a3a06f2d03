"""Ranked-list pictures (the paper's Fig. 6): a query and its top-k gallery images, with
green borders on correct matches and red on wrong ones.

    smcr.visualize_ranks(distmat, query, gallery, "out/ranks", topk=10)

`query` and `gallery` are lists of `(image_path, pid, camid, ...)` items (torchreid's
dataset convention). The ranked list follows the evaluation protocol: gallery items of the
query's identity and camera, and junk (pid -1), are left out.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["add_visrank_parser", "ranked_gallery", "visualize_ranks"]

GREEN = (0, 170, 0)
RED = (220, 0, 0)
GREY = (128, 128, 128)


def _labels(items: Sequence[Any], name: str) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise TypeError(f"{name} must be a sequence of (image_path, pid, camid) items")
    paths, pids, cams = [], [], []
    for i, it in enumerate(items):
        if not isinstance(it, (tuple, list)) or len(it) < 3:
            raise ValueError(
                f"{name}[{i}] must be an (image_path, pid, camid, ...) item, got {it!r}"
            )
        paths.append(os.fspath(it[0]))
        pids.append(int(it[1]))
        cams.append(int(it[2]))
    return paths, torch.tensor(pids, dtype=torch.int64), torch.tensor(cams, dtype=torch.int64)


def ranked_gallery(
    distmat: torch.Tensor,
    q_pids: torch.Tensor,
    g_pids: torch.Tensor,
    q_camids: torch.Tensor,
    g_camids: torch.Tensor,
    topk: int = 10,
    single_camera: bool = False,
) -> torch.Tensor:
    """(Q, k) gallery indices of each query's k nearest kept items (a partial top-k, not a
    sort; equal distances listed by gallery index); -1 pads rows with fewer kept items."""
    d = distmat.detach().float().clone()
    removed = g_pids[None, :] == -1
    if not single_camera:
        removed = removed | (
            (g_pids[None, :] == q_pids[:, None]) & (g_camids[None, :] == q_camids[:, None])
        )
    d[removed] = float("inf")
    nq, ng = d.shape
    k = min(topk, ng)
    # Everything up to each row's k-th smallest distance (ties at the boundary included),
    # then ordered by (row, distance, gallery index) and cut to k per row.
    thr = torch.topk(d, k, dim=1, largest=False).values[:, -1:]  # (Q, 1)
    rows, cols = torch.nonzero(d <= thr, as_tuple=True)
    vals = d[rows, cols]
    order = torch.argsort(vals, stable=True)  # cols ascending already within a row
    rows, cols, vals = rows[order], cols[order], vals[order]
    order = torch.argsort(rows, stable=True)
    rows, cols, vals = rows[order], cols[order], vals[order]
    start = torch.searchsorted(rows, torch.arange(nq))
    pos = torch.arange(rows.numel()) - start[rows]
    first_k = pos < k
    out = torch.full((nq, k), -1, dtype=torch.int64)
    out[rows[first_k], pos[first_k]] = torch.where(
        torch.isinf(vals[first_k]), torch.full_like(cols[first_k], -1), cols[first_k]
    )
    return out


def _tile(path: str, size: tuple[int, int], color: tuple[int, int, int], border: int):
    from PIL import Image, ImageOps

    from .data.dataset import open_rgb

    h, w = size
    im = open_rgb(path).resize((w - 2 * border, h - 2 * border), Image.BICUBIC)
    return ImageOps.expand(im, border=border, fill=color)


def visualize_ranks(
    distmat: Any,
    query: Sequence[Any],
    gallery: Sequence[Any],
    out_dir: str | os.PathLike,
    *,
    topk: int = 10,
    query_indices: Sequence[int] | None = None,
    num_queries: int | None = None,
    image_size: tuple[int, int] = (256, 128),
    border: int = 5,
    single_camera: bool = False,
    seed: int = 0,
) -> list[Path]:
    """Write one PNG per query: the query (grey border), a gap, then its top-k gallery
    images left to right, green when the identity matches and red when it does not.

    Args:
        distmat: (Q, G) distances (tensor or array).
        query, gallery: (image_path, pid, camid, ...) items, Q and G of them.
        out_dir: created if needed; files are named after the query images.
        topk: gallery images per row.
        query_indices: which queries to draw; default `num_queries` drawn at random
            (seeded), or all when num_queries is None.
        image_size: (height, width) of each tile.

    Returns:
        The written PNG paths.
    """
    from PIL import Image

    if isinstance(distmat, np.ndarray):
        distmat = torch.from_numpy(distmat)
    if not isinstance(distmat, torch.Tensor) or distmat.dim() != 2:
        raise ValueError(
            f"distmat must be a (Q, G) tensor, got {getattr(distmat, 'shape', type(distmat).__name__)}"
        )
    qpaths, qp, qc = _labels(query, "query")
    gpaths, gp, gc = _labels(gallery, "gallery")
    if tuple(distmat.shape) != (len(qpaths), len(gpaths)):
        raise ValueError(
            f"distmat must be ({len(qpaths)}, {len(gpaths)}) for these query and gallery lists, "
            f"got {tuple(distmat.shape)}"
        )
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk must be an int >= 1, got {topk!r}")
    if num_queries is not None and (
        isinstance(num_queries, bool) or not isinstance(num_queries, int) or num_queries < 0
    ):
        raise ValueError(f"num_queries must be None or an int >= 0, got {num_queries!r}")
    if query_indices is None:
        if num_queries is None or num_queries >= len(qpaths):
            query_indices = list(range(len(qpaths)))
        else:
            g = torch.Generator().manual_seed(seed)
            query_indices = sorted(torch.randperm(len(qpaths), generator=g)[:num_queries].tolist())
    sel = torch.as_tensor(list(query_indices), dtype=torch.int64)
    if sel.numel() and (int(sel.min()) < 0 or int(sel.max()) >= len(qpaths)):
        raise ValueError(f"query_indices must lie in [0, {len(qpaths)})")
    ranked = ranked_gallery(distmat.cpu()[sel], qp[sel], gp, qc[sel], gc, topk, single_camera)
    h, w = image_size
    gap = w // 4
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for row, qi in enumerate(sel.tolist()):
        canvas = Image.new("RGB", (w * (topk + 1) + gap, h), (255, 255, 255))
        canvas.paste(_tile(qpaths[qi], image_size, GREY, border), (0, 0))
        for r, gi in enumerate(ranked[row].tolist()):
            if gi < 0:
                break
            color = GREEN if gp[gi] == qp[qi] else RED
            canvas.paste(_tile(gpaths[gi], image_size, color, border), (w + gap + r * w, 0))
        dest = out / f"{Path(qpaths[qi]).stem}.png"
        canvas.save(dest)
        written.append(dest)
    return written


# --------------------------------------------------------------------------- CLI


def _run_visrank(args: argparse.Namespace) -> int:
    from .cli import check_output_path
    from .evaluation.distance import distance_matrix
    from .evaluation.evaluator import extract_query_gallery

    check_output_path(args.out, "--out", folder=True)
    r = extract_query_gallery(args)
    q, g = r.query, r.gallery
    dist = distance_matrix(q.features, g.features, args.metric)
    for i, j in r.same_file:  # a query's own image is no ranked-list entry (inf = left out)
        dist[i, j] = float("inf")
    query = [
        (os.path.join(args.query, n), p, c)
        for n, p, c in zip(q.names, r.q_pids, r.q_camids, strict=True)
    ]
    gallery = [
        (os.path.join(args.gallery, n), p, c)
        for n, p, c in zip(g.names, r.g_pids, r.g_camids, strict=True)
    ]
    paths = visualize_ranks(
        dist,
        query,
        gallery,
        args.out,
        topk=args.topk,
        num_queries=args.num_queries,
        image_size=r.image_size,
        single_camera=args.single_camera,
        seed=args.seed,
    )
    print(f"wrote {len(paths)} ranked lists to {args.out}")
    return 0


def add_visrank_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`smcr visrank`: PNGs of queries and their top-k gallery images (green = correct,
    red = wrong), from a checkpoint and query/gallery folders."""
    from .cli import EPILOG, int_at_least
    from .evaluation.evaluator import add_common_model_args

    p = subparsers.add_parser(
        "visrank",
        help="draw ranked lists (query + top-k gallery)",
        description=add_visrank_parser.__doc__,
        epilog=EPILOG,
    )
    add_common_model_args(p)
    p.add_argument("--out", required=True, help="output folder for the PNGs")
    p.add_argument("--topk", type=int_at_least(1), default=10)
    p.add_argument(
        "--num-queries", type=int_at_least(1), default=20, help="queries drawn at random"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_visrank)
    return p
