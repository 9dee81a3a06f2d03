"""The clustering kernels against the dense PyTorch references and scikit-learn."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.cluster import DBSCAN
from smcr.reference import cluster_iou_reference, knn_reference, kreciprocal_jaccard_reference
from smcr.simulate import reid_like_features

import smcr_ext


def clustered(n=240, d=32, seed=0, **kw):
    return reid_like_features(n, d, seed=seed, images_per_id=8, **kw).features


def first_occurrence(labels: np.ndarray) -> np.ndarray:
    out = np.full_like(labels, -1)
    mapping: dict[int, int] = {}
    for i, v in enumerate(labels.tolist()):
        if v >= 0:
            out[i] = mapping.setdefault(v, len(mapping))
    return out


# ----------------------------------------------------------------------------- kNN


@pytest.mark.parametrize("block", [7, 64, 4096])
def test_knn_matches_reference(block):
    x = clustered(300, 24)
    ref_idx, ref_dist = knn_reference(x.double(), 12)
    res = smcr_ext.knn(x, 12, block_size=block)
    assert torch.equal(res.indices, ref_idx)
    torch.testing.assert_close(res.distances.double(), ref_dist, atol=1e-5, rtol=0)
    assert torch.equal(res.indices[:, 0], torch.arange(300))


def test_knn_accepts_numpy_and_normalises():
    x = clustered(100, 16)
    res_np = smcr_ext.knn((3.0 * x).numpy(), 5)
    res = smcr_ext.knn(x, 5)
    assert torch.equal(res_np.indices, res.indices)
    torch.testing.assert_close(res_np.distances, res.distances, atol=1e-5, rtol=0)


def test_knn_faiss_backend_same_neighbour_sets():
    x = clustered(400, 32)
    exact = smcr_ext.knn(x, 10)
    fa = smcr_ext.knn(x, 10, backend="faiss")
    assert torch.equal(torch.sort(exact.indices, 1).values, torch.sort(fa.indices, 1).values)
    torch.testing.assert_close(fa.distances, exact.distances, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "bad, kwargs, exc, match",
    [
        (torch.randn(10), {"k": 2}, ValueError, "2-D"),
        (torch.randn(1, 4), {"k": 1}, ValueError, "N >= 2"),
        (torch.randn(5, 4), {"k": 5}, ValueError, "k must be <= 4"),
        (torch.randn(5, 4), {"k": 0}, ValueError, "k must be >= 1"),
        (torch.randn(5, 4), {"k": 2.5}, TypeError, "k must be an int"),
        (torch.ones(5, 4, dtype=torch.int64), {"k": 2}, TypeError, "floating-point"),
        (
            torch.tensor([[1.0, float("nan")], [0.0, 1.0], [1.0, 0.0]]),
            {"k": 1},
            ValueError,
            "finite",
        ),
        (torch.zeros(4, 3), {"k": 1}, ValueError, "all zero"),
        (torch.randn(5, 4), {"k": 2, "backend": "annoy"}, ValueError, "backend"),
        ([[1.0, 0.0]], {"k": 1}, TypeError, "features must be a torch.Tensor"),
    ],
)
def test_knn_bad_input(bad, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        smcr_ext.knn(bad, **kwargs)


# ----------------------------------------------------------------------------- Jaccard


def graph_dense(g: smcr_ext.JaccardGraph) -> torch.Tensor:
    return g.to_dense(fill=1.0).double()


@pytest.mark.parametrize(
    "k1, k2, width",
    [(12, 4, None), (12, 1, None), (11, 3, None), (9, 6, 10)],
)
def test_jaccard_matches_dense_reference(k1, k2, width):
    x = clustered(220, 20, seed=k1)
    ref = kreciprocal_jaccard_reference(x.double(), k1, k2, num_neighbors=width)
    g = smcr_ext.kreciprocal_jaccard(x, k1, k2, max_dist=1.0, num_neighbors=width)
    got = graph_dense(g)
    # Every pair: exact to 1e-5 (absent pairs are at 1, as in the reference).
    assert (got - ref).abs().max().item() <= 1e-5
    # Bitwise symmetric, self first at 0, rows sorted by (distance, index).
    dense32 = g.to_dense()
    assert torch.equal(dense32, dense32.T)
    for i in range(0, 220, 37):
        idx, dist = g.row(i)
        assert idx[0] == i and dist[0] == 0
        assert bool((dist[1:] >= dist[:-1]).all())


def test_jaccard_max_dist_keeps_exactly_the_pairs_below():
    x = clustered(200, 16, seed=3)
    ref = kreciprocal_jaccard_reference(x.double(), 10, 4)
    g = smcr_ext.kreciprocal_jaccard(x, 10, 4, max_dist=0.6)
    assert g.distances.max().item() <= 0.6
    got = graph_dense(g)
    stored = got < 1.0
    stored.fill_diagonal_(True)
    margin = (ref - 0.6).abs() > 1e-5
    assert torch.equal(stored[margin], (ref <= 0.6)[margin])
    assert (got[stored] - ref[stored]).abs().max().item() <= 1e-5


def test_jaccard_from_knn_result_and_precomputed_lists():
    x = clustered(150, 16, seed=4)
    res = smcr_ext.knn(x, 10)
    a = smcr_ext.kreciprocal_jaccard(res, 10, 3)
    b = smcr_ext.kreciprocal_jaccard(
        x, 10, 3, knn_result=(res.indices.numpy(), res.distances.numpy())
    )
    c = smcr_ext.kreciprocal_jaccard(x, 10, 3)
    for g in (b, c):
        assert torch.equal(a.indptr, g.indptr) and torch.equal(a.indices, g.indices)
        assert torch.equal(a.distances, g.distances)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"k1": 0}, ValueError, "k1 must be >= 1"),
        ({"k1": 50}, ValueError, "k1 must be <= 39"),
        ({"k1": 5, "k2": 6}, ValueError, "k2 must be <= 5"),
        ({"max_dist": 1.5}, ValueError, "max_dist"),
        ({"max_dist": -0.1}, ValueError, "max_dist"),
        ({"num_neighbors": 2, "k2": 3}, ValueError, "num_neighbors must be >= 3"),
    ],
)
def test_jaccard_bad_input(kwargs, exc, match):
    x = clustered(40, 8)
    args = {"k1": 10, "k2": 3} | kwargs
    with pytest.raises(exc, match=match):
        smcr_ext.kreciprocal_jaccard(x, **args)


def test_jaccard_bad_knn_result():
    x = clustered(40, 8)
    res = smcr_ext.knn(x, 10)
    with pytest.raises(ValueError, match="knn_result indices must be"):
        smcr_ext.kreciprocal_jaccard(x, 12, 3, knn_result=res)
    bad = res.indices.clone()
    bad[0, 1] = 40
    with pytest.raises(ValueError, match=r"must lie in \[0, 40\)"):
        smcr_ext.kreciprocal_jaccard(x, 10, 3, knn_result=(bad, res.distances))


# ----------------------------------------------------------------------------- DBSCAN


def sklearn_labels(dense: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(dense)


@pytest.mark.parametrize("min_samples", [1, 3, 4, 8])
def test_dbscan_matches_sklearn_on_jaccard(min_samples):
    x = clustered(400, 24, seed=5, outlier_fraction=0.15)
    g = smcr_ext.kreciprocal_jaccard(x, 15, 4, max_dist=0.8)
    dense = g.to_dense(fill=2.0).numpy().astype(np.float64)
    eps = [0.48, 0.5, 0.52, 0.7]
    ours = smcr_ext.dbscan(g, eps, min_samples)
    assert ours.shape == (4, 400)
    for e, lab in zip(eps, ours, strict=True):
        ref = sklearn_labels(dense, e, min_samples)
        assert np.array_equal(first_occurrence(lab.numpy()), first_occurrence(ref))
        assert np.array_equal(lab.numpy(), ref)  # even sklearn's own numbering
    single = smcr_ext.dbscan(g, 0.5, min_samples)
    assert torch.equal(single, ours[1])


def random_symmetric_graph(n, density, seed):
    rng = np.random.default_rng(seed)
    m = sp.random(
        n, n, density=density, random_state=rng, data_rvs=lambda s: rng.uniform(0.01, 1.0, s)
    )
    m = sp.triu(m, k=1)
    m = (m + m.T).tocsr()
    return m


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dbscan_matches_sklearn_on_random_sparse_graphs(seed):
    m = random_symmetric_graph(300, 0.03, seed)
    dense = np.full((300, 300), 5.0)
    coo = m.tocoo()
    dense[coo.row, coo.col] = coo.data
    np.fill_diagonal(dense, 0.0)
    for eps, ms in [(0.3, 2), (0.5, 3), (0.9, 5)]:
        ours = smcr_ext.dbscan(m, eps, ms).numpy()
        ref = DBSCAN(eps=eps, min_samples=ms, metric="precomputed").fit_predict(m)
        assert np.array_equal(ours, ref)
        assert np.array_equal(ours, sklearn_labels(dense, eps, ms))


def test_dbscan_degenerate_cases_and_input_untouched():
    x = clustered(120, 16, seed=6)
    g = smcr_ext.kreciprocal_jaccard(x, 10, 3, max_dist=1.0)
    saved = (g.indptr.clone(), g.indices.clone(), g.distances.clone())
    # No core samples: everything is noise, as in scikit-learn.
    assert torch.equal(smcr_ext.dbscan(g, 0.5, 1000), torch.full((120,), -1))
    # Every point a core and one connected component: one cluster.
    m = sp.csr_matrix(np.ones((5, 5)) * 0.1)
    assert smcr_ext.dbscan(m, 0.2, 1).tolist() == [0] * 5
    assert torch.equal(g.indptr, saved[0]) and torch.equal(g.indices, saved[1])
    assert torch.equal(g.distances, saved[2])


def test_dbscan_boundary_is_inclusive():
    # 0-1 at exactly 0.25 (a float32-representable value): neighbours at eps = 0.25.
    m = sp.csr_matrix(np.array([[0, 0.25, 0], [0.25, 0, 0.5], [0, 0.5, 0]], dtype=np.float32))
    assert smcr_ext.dbscan(m, 0.25, 2).tolist() == [0, 0, -1]
    assert smcr_ext.dbscan(m, 0.2499, 2).tolist() == [-1, -1, -1]
    ref = DBSCAN(eps=0.25, min_samples=2, metric="precomputed").fit_predict(m)
    assert ref.tolist() == [0, 0, -1]


@pytest.mark.parametrize(
    "eps, min_samples, exc, match",
    [
        (0.0, 4, ValueError, "eps must be a finite number > 0"),
        (-1.0, 4, ValueError, "eps must be"),
        ([], 4, TypeError, "eps must be a number or a non-empty sequence"),
        ("0.5", 4, TypeError, "eps must be"),
        (0.5, 0, ValueError, "min_samples must be >= 1"),
        (0.5, 2.0, TypeError, "min_samples must be an int"),
    ],
)
def test_dbscan_bad_input(eps, min_samples, exc, match):
    m = random_symmetric_graph(20, 0.2, 0)
    with pytest.raises(exc, match=match):
        smcr_ext.dbscan(m, eps, min_samples)


def test_dbscan_bad_graph():
    with pytest.raises(TypeError, match="graph must be"):
        smcr_ext.dbscan(np.zeros((3, 3)), 0.5)
    indptr = torch.tensor([0, 2, 3])
    with pytest.raises(ValueError, match="indices must lie"):
        smcr_ext.dbscan((indptr, torch.tensor([0, 5, 1]), torch.tensor([0.0, 0.1, 0.0])), 0.5)
    with pytest.raises(ValueError, match="sorted by distance"):
        smcr_ext.dbscan((indptr, torch.tensor([1, 0, 1]), torch.tensor([0.3, 0.1, 0.0])), 0.5)
    with pytest.raises(ValueError, match="finite"):
        smcr_ext.dbscan(
            (indptr, torch.tensor([0, 1, 1]), torch.tensor([0.0, float("nan"), 0.0])), 0.5
        )
    with pytest.raises(ValueError, match="indptr must start at 0"):
        smcr_ext.dbscan((torch.tensor([0, 2, 2]), torch.tensor([0, 1, 1]), torch.zeros(3)), 0.5)


# ----------------------------------------------------------------------------- reliability


def test_cluster_reliability_matches_dense_reference():
    g = torch.Generator().manual_seed(0)
    n = 500
    normal = torch.randint(-1, 40, (n,), generator=g)
    tight = torch.where(torch.rand(n, generator=g) < 0.2, torch.full((n,), -1), normal)
    loose = torch.where(normal % 3 == 0, normal // 3, normal)
    rel = smcr_ext.cluster_reliability(tight, normal, loose)
    torch.testing.assert_close(
        rel.iou_tight.double(), cluster_iou_reference(normal, tight), atol=1e-7, rtol=0
    )
    torch.testing.assert_close(
        rel.iou_loose.double(), cluster_iou_reference(normal, loose), atol=1e-7, rtol=0
    )
    torch.testing.assert_close(rel.r_comp, 1 - rel.iou_tight)


def test_cluster_reliability_arbitrary_ids_and_numpy():
    normal = np.array([10**9, 10**9, 7, 7, -1])
    other = np.array([3, 3, 3, -1, -1])
    rel = smcr_ext.cluster_reliability(other, normal, normal)
    assert rel.iou_tight.tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 4, 1 / 2, 1.0])
    assert rel.iou_loose.tolist() == [1.0] * 5


def test_cluster_reliability_bad_input():
    a = torch.zeros(5, dtype=torch.int64)
    with pytest.raises(ValueError, match="labels_tight must have N=5"):
        smcr_ext.cluster_reliability(torch.zeros(4, dtype=torch.int64), a, a)
    with pytest.raises(TypeError, match="labels must hold integers"):
        smcr_ext.cluster_reliability(a, a.float(), a)
    with pytest.raises(ValueError, match=">= -1"):
        smcr_ext.cluster_reliability(a, a - 2, a)
    with pytest.raises(ValueError, match="1-D"):
        smcr_ext.cluster_reliability(a, a.view(5, 1), a)


# ----------------------------------------------------------------------------- opcheck


def test_opcheck_every_clustering_op():
    x = clustered(60, 8)
    idx, dist = smcr_ext.knn(x, 6)
    torch.library.opcheck(torch.ops.smcr.knn.default, (x, 6, 16))
    torch.library.opcheck(torch.ops.smcr.kreciprocal_jaccard.default, (x, idx, dist, 6, 2, 0.9))
    g = smcr_ext.kreciprocal_jaccard(x, 6, 2, 0.9)
    torch.library.opcheck(
        torch.ops.smcr.dbscan.default, (g.indptr, g.indices, g.distances, [0.5, 0.6], 3)
    )
    lab = smcr_ext.dbscan(g, 0.6, 3)
    torch.library.opcheck(torch.ops.smcr.cluster_iou.default, (lab, lab.flip(0)))


def test_backends_reports_what_is_compiled():
    b = smcr_ext.backends()
    assert b["cpu"] is True
    assert isinstance(b["cuda_compiled"], bool) and isinstance(b["openmp_threads"], int)
    assert b["cuda_available"] == (b["cuda_compiled"] and torch.cuda.is_available())


# ----------------------------------------------------------------------------- approximate kNN


def test_ivf_backend_recall_and_format():
    f = reid_like_features(3000, 64, seed=7)
    x = f.features
    exact = smcr_ext.knn(x, 20)
    approx = smcr_ext.knn(x, 20, backend="ivf", nlist=64, nprobe=12)
    hits = (approx.indices.unsqueeze(2) == exact.indices.unsqueeze(1)).any(dim=2).float().mean()
    assert hits.item() >= 0.99
    # same format as the exact search: sorted by distance, self first, distances exact
    assert bool((approx.distances[:, 1:] >= approx.distances[:, :-1]).all())
    assert torch.equal(approx.indices[:, 0], torch.arange(3000))
    d = 2 - 2 * (x.unsqueeze(1) * x[approx.indices]).sum(-1)
    torch.testing.assert_close(approx.distances, d.clamp_min(0), atol=1e-5, rtol=0)
    # exhaustive probing is exact
    full = smcr_ext.knn(x, 20, backend="ivf", nlist=16, nprobe=16)
    assert torch.equal(full.indices, exact.indices)


def test_ivf_backend_bad_arguments():
    x = clustered(100, 8)
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        smcr_ext.knn(x, 5, backend="ivf", nprobe=0)
    with pytest.raises(TypeError, match="nlist must be an int"):
        smcr_ext.knn(x, 5, backend="ivf", nlist=2.5)


def test_opcheck_knn_ivf():
    x = clustered(60, 8)
    cell_ptr = torch.tensor([0, 30, 60])
    probes = torch.tensor([[0, 1], [1, 0]])
    torch.library.opcheck(torch.ops.smcr.knn_ivf.default, (x, cell_ptr, probes, 5))
