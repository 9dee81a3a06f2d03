"""The plain NumPy argsort evaluator: the spec and test oracle of `evaluate_distmat`.

It sorts every row (stable, so ties go by gallery index), then reads the protocol off the
sorted labels, vectorised over queries in blocks of rows. It is the slow obvious algorithm
(O(Q G log G) and several (rows, G) temporaries) and the NumPy peer of the benchmark.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["evaluate_reference"]


def evaluate_reference(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
    single_camera: bool = False,
    block_rows: int = 512,
) -> dict[str, Any]:
    """Market-1501 protocol metrics by argsort (see `metrics` for the definitions).

    Args:
        distmat: (Q, G) array-like of distances.
        q_pids, g_pids, q_camids, g_camids: 1-D integer labels; gallery pid -1 is junk.
        max_rank: CMC length (cut to G).
        single_camera: do not remove the gallery items of the query's identity and camera.
        block_rows: rows sorted at a time (memory only).

    Returns:
        {"mAP", "mINP", "cmc" (max_rank,) float64, "num_valid_queries",
         "average_precision" (Q,) NaN where invalid, "first_match_rank" (Q,) -1 where invalid}
    """
    dist = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    nq, ng = dist.shape
    max_rank = min(max_rank, ng)
    ap = np.full(nq, np.nan)
    inp = np.full(nq, np.nan)
    first = np.full(nq, -1, dtype=np.int64)
    for r0 in range(0, nq, block_rows):
        r1 = min(nq, r0 + block_rows)
        order = np.argsort(dist[r0:r1], axis=1, kind="stable")  # (b, G)
        pids, cams = g_pids[order], g_camids[order]
        same_id = pids == q_pids[r0:r1, None]
        remove = pids == -1
        if not single_camera:
            remove |= same_id & (cams == q_camids[r0:r1, None])
        keep = ~remove
        good = same_id & keep  # (b, G) the matches, in ranked order
        rank = np.cumsum(keep, axis=1) - 1  # 0-based rank among the kept items
        m = good.sum(axis=1)
        valid = m > 0
        j = np.cumsum(good, axis=1)  # matches up to and including each position
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = np.where(good, j / (rank + 1.0), 0.0)
            ap[r0:r1] = np.where(valid, prec.sum(axis=1) / m, np.nan)
            last = np.where(good, rank, -1).max(axis=1)
            inp[r0:r1] = np.where(valid, m / (last + 1.0), np.nan)
        first_pos = np.argmax(good, axis=1)
        first[r0:r1] = np.where(valid, rank[np.arange(r1 - r0), first_pos], -1)
    valid = first >= 0
    nv = int(valid.sum())
    if nv == 0:
        raise ValueError("no query has a match in the gallery")
    hits = np.bincount(np.minimum(first[valid], max_rank), minlength=max_rank + 1)
    cmc = np.cumsum(hits[:max_rank]) / nv
    return {
        "mAP": float(ap[valid].mean()),
        "mINP": float(inp[valid].mean()),
        "cmc": cmc,
        "num_valid_queries": nv,
        "average_precision": ap,
        "first_match_rank": first,
    }
