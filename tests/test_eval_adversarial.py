"""The public evaluation API (`smcr.evaluation`) under adversarial input: re-ranking with a
query's own image in the gallery, a plain NumPy oracle on random cases (junk, distractors,
absent identities, exclusions, ties), and inputs that used to give wrong answers or raw
tracebacks from inside NumPy / torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from smcr.evaluation import (
    EvalResult,
    NoValidQueryError,
    distance_matrix,
    evaluate,
    evaluate_distmat,
    jaccard_query_gallery,
    parse_labels,
    re_ranking,
)
from smcr.evaluation import metrics as metrics_mod
from smcr.evaluation.distance import distance_blocks

# --------------------------------------------------------------------------- oracle


def _reference(dist, q_pids, g_pids, q_cams, g_cams, max_rank, single_camera=False, exclude=()):
    """Market-1501 protocol, one query at a time, the obvious way.

    For query i: drop gallery junk (pid -1), drop same pid and same camera (unless
    single_camera), drop the excluded (i, j) pairs; sort the rest by (distance, index);
    the items with the query's pid are its matches. Returns (AP (Q,), first rank (Q,),
    mAP, mINP, cmc) with NaN / -1 for queries without a match.
    """
    dist = np.asarray(dist, dtype=np.float64)
    nq, ng = dist.shape
    excluded = {(int(i), int(j)) for i, j in exclude}
    ap, inp, first = np.full(nq, np.nan), np.full(nq, np.nan), np.full(nq, -1)
    for i in range(nq):
        keep = [
            j
            for j in range(ng)
            if g_pids[j] != -1
            and (i, j) not in excluded
            and (single_camera or not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i]))
        ]
        keep.sort(key=lambda j: (dist[i, j], j))
        hit = np.array([g_pids[j] == q_pids[i] for j in keep], dtype=bool)
        if q_pids[i] == -1 or not hit.any():
            continue
        ranks = np.flatnonzero(hit)
        ap[i] = np.mean(np.arange(1, len(ranks) + 1) / (ranks + 1))
        inp[i] = len(ranks) / (ranks[-1] + 1)
        first[i] = ranks[0]
    valid = first >= 0
    max_rank = min(max_rank, ng)
    cmc = np.array([np.mean(first[valid] < k) for k in range(1, max_rank + 1)])
    return ap, first, float(np.mean(ap[valid])), float(np.mean(inp[valid])), cmc


def _assert_matches_reference(r: EvalResult, ref) -> None:
    ap, first, m_ap, m_inp, cmc = ref
    np.testing.assert_array_equal(r.first_match_rank.numpy(), first)
    np.testing.assert_allclose(r.average_precision.numpy(), ap, rtol=0, atol=1e-12)
    assert r.mAP == pytest.approx(m_ap, abs=1e-12)
    assert r.mINP == pytest.approx(m_inp, abs=1e-12)
    np.testing.assert_allclose(r.cmc.numpy(), cmc, rtol=0, atol=1e-12)
    assert r.num_valid_queries == int((first >= 0).sum())


def _case(seed, nq=45, ng=130, nid=9, ncam=3, ties=False):
    rng = np.random.default_rng(seed)
    qp = rng.integers(-1, nid + 3, nq)  # -1 junk query, ids above nid absent from the gallery
    gp = rng.integers(-1, nid + 1, ng)  # -1 junk, 0 distractor
    qc, gc = rng.integers(0, ncam, nq), rng.integers(0, ncam, ng)
    dist = rng.random((nq, ng))
    if ties:
        dist = np.round(dist * 6) / 6
    return rng, dist, qp, gp, qc, gc


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_match_the_plain_reference(seed):
    rng, dist, qp, gp, qc, gc = _case(seed, ties=seed % 2 == 1)
    single = seed % 3 == 2
    exclude = np.stack([rng.integers(0, 45, 60), rng.integers(0, 130, 60)], axis=1)
    exclude = np.concatenate([exclude, exclude[:5]])  # repeated pairs are harmless
    ref = _reference(dist, qp, gp, qc, gc, 20, single, exclude)
    r = evaluate_distmat(dist, qp, gp, qc, gc, max_rank=20, single_camera=single, exclude=exclude)
    _assert_matches_reference(r, ref)
    assert r.num_queries == 45 and 0 < r.num_valid_queries < 45
    # The same through the features path, in blocks of rows, from float64 features.
    feats_q = rng.standard_normal((45, 6))
    feats_g = rng.standard_normal((130, 6))
    d = distance_matrix(feats_q, feats_g, "euclidean").numpy()
    r = evaluate(
        feats_q,
        feats_g,
        qp,
        gp,
        qc,
        gc,
        metric="euclidean",
        max_rank=20,
        single_camera=single,
        exclude=exclude,
        block_rows=7,
    )
    _assert_matches_reference(r, _reference(d, qp, gp, qc, gc, 20, single, exclude))


def test_absent_identities_and_junk_queries_are_skipped_and_counted():
    dist = np.array([[0.3, 0.1, 0.2], [0.1, 0.2, 0.3], [0.5, 0.4, 0.6], [0.9, 0.8, 0.7]])
    # Query 1 has pid 7 (absent), query 2 is junk (-1), query 3's only image is same-camera.
    r = evaluate_distmat(dist, [1, 7, -1, 2], [1, 2, 1], [0, 0, 0, 1], [1, 1, 1], max_rank=3)
    assert r.num_queries == 4 and r.num_valid_queries == 1
    assert r.first_match_rank.tolist() == [1, -1, -1, -1]
    assert r.mAP == pytest.approx(0.5 * (1 / 2 + 2 / 3))


def test_single_gallery_item_and_huge_max_rank():
    r = evaluate(
        torch.randn(3, 4), torch.randn(1, 4), [1, 2, 1], [1], [0, 0, 0], [1], max_rank=10**12
    )
    assert r.cmc.tolist() == [1.0] and r.num_valid_queries == 2
    assert (r.mAP, r.rank1, r.rank5, r.rank10) == (1.0, 1.0, 1.0, 1.0)


# --------------------------------------------------------------------------- re-ranking


def _clustered(seed, n, nid, dim=12, noise=0.8):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(nid, dim, generator=g)
    pids = torch.randint(0, nid, (n,), generator=g)
    return centers[pids] + noise * torch.randn(n, dim, generator=g), pids


def test_rerank_duplicate_gallery_copy_is_not_a_neighbour():
    """A query's own image in the gallery is one point of the re-ranking graph: the
    Jaccard distances of queries X[S] to gallery X are, on the other gallery items, bit
    for bit those against the gallery without the duplicate files (the same joint set of
    images), and on a duplicate column those to the query point it stands for."""
    x, pids = _clustered(0, 70, 8)
    s = torch.nonzero(pids == pids[0]).flatten()[:5]  # one identity: their encodings overlap
    rest = torch.tensor([j for j in range(70) if j not in s.tolist()])
    same = torch.stack([torch.arange(5), s], dim=1)
    jac = jaccard_query_gallery(x[s], x, k1=9, k2=3, same_image=same)
    assert torch.equal(jac[:, rest], jaccard_query_gallery(x[s], x[rest], k1=9, k2=3))
    # Column s[b] is query point b: the Jaccard distance of images s[a] and s[b] on the
    # joint set of the 70 distinct images.
    joint = torch.cat([x[s], x[rest]])
    overlap = 0
    for a in range(5):
        b = (a + 2) % 5
        want = float(_pair_jaccard(joint, a, b, k1=9, k2=3))
        assert float(jac[a, s[b]]) == pytest.approx(want, abs=1e-6)
        overlap += want < 1
    assert overlap >= 3


def _pair_jaccard(x: torch.Tensor, i: int, j: int, k1: int, k2: int) -> torch.Tensor:
    """Jaccard distance of images i and j on the joint set x, image i as the only query."""
    others = [t for t in range(x.shape[0]) if t != i]
    jac = jaccard_query_gallery(x[i : i + 1], x[others], k1=k1, k2=k2)
    return jac[0, others.index(j)]


@pytest.mark.parametrize("single_camera", [False, True])
def test_rerank_folder_against_itself_equals_each_query_against_the_rest(single_camera):
    """A set evaluated against itself (each query's own file excluded) with re-ranking
    ranks every query exactly as that query alone against the other images of the set:
    the re-ranking graph holds each image once. The old graph held each image twice (every
    neighbourhood polluted by copies) and moved per-query AP by up to 0.47 here."""
    n = 40
    x, pids = _clustered(1, n, 5, noise=1.0)
    cams = torch.arange(n) % 3
    kw = dict(rerank=True, k1=8, k2=3, single_camera=single_camera)
    r_all = evaluate(x, x, pids, pids, cams, cams, same_image=[(i, i) for i in range(n)], **kw)
    valid = 0
    for i in range(0, n, 4):  # every 4th query: each one builds a graph (~0.1 s)
        rest = torch.tensor([j for j in range(n) if j != i])
        one = (x[i : i + 1], x[rest], pids[i : i + 1], pids[rest], cams[i : i + 1], cams[rest])
        try:
            r_i = evaluate(*one, **kw)
        except NoValidQueryError:
            assert int(r_all.first_match_rank[i]) == -1
            continue
        valid += 1
        assert int(r_i.first_match_rank[0]) == int(r_all.first_match_rank[i])
        assert float(r_i.average_precision[0]) == pytest.approx(
            float(r_all.average_precision[i]), abs=1e-12
        )
    assert valid == int((r_all.first_match_rank[::4] >= 0).sum()) >= 5


def test_rerank_whole_set_against_itself():
    """The folder-against-itself case: re-ranked distances of X against X (diagonal
    excluded) are those of the graph over X alone, each row as a single query would see."""
    x, pids = _clustered(2, 40, 5)
    diag = [(i, i) for i in range(40)]
    out = re_ranking(x, x, k1=7, k2=3, lambda_value=0.3, same_image=diag)
    orig = distance_matrix(x, x)
    for i in (0, 21, 39):
        others = [t for t in range(40) if t != i]
        jac_i = jaccard_query_gallery(x[i : i + 1], x[others], k1=7, k2=3)[0]
        want = 0.7 * jac_i + 0.3 * orig[i, others]
        torch.testing.assert_close(out[i, others], want, rtol=0, atol=1e-6)
    cams = torch.arange(40) % 2
    r = evaluate(x, x, pids, pids, cams, cams, rerank=True, k1=7, k2=3, same_image=diag)
    r2 = evaluate_distmat(out, pids, pids, cams, cams, exclude=diag)
    assert r.mAP == r2.mAP and torch.equal(r.cmc, r2.cmc)
    # k1 is bounded by the distinct images (40), not by 80 points.
    with pytest.raises(ValueError, match="k1 must be < N - 1 = 39"):
        evaluate(x, x, pids, pids, cams, cams, rerank=True, k1=39, k2=3, same_image=diag)


def test_rerank_refuses_same_image_pairs_of_different_images():
    x, pids = _clustered(3, 20, 4)
    cams = torch.arange(20) % 2
    with pytest.raises(ValueError, match="query 0 and gallery item 1 have features"):
        evaluate(x, x, pids, pids, cams, cams, rerank=True, k1=5, k2=2, same_image=[(0, 1)])
    # `exclude` keeps its meaning with rerank: pairs left out of the ranking, of any images
    # (e.g. frames of the query's own tracklet), not merged in the graph
    r = evaluate(x, x, pids, pids, cams, cams, rerank=True, k1=5, k2=2, exclude=[(0, 1)])
    want = evaluate_distmat(re_ranking(x, x, k1=5, k2=2), pids, pids, cams, cams,
                            exclude=[(0, 1)])
    assert r.mAP == want.mAP and torch.equal(r.cmc, want.cmc)
    with pytest.raises(ValueError, match="same_image"):
        re_ranking(x, x, k1=5, k2=2, same_image=[(2, 2), (3, 4)])
    # Rounding noise between two extractions of one file is the same image.
    noisy = x + 1e-4 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    out = re_ranking(x, noisy, k1=5, k2=2, same_image=[(i, i) for i in range(20)])
    assert out.shape == (20, 20) and bool(torch.isfinite(out).all())


def test_rerank_numeric_arguments_and_original_dist():
    x, _ = _clustered(4, 30, 4)
    q, g = x[:8], x[8:]
    ref = re_ranking(q, g, k1=6, k2=2, lambda_value=0.25)
    np_args = re_ranking(q, g, k1=np.int64(6), k2=np.int32(2), lambda_value=np.float32(0.25))
    torch.testing.assert_close(np_args, ref, rtol=0, atol=1e-7)
    # original_dist as a NumPy array; +inf stays +inf and lambda 0 ignores it (no 0 * inf NaN).
    od = distance_matrix(q, g).numpy().copy()
    od[0, 0] = np.inf
    out = re_ranking(q, g, k1=6, k2=2, lambda_value=0.0, original_dist=od)
    torch.testing.assert_close(out, jaccard_query_gallery(q, g, k1=6, k2=2))
    assert re_ranking(q, g, k1=6, k2=2, original_dist=od)[0, 0] == float("inf")
    od[1, 1] = np.nan
    with pytest.raises(ValueError, match="original_dist must not contain NaN"):
        re_ranking(q, g, k1=6, k2=2, original_dist=od)
    with pytest.raises(ValueError, match=r"original_dist must be \(8, 22\)"):
        re_ranking(q, g, k1=6, k2=2, original_dist=od.T)
    with pytest.raises(TypeError, match="lambda_value"):
        re_ranking(q, g, k1=6, k2=2, lambda_value="0.3")
    with pytest.raises(ValueError, match="lambda_value"):
        re_ranking(q, g, k1=6, k2=2, lambda_value=float("nan"))


# --------------------------------------------------------------------------- results


def test_rank5_and_rank10_do_not_depend_on_max_rank():
    _, dist, qp, gp, qc, gc = _case(7)
    full = evaluate_distmat(dist, qp, gp, qc, gc)
    short = evaluate_distmat(dist, qp, gp, qc, gc, max_rank=1)
    assert short.cmc.numel() == 1
    assert (short.rank1, short.rank5, short.rank10) == (full.rank1, full.rank5, full.rank10)
    assert full.rank5 > full.rank1  # a case where the two differ
    assert short.as_dict()["rank10"] == full.rank10
    with pytest.raises(TypeError, match="k must be an int"):
        full.rank(2.0)
    with pytest.raises(TypeError, match="k must be an int"):
        full.rank(True)


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    "bad, err, match",
    [
        (np.array([1.0, np.inf, 2.0, 1.0]), TypeError, "q_pids must hold integers, got inf"),
        (np.array([1.0, 1e30, 2.0, 1.0]), TypeError, "q_pids must hold integers"),
        (np.array([1.0, np.nan, 2.0, 1.0]), TypeError, "q_pids must hold integers"),
        (np.array([1, 2**64 - 1, 2, 1], dtype=np.uint64), ValueError, "q_pids must fit int64"),
        (torch.tensor([1, 2**63, 2, 1], dtype=torch.uint64), ValueError, "must fit int64"),
        (["1", "2", "3", "4"], TypeError, "q_pids must hold integers"),
        ([[1, 2], [3]], ValueError, "q_pids"),
    ],
)
def test_labels_that_do_not_fit_int64_are_refused(bad, err, match):
    with pytest.raises(err, match=match):
        evaluate_distmat(np.random.rand(4, 3), bad, [1, 2, 1], [0] * 4, [1] * 3)


def test_integral_float_and_unsigned_labels_are_accepted():
    _, dist, qp, gp, qc, gc = _case(8)
    r = evaluate_distmat(dist, qp, gp, qc, gc)
    r2 = evaluate_distmat(
        dist,
        qp.astype(np.float32),
        gp.astype(np.float64),
        qc.astype(np.uint64),
        torch.from_numpy(gc).to(torch.uint8),
    )
    assert r.mAP == r2.mAP


@pytest.mark.parametrize("flag", ["single_camera", "rerank"])
def test_flags_must_be_bools(flag):
    q, g = torch.randn(4, 8), torch.randn(10, 8)
    with pytest.raises(TypeError, match=f"{flag} must be a bool"):
        evaluate(q, g, [1, 2, 1, 2], [1, 2] * 5, [0] * 4, [1] * 10, **{flag: "no"})
    r = evaluate(q, g, [1, 2, 1, 2], [1, 2] * 5, [0] * 4, [1] * 10, **{flag: np.bool_(False)})
    assert r.num_valid_queries == 4


@pytest.mark.parametrize(
    "exclude, err, match",
    [
        ([(0, 1, 2), (1, 2, 3)], ValueError, r"exclude must be \(K, 2\).*shape \(2, 3\)"),
        ([(0.5, 1)], TypeError, "exclude must hold integers, got 0.5"),
        ("01", TypeError, "exclude must be an integer array"),
        ([(0, 1), (3, 9)], ValueError, r"got \(3, 9\) at row 1"),
    ],
)
def test_malformed_exclude_is_refused(exclude, err, match):
    with pytest.raises(err, match=match):
        evaluate_distmat(
            np.random.rand(4, 6), [1, 2, 1, 2], [1, 2] * 3, [0] * 4, [1] * 6, exclude=exclude
        )


# --------------------------------------------------------------------------- arrays


def test_numpy_views_and_byte_orders_are_accepted():
    rng = np.random.default_rng(9)
    qf, gf = rng.standard_normal((6, 5)), rng.standard_normal((12, 5))
    labels = ([1, 2, 3, 1, 2, 3], [1, 2, 3] * 4, [0] * 6, [1] * 12)
    want = evaluate(qf, gf, *labels)
    got = evaluate(qf[::-1].copy()[::-1], gf.astype(">f8"), *labels)  # negative strides
    assert got.mAP == want.mAP
    d = distance_matrix(qf, gf).numpy()
    assert evaluate_distmat(d[:, ::-1][:, ::-1], *labels).mAP == want.mAP
    assert evaluate_distmat(d.astype(">f8"), *labels).mAP == want.mAP
    assert evaluate(qf.T.copy().T.astype(np.float16), gf, *labels).num_valid_queries == 6
    with pytest.raises(TypeError, match="distmat must hold numbers"):
        evaluate_distmat(d.astype(object), *labels)


def test_non_finite_features_are_named():
    q, g = torch.randn(4, 8), torch.randn(10, 8)
    q[2, 3] = float("nan")
    labels = ([1, 2, 1, 2], [1, 2] * 5, [0] * 4, [1] * 10)
    with pytest.raises(ValueError, match=r"query_features must be finite; rows \[2\]"):
        evaluate(q, g, *labels)
    g[7, 0] = float("inf")
    with pytest.raises(ValueError, match=r"gallery_features must be finite; rows \[7\]"):
        evaluate(torch.randn(4, 8), g, *labels, rerank=True, k1=3, k2=2)
    with pytest.raises(ValueError, match="at least one row and one column"):
        evaluate(torch.randn(4, 0), torch.randn(10, 0), *labels)


@pytest.mark.parametrize("scale", [1e20, 1e-20, 1e-13])
def test_cosine_is_scale_free_in_float32(scale):
    q, g = torch.randn(5, 8), torch.randn(9, 8)
    d = distance_matrix(q, g)
    torch.testing.assert_close(distance_matrix(q * scale, g), d, rtol=0, atol=1e-6)
    torch.testing.assert_close(distance_matrix(q, g * scale), d, rtol=0, atol=1e-6)


def test_euclidean_overflow_is_an_error_not_a_ranking():
    q, g = torch.randn(5, 8) * 3e19, torch.randn(9, 8)
    with pytest.raises(ValueError, match="overflow torch.float32.*query_features"):
        evaluate(q, g, [1] * 5, [1] * 9, [0] * 5, [1] * 9, metric="euclidean")
    r = evaluate(q.double(), g.double(), [1] * 5, [1] * 9, [0] * 5, [1] * 9, metric="euclidean")
    assert r.num_valid_queries == 5


def test_nan_rows_are_refused_whatever_the_row_chunking():
    """NaN in rows of queries without a match used to pass when a whole row chunk (64
    rows on CPU) had no match, and fail otherwise."""
    rng = np.random.default_rng(10)
    nq, ng = 130, 20
    qp = np.where(np.arange(nq) // 64 == 1, 99, 1)  # rows 64..127: absent identity
    dist = rng.random((nq, ng))
    dist[70, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_distmat(dist, qp, [1] * ng, [0] * nq, [1] * ng)
    labels = [torch.as_tensor(v) for v in (qp, [1] * ng, [0] * nq, [1] * ng)]
    pairs = metrics_mod.identity_pairs(*labels)
    st = metrics_mod.new_rank_state(pairs, ng)
    with pytest.raises(ValueError, match="NaN"):
        metrics_mod.rank_block(torch.from_numpy(dist), 0, st, chunk_rows=64, workers=1)


def test_evaluate_numpy_integer_block_rows_and_max_rank():
    q, g = torch.randn(6, 4), torch.randn(9, 4)
    labels = ([1, 2, 3] * 2, [1, 2, 3] * 3, [0] * 6, [1] * 9)
    r = evaluate(q, g, *labels, block_rows=np.int64(2), max_rank=np.int32(4))
    assert r.mAP == evaluate(q, g, *labels).mAP and r.cmc.numel() == 4
    with pytest.raises(ValueError, match="block_rows"):
        evaluate(q, g, *labels, block_rows=0, rerank=True, k1=3, k2=2)
    with pytest.raises(ValueError, match="block_rows must be >= 1, got 0"):
        next(distance_blocks(q, g, block_rows=0))  # was range()'s "arg 3 must not be zero"


# --------------------------------------------------------------------------- file names


def test_parse_labels_errors_name_the_problem():
    with pytest.raises(ValueError, match="not a valid regular expression"):
        parse_labels(["0001_c1.jpg"], "([")
    with pytest.raises(TypeError, match="list of file names"):
        parse_labels("0001_c1s1_000151_01.jpg")
    with pytest.raises(ValueError, match="must capture integer pid and camera, got 'x'"):
        parse_labels(["x_cA.jpg"], r"(\w)_c(\w)")
    assert parse_labels(["0002_c1s1_000451_03.jpg", "-1_c3s1_0.jpg"]) == ([2, -1], [1, 3])
