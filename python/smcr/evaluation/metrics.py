"""Re-ID ranking metrics (mAP, mINP, CMC) under the Market-1501 protocol, sort-free.

The protocol (torchreid `eval_market1501`, fast-reid, OpenUnReID): for every query, the
gallery items with the query's identity *and* camera are removed from its ranked list, and
gallery items of identity -1 (junk) are removed; the remaining gallery items with the
query's identity are its matches. A query with no match is skipped; metrics are averaged
over the valid queries:

    AP(q)    = (1/m) * sum_{j=1..m} j / (r_j + 1)      r_j = 0-based rank of the j-th match
    INP(q)   = m / (r_m + 1)                           (Zheng et al., TPAMI 2021)
    CMC_k(q) = [r_1 < k]

Ranks are positions in the list sorted by distance ascending, ties broken by gallery index
(what a stable argsort gives; `reference.evaluate_reference` is that argsort oracle).

How the ranks are found without sorting any row
------------------------------------------------
Only the m matches of a row need a rank, and rank(j) = #{kept items that precede match j}.
Each row is mapped to `bins` integer bins by the monotone map

    bin = trunc(clamp((d - min_row) * s_row, 0, bins - 1)),

where s_row puts the row's farthest match in bin bins - 2 (the last bin collects everything
farther); removed and junk items go to one reserved bin past the end. One `bincount` gives
every row's histogram, and its prefix sum at a match's bin counts every item in a lower bin
exactly (the map is monotone, so a lower bin means a smaller distance). The few items that
share a bin with a match are picked out by one table look-up and compared exactly (value,
then gallery index). The work is a fixed number of passes over the (Q, G) matrix, no sort
and no top-k. Rows go in cache-sized chunks, shared among worker threads on CPU; there is
no Python loop over queries.
"""

from __future__ import annotations

import numbers
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = [
    "EvalResult",
    "NoValidQueryError",
    "evaluate_distmat",
    "check_labels",
]

# Bins per row of the histogram; 4096 keeps the per-row histogram in cache and the
# number of items sharing a bin with a match small (a few per match on random data).
_BINS = 4096


class NoValidQueryError(ValueError):
    """No query has a match in the gallery under the evaluation protocol.

    Raised instead of torchreid's ``assert num_valid_q > 0``. With the Market-1501 protocol
    this happens when every gallery image of every query identity was taken by the query's
    own camera (single-camera data): pass ``single_camera=True`` for such data.
    """


@dataclass(frozen=True)
class EvalResult:
    """Ranking metrics of one evaluation (all fractions in [0, 1]).

    mAP, mINP: mean over valid queries of AP and INP.
    cmc: (max_rank,) float64, cmc[k - 1] = Rank-k accuracy.
    num_queries, num_valid_queries: queries given, queries with at least one match.
    average_precision, inverse_negative_penalty: (Q,) float64 per query, NaN where invalid.
    first_match_rank: (Q,) int64, 0-based rank of the query's first match, -1 where invalid.
    """

    mAP: float
    mINP: float
    cmc: torch.Tensor
    num_queries: int
    num_valid_queries: int
    average_precision: torch.Tensor = field(repr=False)
    inverse_negative_penalty: torch.Tensor = field(repr=False)
    first_match_rank: torch.Tensor = field(repr=False)

    def rank(self, k: int) -> float:
        """Rank-k accuracy (CMC at k), 1 <= k <= len(cmc)."""
        if not 1 <= k <= self.cmc.numel():
            raise ValueError(f"k must be in [1, {self.cmc.numel()}], got {k}")
        return float(self.cmc[k - 1])

    @property
    def rank1(self) -> float:
        return self.rank(1)

    @property
    def rank5(self) -> float:
        return self.rank(min(5, self.cmc.numel()))

    @property
    def rank10(self) -> float:
        return self.rank(min(10, self.cmc.numel()))

    def as_dict(self) -> dict[str, float]:
        """{'mAP', 'mINP', 'rank1', 'rank5', 'rank10', 'num_queries', 'num_valid_queries'}."""
        return {
            "mAP": self.mAP,
            "mINP": self.mINP,
            "rank1": self.rank1,
            "rank5": self.rank5,
            "rank10": self.rank10,
            "num_queries": self.num_queries,
            "num_valid_queries": self.num_valid_queries,
        }

    def __str__(self) -> str:
        return (
            f"mAP {100 * self.mAP:.1f}  mINP {100 * self.mINP:.1f}  "
            f"Rank-1 {100 * self.rank1:.1f}  Rank-5 {100 * self.rank5:.1f}  "
            f"Rank-10 {100 * self.rank10:.1f}  ({self.num_valid_queries}/{self.num_queries} "
            "valid queries)"
        )


