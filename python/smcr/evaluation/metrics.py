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

from .distance import numpy_to_tensor

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
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
            raise TypeError(f"k must be an int, got {type(k).__name__} {k!r}")
        if not 1 <= k <= self.cmc.numel():
            raise ValueError(f"k must be in [1, {self.cmc.numel()}], got {k}")
        return float(self.cmc[int(k) - 1])

    def _rank_any(self, k: int) -> float:
        """Rank-k accuracy for any k >= 1, from the first-match ranks (a CMC cut short by
        max_rank < k does not hold it); equal to cmc[k - 1] where that exists."""
        if k <= self.cmc.numel():
            return self.rank(k)
        first = self.first_match_rank[self.first_match_rank >= 0]
        return float(int((first < k).sum()) / first.numel()) if first.numel() else float("nan")

    @property
    def rank1(self) -> float:
        return self.rank(1)

    @property
    def rank5(self) -> float:
        """Rank-5 accuracy, whatever max_rank was (1.0 when fewer than 5 gallery items)."""
        return self._rank_any(5)

    @property
    def rank10(self) -> float:
        """Rank-10 accuracy, whatever max_rank was (1.0 when fewer than 10 gallery items)."""
        return self._rank_any(10)

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


_INT64_MAX = 2**63 - 1


def _as_int_tensor(x: Any, name: str) -> torch.Tensor:
    """`x` (tensor, NumPy array or nested sequence) as a CPU int64 tensor of any shape.

    Integral floats are accepted (ids read from a float column); NaN, inf, fractions and
    values outside int64 (which a cast would wrap, e.g. uint64 2**64 - 1 to junk -1) are
    refused naming `name`.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dtype in (torch.uint16, torch.uint32, torch.uint64):
            t = numpy_to_tensor(t.numpy().astype(np.uint64), name)
    else:
        if isinstance(x, (str, bytes)):
            raise TypeError(f"{name} must be an integer array, got {type(x).__name__} {x!r}")
        try:
            a = np.asarray(x)
        except (ValueError, TypeError) as e:  # ragged sequences
            raise ValueError(f"{name} must be a rectangular integer array ({e})") from e
        if a.dtype.kind not in "biuf":
            raise TypeError(
                f"{name} must hold integers, got {type(x).__name__} of numpy dtype {a.dtype}"
            )
        if a.dtype.kind == "u" and a.dtype.itemsize >= 8:
            if a.size and int(a.max()) > _INT64_MAX:
                raise ValueError(f"{name} must fit int64, got {int(a.max())}")
            a = a.astype(np.int64)
        t = numpy_to_tensor(a, name)
    if t.dtype == torch.uint64:
        if t.numel() and int(t.numpy().max()) > _INT64_MAX:
            raise ValueError(f"{name} must fit int64, got {int(t.numpy().max())}")
        t = numpy_to_tensor(t.numpy().astype(np.int64), name)
    if t.dtype == torch.bool or t.dtype.is_complex:
        raise TypeError(f"{name} must hold integers, got dtype {t.dtype}")
    if t.dtype.is_floating_point:
        t64 = t.double()
        # 2**63 itself is the first float64 past int64; -2**63 is exact.
        bad = (t64 != t64.round()) | ~torch.isfinite(t64) | (t64 >= 2.0**63) | (t64 < -(2.0**63))
        if bool(bad.any()):
            i = int(torch.nonzero(bad.flatten())[0])
            raise TypeError(
                f"{name} must hold integers, got {float(t64.flatten()[i])!r} (dtype {t.dtype}, "
                f"flat index {i})"
            )
        t = t64
    return t.to(torch.int64)


def _as_label_tensor(x: Any, name: str, n: int | None) -> torch.Tensor:
    t = _as_int_tensor(x, name)
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if n is not None and t.numel() != n:
        raise ValueError(f"{name} must have {n} entries, got {t.numel()}")
    return t


def check_flag(v: Any, name: str) -> bool:
    """`v` as a bool; only bool and numpy.bool_ are flags (a string such as "no" or a
    number is refused instead of being read by its truth value)."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(v).__name__} {v!r}")
    return bool(v)


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


