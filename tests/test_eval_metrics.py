"""Sort-free mAP / mINP / CMC against hand-computed cases, the NumPy argsort oracle and
torchreid 0.2.5's `evaluate_rank` (a test-only dependency: pip install --no-deps
torchreid==0.2.5)."""

import importlib.util
import os
import sys
import warnings

import numpy as np
import pytest
import torch
from smcr.evaluation import (
    NoValidQueryError,
    distance_matrix,
    evaluate,
    evaluate_distmat,
    evaluate_reference,
)


def _torchreid_rank():
    """torchreid 0.2.5's metrics/rank.py, loaded from its file: importing the package
    itself needs torchvision and OpenCV, which smcr does not install."""
    spec = importlib.util.find_spec("torchreid")
    if spec is None or spec.origin is None:
        pytest.fail(
            "torchreid 0.2.5 is a test dependency of smcr's evaluation: "
            "pip install --no-deps torchreid==0.2.5"
        )
    path = os.path.join(os.path.dirname(spec.origin), "reid", "metrics", "rank.py")
    saved = sys.modules.get("torchreid", "absent")
    sys.modules["torchreid"] = None  # its Cython import fails fast instead of importing it all
    try:
        mspec = importlib.util.spec_from_file_location("_torchreid_rank", path)
        mod = importlib.util.module_from_spec(mspec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mspec.loader.exec_module(mod)
    finally:
        if saved == "absent":
            del sys.modules["torchreid"]
        else:
            sys.modules["torchreid"] = saved
    return mod


@pytest.fixture(scope="module")
def torchreid_rank():
    return _torchreid_rank()


def _random_case(rng, nq, ng, nid, ncam, dtype=np.float32):
    q_pids = rng.integers(1, nid + 4, nq)  # pids above nid are absent from the gallery
    g_pids = rng.integers(-1, nid + 1, ng)  # -1 junk, 0 distractor
    q_cams = rng.integers(0, ncam, nq)
    g_cams = rng.integers(0, ncam, ng)
    dist = rng.random((nq, ng)).astype(dtype)
    return dist, q_pids, g_pids, q_cams, g_cams


# --------------------------------------------------------------------------- hand cases


def test_toy_case_by_hand():
    # One query (pid 1, camera 0). Gallery, by distance:
    #   junk (0.01, removed), pid 1 cam 0 (0.05, removed: same id and camera),
    #   pid 2 (0.1) rank 0, pid 1 cam 1 (0.2) rank 1 MATCH, pid 0 (0.3) rank 2,
    #   pid 1 cam 2 (0.5) rank 3 MATCH.
    # AP = (1/2)(1/2 + 2/4) = 0.5; INP = 2/4; first match at rank 1.
    g_pids = [1, 2, 1, 1, -1, 0]
    g_cams = [1, 1, 0, 2, 0, 3]
    dist = torch.tensor([[0.2, 0.1, 0.05, 0.5, 0.01, 0.3]])
    r = evaluate_distmat(dist, [1], g_pids, [0], g_cams, max_rank=5)
    assert r.mAP == pytest.approx(0.5, abs=1e-12)
    assert r.mINP == pytest.approx(0.5, abs=1e-12)
    assert r.cmc.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert r.first_match_rank.tolist() == [1]
    assert r.num_valid_queries == 1


def test_toy_case_two_queries_one_invalid():
    # Query 0 (pid 3) has its only gallery image at rank 0 -> AP 1, INP 1.
    # Query 1 (pid 9) is absent from the gallery -> skipped.
    dist = torch.tensor([[0.1, 0.4, 0.3], [0.5, 0.2, 0.9]])
    r = evaluate_distmat(dist, [3, 9], [3, 4, 5], [0, 0], [1, 1, 1], max_rank=3)
    assert (r.mAP, r.mINP, r.rank1) == (1.0, 1.0, 1.0)
    assert r.num_queries == 2 and r.num_valid_queries == 1
    assert torch.isnan(r.average_precision[1]) and r.first_match_rank[1] == -1


def test_ties_are_broken_by_gallery_index():
    # All distances equal: the ranked list is the gallery order 0, 1, 2, 3.
    # Matches (pid 1, other camera) at gallery indices 1 and 3 -> ranks 1 and 3.
    dist = torch.zeros(1, 4)
    r = evaluate_distmat(dist, [1], [2, 1, 0, 1], [0], [1, 1, 1, 1], max_rank=4)
    assert r.mAP == pytest.approx(0.5 * (1 / 2 + 2 / 4))
    assert r.first_match_rank.tolist() == [1]
    assert r.mINP == pytest.approx(2 / 4)


def test_distractors_are_kept_and_junk_removed():
    dist = torch.tensor([[0.1, 0.2, 0.3]])
    # pid 0 distractor before the match counts; junk -1 before it does not.
    r0 = evaluate_distmat(dist, [1], [0, 1, 2], [0], [1, 1, 1])
    rj = evaluate_distmat(dist, [1], [-1, 1, 2], [0], [1, 1, 1])
    assert r0.mAP == pytest.approx(0.5) and rj.mAP == pytest.approx(1.0)


# --------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_torchreid_evaluate_rank(torchreid_rank, seed):
    rng = np.random.default_rng(seed)
    nq, ng = int(rng.integers(40, 200)), int(rng.integers(300, 900))
    dist, qp, gp, qc, gc = _random_case(
        rng,
        nq,
        ng,
        nid=int(rng.integers(10, 40)),
        ncam=4,
        dtype=np.float64 if seed % 2 else np.float32,
    )
    # torchreid's dataset loaders drop junk (-1) images; its evaluator never sees them.
    keep = gp != -1
    cmc_tr, map_tr = torchreid_rank.evaluate_rank(
        dist[:, keep], qp, gp[keep], qc, gc[keep], max_rank=20, use_cython=False
    )
    r = evaluate_distmat(dist, qp, gp, qc, gc, max_rank=20)
    assert abs(r.mAP - map_tr) <= 1e-6
    np.testing.assert_allclose(r.cmc.numpy(), cmc_tr, rtol=0, atol=1e-6)
    assert 0 < r.num_valid_queries < nq  # some queries have no match


def test_agrees_with_torchreid_on_features_path(torchreid_rank):
    rng = np.random.default_rng(7)
    nq, ng, d = 150, 700, 32
    _, qp, gp, qc, gc = _random_case(rng, nq, ng, nid=30, ncam=6)
    centers = rng.standard_normal((34, d))
    qf = torch.from_numpy(centers[qp] + rng.standard_normal((nq, d))).float()
    gf = torch.from_numpy(centers[np.maximum(gp, 0)] + rng.standard_normal((ng, d))).float()
    for metric in ("cosine", "euclidean"):
        dist = distance_matrix(qf, gf, metric).numpy()
        keep = gp != -1
        cmc_tr, map_tr = torchreid_rank.evaluate_rank(
            dist[:, keep], qp, gp[keep], qc, gc[keep], max_rank=10, use_cython=False
        )
        r = evaluate(qf, gf, qp, gp, qc, gc, metric=metric, max_rank=10, block_rows=37)
        assert abs(r.mAP - map_tr) <= 1e-6
        np.testing.assert_allclose(r.cmc.numpy(), cmc_tr, atol=1e-6)
        assert 0.2 < r.mAP < 1.0  # a non-trivial task


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("single_camera", [False, True])
def test_agrees_with_argsort_reference_with_ties(seed, single_camera):
    rng = np.random.default_rng(100 + seed)
    dist, qp, gp, qc, gc = _random_case(rng, 130, 500, nid=15, ncam=3)
    dist = np.round(dist * 8) / 8  # 9 distinct values: ties everywhere
    r = evaluate_distmat(dist, qp, gp, qc, gc, max_rank=30, single_camera=single_camera)
    ref = evaluate_reference(dist, qp, gp, qc, gc, max_rank=30, single_camera=single_camera)
    assert r.mAP == pytest.approx(ref["mAP"], abs=1e-12)
    assert r.mINP == pytest.approx(ref["mINP"], abs=1e-12)
    np.testing.assert_allclose(r.cmc.numpy(), ref["cmc"], atol=1e-12)
    np.testing.assert_array_equal(r.first_match_rank.numpy(), ref["first_match_rank"])
    np.testing.assert_allclose(r.average_precision.numpy(), ref["average_precision"], atol=1e-12)


def test_half_precision_and_wide_ranges():
    rng = np.random.default_rng(3)
    dist, qp, gp, qc, gc = _random_case(rng, 70, 300, nid=10, ncam=3)
    d16 = torch.from_numpy(dist).half()
    r = evaluate_distmat(d16, qp, gp, qc, gc)
    ref = evaluate_reference(d16.float().numpy(), qp, gp, qc, gc)
    assert r.mAP == pytest.approx(ref["mAP"], abs=1e-12)
    # A far outlier and huge offsets only coarsen the bins; the answer stays exact.
    wide = dist.astype(np.float64) * 1e-3 + 1e6
    gp = gp.copy()
    gp[:2] = 0  # distractors at the extremes (inf is refused only at a match)
    wide[:, 0] = -1e30
    wide[:, 1] = np.inf
    r = evaluate_distmat(wide, qp, gp, qc, gc)
    ref = evaluate_reference(wide, qp, gp, qc, gc)
    assert r.mAP == pytest.approx(ref["mAP"], abs=1e-12)
    np.testing.assert_array_equal(r.first_match_rank.numpy(), ref["first_match_rank"])


def test_result_accessors():
    rng = np.random.default_rng(5)
    dist, qp, gp, qc, gc = _random_case(rng, 50, 200, nid=8, ncam=3)
    r = evaluate_distmat(dist, qp, gp, qc, gc, max_rank=10)
    assert r.cmc.shape == (10,) and r.rank10 == float(r.cmc[9])
    d = r.as_dict()
    assert set(d) >= {"mAP", "mINP", "rank1", "rank5", "rank10"}
    assert "mAP" in str(r)
    with pytest.raises(ValueError, match="k must be"):
        r.rank(11)


# --------------------------------------------------------------------------- errors


def test_single_camera_data_gives_a_typed_error_and_an_option():
    dist = torch.rand(4, 10)
    qp, gp = [1, 2, 1, 2], [1, 2] * 5
    with pytest.raises(NoValidQueryError, match="single_camera=True"):
        evaluate_distmat(dist, qp, gp, [0] * 4, [0] * 10)
    assert issubclass(NoValidQueryError, ValueError)
    r = evaluate_distmat(dist, qp, gp, [0] * 4, [0] * 10, single_camera=True)
    assert r.num_valid_queries == 4


def test_no_identity_in_gallery():
    with pytest.raises(NoValidQueryError, match="0 of 2 queries"):
        evaluate_distmat(torch.rand(2, 3), [5, 6], [1, 2, 3], [0, 0], [1, 1, 1])


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(distmat=torch.rand(3)), ValueError, "distmat must be 2-D"),
        (dict(distmat=torch.ones(2, 4, dtype=torch.int64)), TypeError, "floating-point"),
        (dict(distmat=[[0.1]]), TypeError, "distmat must be"),
        (dict(q_pids=[1, 2, 3]), ValueError, "q_pids must have 2 entries"),
        (dict(g_camids=[[0, 1, 0, 1]]), ValueError, "g_camids must be 1-D"),
        (dict(g_pids=[0.5, 1, 1, 2]), TypeError, "g_pids must hold integers"),
        (dict(max_rank=0), ValueError, "max_rank must be >= 1"),
        (dict(max_rank=2.5), TypeError, "max_rank must be an int"),
    ],
)
def test_bad_arguments_are_named(kwargs, err, match):
    args = dict(
        distmat=torch.rand(2, 4),
        q_pids=[1, 2],
        g_pids=[1, 2, 1, 2],
        q_camids=[0, 0],
        g_camids=[1, 1, 1, 1],
    )
    max_rank = kwargs.pop("max_rank", 50)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        evaluate_distmat(*args.values(), max_rank=max_rank)