# --------------------------------------------------------------------------- inputs


def _as_label_tensor(x: Any, name: str, n: int | None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except Exception as e:  # e.g. a list of strings
            raise TypeError(f"{name} must be a 1-D integer array, got {type(x).__name__}") from e
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.dtype.is_floating_point or t.dtype.is_complex:
        if t.dtype.is_floating_point and bool((t == t.round()).all()):
            t = t.to(torch.int64)
        else:
            raise TypeError(f"{name} must hold integers, got dtype {t.dtype}")
    if n is not None and t.numel() != n:
        raise ValueError(f"{name} must have {n} entries, got {t.numel()}")
    return t.to(torch.int64)


def check_labels(
    q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, num_query: int, num_gallery: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four label arrays as CPU int64 tensors of the right lengths, else a clear error."""
    return (
        _as_label_tensor(q_pids, "q_pids", num_query),
        _as_label_tensor(g_pids, "g_pids", num_gallery),
        _as_label_tensor(q_camids, "q_camids", num_query),
        _as_label_tensor(g_camids, "g_camids", num_gallery),
    )


def _check_max_rank(max_rank: Any) -> int:
    if isinstance(max_rank, bool) or not isinstance(max_rank, numbers.Integral):
        raise TypeError(f"max_rank must be an int, got {type(max_rank).__name__} {max_rank!r}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    return int(max_rank)


@dataclass(frozen=True)
class _Pairs:
    """The sparse (query, gallery) pairs that share an identity, in CSR by query row.

    pos_*: the matches (kept, same identity); rem_*: removed pairs (same identity and
    camera); junk: gallery columns of identity -1. Rows ascending, columns ascending
    within a row; *_ptr are (Q + 1,) row pointers.
    """

    pos_row: torch.Tensor
    pos_col: torch.Tensor
    pos_ptr: torch.Tensor
    rem_row: torch.Tensor
    rem_col: torch.Tensor
    rem_ptr: torch.Tensor
    junk: torch.Tensor


def check_exclude(exclude: Any, num_query: int, num_gallery: int) -> torch.Tensor | None:
    """`exclude` as a (K, 2) CPU int64 tensor of (query, gallery) indices, or None."""
    if exclude is None:
        return None
    t = _as_label_tensor(np.asarray(exclude, dtype=np.int64).reshape(-1), "exclude", None)
    if t.numel() % 2:
        raise ValueError("exclude must be (K, 2) (query index, gallery index) pairs")
    t = t.view(-1, 2)
    if t.numel() and (
        int(t.min()) < 0 or int(t[:, 0].max()) >= num_query or int(t[:, 1].max()) >= num_gallery
    ):
        raise ValueError(
            f"exclude pairs must index [0, {num_query}) queries and [0, {num_gallery}) gallery items"
        )
    return t


def identity_pairs(
    q_pids: torch.Tensor,
    g_pids: torch.Tensor,
    q_camids: torch.Tensor,
    g_camids: torch.Tensor,
    single_camera: bool = False,
    exclude: torch.Tensor | None = None,
) -> _Pairs:
    """Matches and removed items of every query, found through the gallery sorted by pid
    (O((Q + G) log G + pairs), never a (Q, G) mask). `exclude`: (K, 2) (query, gallery)
    index pairs removed as well (a query's own image in the gallery)."""
    nq = q_pids.numel()
    order = torch.argsort(g_pids, stable=True)  # gallery indices ascending within a pid
    sorted_pids = g_pids[order]
    lo = torch.searchsorted(sorted_pids, q_pids, side="left")
    hi = torch.searchsorted(sorted_pids, q_pids, side="right")
    # Junk (-1) is removed for every query, so a junk query has no identity pairs.
    counts = torch.where(q_pids == -1, torch.zeros_like(lo), hi - lo)
    rows = torch.repeat_interleave(torch.arange(nq), counts)
    starts = torch.repeat_interleave(lo - (torch.cumsum(counts, 0) - counts), counts)
    cols = order[starts + torch.arange(rows.numel())]
    if single_camera:
        same_cam = torch.zeros_like(rows, dtype=torch.bool)
    else:
        same_cam = g_camids[cols] == q_camids[rows]
    if exclude is not None and exclude.numel():
        ng = g_pids.numel()
        same_cam = same_cam | torch.isin(rows * ng + cols, exclude[:, 0] * ng + exclude[:, 1])
    keep = ~same_cam

    def csr(r: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(r, torch.arange(nq + 1))

    pos_row, pos_col = rows[keep], cols[keep]
    rem_row, rem_col = rows[same_cam], cols[same_cam]
    junk = torch.nonzero(g_pids == -1).flatten()
    return _Pairs(pos_row, pos_col, csr(pos_row), rem_row, rem_col, csr(rem_row), junk)


# --------------------------------------------------------------------------- ranking


def _flatnonzero(mask: torch.Tensor) -> torch.Tensor:
    if mask.device.type == "cpu":
        # NumPy's nonzero on a bool array is several times faster than torch's on CPU.
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return torch.nonzero(mask).flatten()


@dataclass
class _RankState:
    """The matches' ranks, filled block after block of rows."""

    pairs: _Pairs
    num_gallery: int
    bins: int
    rank: torch.Tensor = field(init=False)  # (P,) int64 0-based rank of every match
    done: torch.Tensor = field(init=False)  # (P,) bool, rank filled

    def __post_init__(self) -> None:
        self.rank = torch.zeros(self.pairs.pos_row.numel(), dtype=torch.int64)
        self.done = torch.zeros(self.pairs.pos_row.numel(), dtype=torch.bool)


def _rank_rows(
    d: torch.Tensor, row0: int, st: _RankState, fbuf: torch.Tensor, ibuf: torch.Tensor
) -> None:
    """Histogram and bin-sharing candidates of rows [row0, row0 + len(d)) of the matrix.

    fbuf, ibuf: scratch of at least d's shape, d's dtype and int32.
    Writes the ranks of these rows' matches into st.rank (disjoint slices per chunk).
    """
    p = st.pairs
    c, g = d.shape
    nb = st.bins + 1  # bins per row, the last one reserved for removed and junk items
    a, b = int(p.pos_ptr[row0]), int(p.pos_ptr[row0 + c])
    if a == b:
        return  # no query of these rows has a match
    dev = d.device
    prl = (p.pos_row[a:b] - row0).to(dev)
    pcl = p.pos_col[a:b].to(dev)
    t = d[prl, pcl]  # (P,) distances of the matches
    if not bool(torch.isfinite(t).all()):
        raise ValueError("distmat must be finite at query-gallery pairs of the same identity")
    lo = torch.amin(d, dim=1)  # (c,) also catches NaN and -inf anywhere in the rows
    if not bool(torch.isfinite(lo).all()):
        raise ValueError("distmat must not contain NaN or -inf")
    tmax = torch.full((c,), float("nan"), dtype=d.dtype, device=dev)
    tmax.scatter_reduce_(0, prl, t, reduce="amax", include_self=False)
    tmax = torch.where(torch.isnan(tmax), lo + 1, tmax)  # rows without a match: any span
    finfo = torch.finfo(d.dtype)
    span = (tmax - lo).clamp_min(finfo.tiny)
    # The farthest match lands in bin bins - 2; bin bins - 1 collects everything beyond.
    s = ((st.bins - 2) / span).clamp(finfo.tiny, finfo.max / 4)  # finite and > 0

    y = torch.sub(d, lo[:, None], out=fbuf[:c])  # (c, G) >= 0
    y.mul_(s[:, None]).clamp_(0, st.bins - 1)
    bi = ibuf[:c].copy_(y)  # (c, G) int32 bin of every item, monotone in its distance
    if p.junk.numel():
        bi.index_fill_(1, p.junk.to(dev), st.bins)
    ra, rb = int(p.rem_ptr[row0]), int(p.rem_ptr[row0 + c])
    if rb > ra:
        bi[(p.rem_row[ra:rb] - row0).to(dev), p.rem_col[ra:rb].to(dev)] = st.bins
    bi += (torch.arange(c, dtype=torch.int32, device=dev) * nb)[:, None]
    flat = bi.view(-1)

    hist = torch.bincount(flat, minlength=c * nb)  # (c * nb,) int64
    below = hist.view(c, nb).cumsum(1).sub_(hist.view(c, nb)).view(-1)  # exclusive
    pkey = flat[prl * g + pcl].to(torch.int64)  # (P,) each match's bin key

    # Items sharing a bin with a match are compared exactly below. The table
    # look-up runs over the rows where a match's bin holds a non-match (every row on
    # random data, few on a trained model's); elsewhere only matches that share a bin
    # with each other are candidates.
    _, inverse, counts = torch.unique(pkey, return_inverse=True, return_counts=True)
    npos = counts[inverse]  # (P,) matches in each match's bin
    need = torch.zeros(c, dtype=torch.bool, device=dev)
    need[prl[hist[pkey] > npos]] = True
    rows_need = torch.nonzero(need).flatten()
    own = ~need[prl] & (npos > 1)
    cand = [prl[own] * g + pcl[own]]
    if rows_need.numel():
        table = torch.zeros(c * nb, dtype=torch.bool, device=dev)
        table[pkey] = True
        if rows_need.numel() == c:
            cand.append(_flatnonzero(torch.index_select(table, 0, flat)).to(dev))
        else:
            sub = bi.index_select(0, rows_need).view(-1)  # (k * G,)
            idx = _flatnonzero(torch.index_select(table, 0, sub)).to(dev)
            cand.append(rows_need[idx // g] * g + idx % g)
    cidx = torch.cat(cand)

    ckey = flat[cidx].to(torch.int64)
    cval, ccol = d.view(-1)[cidx], cidx % g
    rank = below[pkey]  # (P,) items in lower bins

    # Pair every candidate with the matches of its bin and count it where it precedes
    # them: smaller distance, or equal distance and smaller gallery index.
    key_sorted, order = torch.sort(pkey)
    lo_i = torch.searchsorted(key_sorted, ckey, side="left")
    cnt = torch.searchsorted(key_sorted, ckey, side="right") - lo_i
    rep = torch.repeat_interleave(torch.arange(ckey.numel(), device=dev), cnt)
    offs = torch.arange(rep.numel(), device=dev) - torch.repeat_interleave(
        torch.cumsum(cnt, 0) - cnt, cnt
    )
    mi = order[lo_i[rep] + offs]
    cv, tv = cval[rep], t[mi]
    before = (cv < tv) | ((cv == tv) & (ccol[rep] < pcl[mi]))
    rank.index_add_(0, mi, before.to(torch.int64))
    st.rank[a:b] = rank.cpu()
    st.done[a:b] = True


def _finish(st: _RankState, num_query: int, max_rank: int) -> EvalResult:
    if not bool(st.done.all()):
        raise RuntimeError("finish_ranking called before every row was ranked")
    return _metrics_from_ranks(st.rank, st.pairs, num_query, max_rank)


def _metrics_from_ranks(rank: torch.Tensor, p: _Pairs, num_query: int, max_rank: int) -> EvalResult:
    """AP, INP and CMC from the 0-based rank of every match (CPU tensors)."""
    rows = p.pos_row
    m = (p.pos_ptr[1:] - p.pos_ptr[:-1]).to(torch.float64)  # (Q,) matches per query
    valid = m > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise NoValidQueryError(_no_valid_message(num_query, p))
    # j = 1-based position of each match among its query's matches, in rank order.
    order = torch.argsort(rows * (rank.max() + 1) + rank)
    j = torch.empty_like(rank)
    j[order] = torch.arange(rank.numel()) - p.pos_ptr[rows[order]] + 1
    ap = torch.zeros(num_query, dtype=torch.float64)
    ap.index_add_(0, rows, j.to(torch.float64) / (rank.to(torch.float64) + 1))
    ap = torch.where(valid, ap / m.clamp_min(1), torch.full_like(ap, float("nan")))
    first = torch.full((num_query,), -1, dtype=torch.int64)
    first.scatter_reduce_(0, rows, rank, reduce="amin", include_self=False)
    last = torch.zeros(num_query, dtype=torch.int64)
    last.scatter_reduce_(0, rows, rank, reduce="amax", include_self=False)
    inp = torch.where(valid, m / (last + 1), torch.full_like(ap, float("nan")))
    hits = torch.bincount(first[valid].clamp_max(max_rank), minlength=max_rank + 1)
    cmc = torch.cumsum(hits[:max_rank], 0).to(torch.float64) / num_valid
    return EvalResult(
        mAP=float(ap[valid].mean()),
        mINP=float(inp[valid].mean()),
        cmc=cmc,
        num_queries=num_query,
        num_valid_queries=num_valid,
        average_precision=ap,
        inverse_negative_penalty=inp,
        first_match_rank=first,
    )


def _no_valid_message(num_query: int, p: _Pairs) -> str:
    n_same = int(torch.unique(p.rem_row).numel())
    msg = (
        f"no query has a match in the gallery (0 of {num_query} queries valid): every "
        "query identity is absent from the gallery"
    )
    if n_same:
        msg += (
            f", or ({n_same} queries) present only in the query's own camera, which the "
            "Market-1501 protocol removes. For single-camera data pass single_camera=True "
            "(smcr evaluate --single-camera)"
        )
    return msg


def default_chunk_rows(device: torch.device) -> int:
    """Rows ranked together: a cache-sized block on CPU, large blocks on a GPU."""
    return 64 if device.type == "cpu" else 4096


def new_rank_state(pairs: _Pairs, num_gallery: int, bins: int = _BINS) -> _RankState:
    return _RankState(pairs=pairs, num_gallery=num_gallery, bins=bins)


def rank_block(
    d: torch.Tensor,
    row0: int,
    st: _RankState,
    chunk_rows: int | None = None,
    workers: int | None = None,
) -> None:
    """Feed rows [row0, row0 + len(d)) of the distance matrix to the ranking.

    On CPU the row chunks are shared among `workers` threads (default: torch's intra-op
    thread count), each running torch single-threaded. The chunk operations are small and
    memory-bound; one intra-op team per operation would synchronise ~30 times per chunk,
    which on a machine shared with other jobs costs more than the work itself.
    """
    if not d.dtype.is_floating_point:
        raise TypeError(f"distmat must be a floating-point matrix, got {d.dtype}")
    if d.dtype in (torch.float16, torch.bfloat16):
        d = d.float()  # exact: every half value is a float32 value
    n, g = d.shape
    step = chunk_rows or default_chunk_rows(d.device)
    starts = list(range(0, n, step))
    if workers is None:
        workers = torch.get_num_threads() if d.device.type == "cpu" else 1
    workers = max(1, min(workers, len(starts)))

    def run(first: int) -> None:
        if workers > 1:
            torch.set_num_threads(1)  # per-thread setting: the caller's is untouched
        rows = min(step, n)
        fbuf = torch.empty(rows, g, dtype=d.dtype, device=d.device)
        ibuf = torch.empty(rows, g, dtype=torch.int32, device=d.device)
        for k in range(first, len(starts), workers):
            r = starts[k]
            _rank_rows(d[r : r + step].contiguous(), row0 + r, st, fbuf, ibuf)

    if workers == 1:
        run(0)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for fut in [pool.submit(run, w) for w in range(workers)]:
                fut.result()  # re-raises a worker's error here


def finish_ranking(st: _RankState, num_query: int, max_rank: int) -> EvalResult:
    return _finish(st, num_query, max_rank)


def evaluate_distmat(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    *,
    max_rank: int = 50,
    single_camera: bool = False,
    exclude: Any = None,
) -> EvalResult:
    """mAP, mINP and CMC of a (Q, G) distance matrix under the Market-1501 protocol.

    Agrees with torchreid's ``evaluate_rank(..., use_metric_cuhk03=False)`` wherever that
    is defined (rows without ties; torchreid orders ties arbitrarily, we by gallery index),
    with junk (pid -1) gallery items removed as torchreid's dataset loaders drop them.

    Args:
        distmat: (Q, G) floating tensor or NumPy array, smaller = more similar; CPU or
            CUDA. Not modified. NaN and -inf are errors, and so is inf at a match.
        q_pids, g_pids: (Q,), (G,) integer identities; -1 marks junk, 0 a distractor.
        q_camids, g_camids: (Q,), (G,) integer camera ids.
        max_rank: length of the returned CMC curve (torchreid's default 50); cut to G.
        single_camera: keep gallery items taken by the query's camera (for custom data
            shot by one camera, where the protocol would remove every match).
        exclude: (K, 2) (query index, gallery index) pairs left out of the ranking, e.g.
            each query's own image when query and gallery share files.

    Returns:
        EvalResult. Raises NoValidQueryError (a ValueError) when no query has a match.
    """
    if isinstance(distmat, np.ndarray):
        distmat = torch.from_numpy(distmat)
    if not isinstance(distmat, torch.Tensor):
        raise TypeError(
            f"distmat must be a torch.Tensor or numpy array, got {type(distmat).__name__}"
        )
    if distmat.dim() != 2:
        raise ValueError(f"distmat must be 2-D (Q, G), got shape {tuple(distmat.shape)}")
    if not distmat.dtype.is_floating_point:
        raise TypeError(f"distmat must be a floating-point matrix, got {distmat.dtype}")
    nq, ng = distmat.shape
    if nq == 0 or ng == 0:
        raise ValueError(
            f"distmat must have at least one query and one gallery item, got {(nq, ng)}"
        )
    max_rank = min(_check_max_rank(max_rank), ng)
    qp, gp, qc, gc = check_labels(q_pids, g_pids, q_camids, g_camids, nq, ng)
    pairs = identity_pairs(
        qp, gp, qc, gc, single_camera=bool(single_camera), exclude=check_exclude(exclude, nq, ng)
    )
    st = new_rank_state(pairs, ng)
    rank_block(distmat.detach(), 0, st)
    return finish_ranking(st, nq, max_rank)