def check_int(v: Any, name: str, low: int) -> int:
    """`v` as an int >= low; Python and NumPy integers are accepted, bools and floats not."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    if v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    return int(v)


def _check_max_rank(max_rank: Any) -> int:
    return check_int(max_rank, "max_rank", 1)


@dataclass(frozen=True)
class _Pairs:
    """The sparse (query, gallery) pairs that share an identity, in CSR by query row.

    pos_*: the matches (kept, same identity); rem_*: removed pairs (same identity and
    camera, and the excluded pairs of any identity); junk: gallery columns of identity -1.
    Rows ascending, columns ascending within a row; *_ptr are (Q + 1,) row pointers.
    removed_id_queries: queries that lost a pair of their own identity (for the message
    when no query is valid).
    """

    pos_row: torch.Tensor
    pos_col: torch.Tensor
    pos_ptr: torch.Tensor
    rem_row: torch.Tensor
    rem_col: torch.Tensor
    rem_ptr: torch.Tensor
    junk: torch.Tensor
    removed_id_queries: int = 0


def check_exclude(exclude: Any, num_query: int, num_gallery: int,
                  name: str = "exclude") -> torch.Tensor | None:
    """`exclude` as a (K, 2) CPU int64 tensor of (query, gallery) indices, or None.

    Accepts a (K, 2) array or tensor, a sequence of pairs, or an empty sequence; errors name
    the argument `name`.
    """
    if exclude is None:
        return None
    t = _as_int_tensor(exclude, name)
    if t.numel() == 0:
        return torch.empty(0, 2, dtype=torch.int64)
    if t.dim() != 2 or t.shape[1] != 2:
        raise ValueError(
            f"{name} must be (K, 2) (query index, gallery index) pairs, got shape {tuple(t.shape)}"
        )
    bad = (t < 0).any(dim=1) | (t[:, 0] >= num_query) | (t[:, 1] >= num_gallery)
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"{name} pairs must index [0, {num_query}) queries and [0, {num_gallery}) gallery "
            f"items, got {tuple(t[k].tolist())} at row {k}"
        )
    return t.contiguous()


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
    index pairs removed as well (a query's own image in the gallery), whatever the
    gallery item's identity."""
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
    removed_id_queries = int(torch.unique(rem_row).numel())
    if exclude is not None and exclude.numel():
        # Excluded pairs of another identity leave the ranked list too (junk columns are
        # removed for every query already).
        er, ec = exclude[:, 0], exclude[:, 1]
        other = (g_pids[ec] != q_pids[er]) & (g_pids[ec] != -1)
        if bool(other.any()):
            ng = g_pids.numel()
            key = torch.unique(torch.cat((rem_row * ng + rem_col, er[other] * ng + ec[other])))
            rem_row, rem_col = key // ng, key % ng  # sorted by row, then column
    junk = torch.nonzero(g_pids == -1).flatten()
    return _Pairs(
        pos_row,
        pos_col,
        csr(pos_row),
        rem_row,
        rem_col,
        csr(rem_row),
        junk,
        removed_id_queries,
    )


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
    lo = torch.amin(d, dim=1)  # (c,) catches NaN and -inf anywhere in the rows
    if not bool(torch.isfinite(lo).all()):
        # Checked in every row chunk, with or without matches, so that the answer does
        # not depend on how rows are split into chunks.
        raise ValueError("distmat must not contain NaN or -inf")
    a, b = int(p.pos_ptr[row0]), int(p.pos_ptr[row0 + c])
    if a == b:
        return  # no query of these rows has a match
    dev = d.device
    prl = (p.pos_row[a:b] - row0).to(dev)
    pcl = p.pos_col[a:b].to(dev)
    t = d[prl, pcl]  # (P,) distances of the matches
    if not bool(torch.isfinite(t).all()):
        raise ValueError("distmat must be finite at query-gallery pairs of the same identity")
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
    n_same = p.removed_id_queries
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
        distmat = numpy_to_tensor(distmat, "distmat")
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
    single_camera = check_flag(single_camera, "single_camera")
    qp, gp, qc, gc = check_labels(q_pids, g_pids, q_camids, g_camids, nq, ng)
    pairs = identity_pairs(
        qp, gp, qc, gc, single_camera=single_camera, exclude=check_exclude(exclude, nq, ng)
    )
    st = new_rank_state(pairs, ng)
    rank_block(distmat.detach(), 0, st)
    return finish_ranking(st, nq, max_rank)