def test_nan_and_inf_at_a_match_are_errors():
    d = torch.rand(2, 4)
    d[0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        evaluate_distmat(d, [1, 2], [1, 2, 1, 2], [0, 0], [1, 1, 1, 1])
    d = torch.rand(2, 4)
    d[0, 0] = float("inf")
    with pytest.raises(ValueError, match="finite"):
        evaluate_distmat(d, [1, 2], [1, 2, 1, 2], [0, 0], [1, 1, 1, 1])
    d = torch.rand(300, 4)  # several row chunks in worker threads: the error still surfaces
    d[200, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        evaluate_distmat(d, [1, 2] * 150, [1, 2, 1, 2], [0] * 300, [1, 1, 1, 1])


def test_evaluate_feature_arguments():
    q, g = torch.randn(3, 8), torch.randn(5, 8)
    labels = ([1, 2, 3], [1, 2, 3, 1, 2], [0, 0, 0], [1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="same width"):
        evaluate(q, torch.randn(5, 7), *labels)
    with pytest.raises(ValueError, match="metric must be one of"):
        evaluate(q, g, *labels, metric="hamming")
    with pytest.raises(ValueError, match="block_rows"):
        evaluate(q, g, *labels, block_rows=0)
    with pytest.raises(TypeError, match="query_features"):
        evaluate("q", g, *labels)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    rng = np.random.default_rng(11)
    dist, qp, gp, qc, gc = _random_case(rng, 300, 2000, nid=50, ncam=6)
    cpu = evaluate_distmat(dist, qp, gp, qc, gc)
    gpu = evaluate_distmat(torch.from_numpy(dist).cuda(), qp, gp, qc, gc)
    assert gpu.mAP == pytest.approx(cpu.mAP, abs=1e-12)
    torch.testing.assert_close(gpu.cmc, cpu.cmc)


@pytest.mark.parametrize("chunk_rows, workers", [(1, 1), (7, 3), (64, 2)])
def test_row_blocks_and_bin_sharing_paths(chunk_rows, workers):
    """Rows whose matches are well separated (no look-up needed), rows with matches
    tied to each other, and rows with non-matches inside a match's bin, in one block."""
    from smcr.evaluation import metrics

    rng = np.random.default_rng(21)
    nq, ng = 40, 300
    qp = rng.integers(1, 6, nq)
    gp = rng.integers(0, 6, ng)
    qc, gc = np.zeros(nq, dtype=np.int64), np.ones(ng, dtype=np.int64)
    same = qp[:, None] == gp[None, :]
    dist = np.where(same, rng.random((nq, ng)) * 0.1, 1 + rng.random((nq, ng)))
    dist[1::5] = np.where(same[1::5], 0.05, dist[1::5])  # matches tied with each other
    for i in range(0, nq, 3):  # non-matches tied with (or right next to) a match
        j = np.flatnonzero(same[i])[0]
        k = np.flatnonzero(~same[i])[:3]
        dist[i, k] = dist[i, j] + np.array([0.0, 1e-7, -1e-7])
    dist[2::9] = rng.random((len(range(2, nq, 9)), ng))  # matches anywhere in the row
    dist = dist.astype(np.float32)
    labels = [torch.as_tensor(v) for v in (qp, gp, qc, gc)]
    pairs = metrics.identity_pairs(*labels)
    st = metrics.new_rank_state(pairs, ng)
    metrics.rank_block(torch.from_numpy(dist), 0, st, chunk_rows=chunk_rows, workers=workers)
    r = metrics.finish_ranking(st, nq, 20)
    ref = evaluate_reference(dist, qp, gp, qc, gc, max_rank=20)
    np.testing.assert_array_equal(r.first_match_rank.numpy(), ref["first_match_rank"])
    np.testing.assert_allclose(r.average_precision.numpy(), ref["average_precision"], atol=1e-12)
    assert r.mINP == pytest.approx(ref["mINP"], abs=1e-12)
