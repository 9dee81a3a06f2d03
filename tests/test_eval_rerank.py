"""k-reciprocal re-ranking on the sparse Jaccard kernel, against a dense NumPy reference
of the same definition (smcr_ext's jaccard.h) with the original code's k1 + 1 lists."""

import numpy as np
import pytest
import torch
from smcr.evaluation import distance_matrix, evaluate, jaccard_query_gallery, re_ranking


def _round_half_even(x: float) -> int:
    return int(np.round(x))


def _jaccard_dense(x: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """Zhong et al.'s Jaccard distance, SpCL weights, kNN lists of k1 + 1 (self first)."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    n = x.shape[0]
    d = np.maximum(2.0 - 2.0 * x @ x.T, 0.0)
    order = np.argsort(d, axis=1, kind="stable")  # self first (distance 0)

    def nbrs(i, k):
        return order[i, : k + 1]

    def recip(i, k):
        return [j for j in nbrs(i, k) if i in nbrs(j, k)]

    k1h = _round_half_even(k1 / 2)
    v = np.zeros((n, n))
    for i in range(n):
        r = recip(i, k1)
        exp = set(r)
        for c in r:
            rc = recip(c, k1h)
            if len(set(rc) & set(r)) > 2.0 / 3.0 * len(rc):
                exp |= set(rc)
        e = np.array(sorted(exp))
        w = np.exp(-d[i, e])
        v[i, e] = w / w.sum()
    vq = np.stack([v[order[i, :k2]].mean(0) for i in range(n)])
    s = np.minimum(vq[:, None, :], vq[None, :, :]).sum(-1)
    return np.maximum(1.0 - s / (2.0 - s), 0.0)


def _clustered(seed, nq, ng, nid, dim=16, noise=0.9):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(nid, dim, generator=g)
    qp = torch.randint(0, nid, (nq,), generator=g)
    gp = torch.randint(0, nid, (ng,), generator=g)
    qf = centers[qp] + noise * torch.randn(nq, dim, generator=g)
    gf = centers[gp] + noise * torch.randn(ng, dim, generator=g)
    return qf, gf, qp, gp


def test_jaccard_block_matches_dense_reference():
    qf, gf, _, _ = _clustered(0, 12, 40, 6)
    k1, k2 = 8, 3
    jac = jaccard_query_gallery(qf, gf, k1=k1, k2=k2)
    ref = _jaccard_dense(torch.cat([qf, gf]).double().numpy(), k1, k2)[:12, 12:]
    np.testing.assert_allclose(jac.numpy(), ref, atol=2e-5)
    assert jac.shape == (12, 40) and float(jac.min()) >= 0 and float(jac.max()) <= 1


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_final_distance_is_the_lambda_mix(metric):
    qf, gf, _, _ = _clustered(1, 20, 60, 8)
    lam = 0.3
    out = re_ranking(qf, gf, k1=10, k2=4, lambda_value=lam, metric=metric)
    jac = jaccard_query_gallery(qf, gf, k1=10, k2=4)
    orig = distance_matrix(qf, gf, metric)
    torch.testing.assert_close(out, (1 - lam) * jac + lam * orig, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        re_ranking(qf, gf, k1=10, k2=4, lambda_value=1.0, metric=metric), orig
    )


def test_rerank_helps_on_clustered_data():
    qf, gf, qp, gp = _clustered(2, 60, 300, 12, noise=1.4)
    qc, gc = torch.zeros(60, dtype=torch.int64), torch.ones(300, dtype=torch.int64)
    plain = evaluate(qf, gf, qp, gp, qc, gc)
    rr = evaluate(qf, gf, qp, gp, qc, gc, rerank=True, k1=20, k2=6, lambda_value=0.3)
    assert rr.mAP > plain.mAP


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k1=500), "k1 must be <"),
        (dict(k1=5, k2=6), "k2 must be <= k1"),
        (dict(lambda_value=1.5), "lambda_value"),
        (dict(k1=2.5), "k1 must be an int"),
    ],
)
def test_bad_arguments(kwargs, match):
    qf, gf, _, _ = _clustered(3, 5, 20, 3)
    with pytest.raises((ValueError, TypeError), match=match):
        re_ranking(qf, gf, **kwargs)
