"""Adversarial inputs to the public smcr_ext API: each case once crashed the process,
raised a raw error from C++ or torch, or returned a silently wrong answer. Now every one
gives the right answer or a ValueError / TypeError naming the argument."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import smcr_ext as E


def _unit(n: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)  # (N, D)
    return (x / x.norm(dim=1, keepdim=True)).to(torch.float32)


LABELS = torch.tensor([0, 0, 1, 1, 2, 2])
TARGETS = torch.tensor([0, 1, 2, 0])


# --------------------------------------------------------------------------- DLPack inputs


def test_negative_stride_numpy_does_not_abort():
    # torch.from_dlpack aborts the whole process on a[::-1]: run it in a child.
    code = (
        "import numpy as np, torch, smcr_ext as E\n"
        "x = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)\n"
        "r = E.knn(x[::-1], 3)\n"
        "assert torch.equal(r.indices, E.knn(np.ascontiguousarray(x[::-1]), 3).indices)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]


@pytest.mark.parametrize(
    "call",
    [
        lambda x: E.knn(x.numpy()[::-1], 3).indices,
        lambda x: E.kreciprocal_jaccard(x.numpy()[::-1], 4, 2).distances,
        lambda x: E.soft_triplet(x.numpy()[::-1], None, np.array([0, 0, 1, 1] * 2 + [2, 2])).loss,
        lambda x: E.hybrid_memory_loss(x.numpy()[:4][::-1], x.numpy()[::-1],
                                       np.r_[LABELS.numpy(), [0] * 4][::-1], TARGETS).loss,
        lambda x: E.label_means(x[:6], E.label_index(LABELS), np.array([0, 2, 1])[::-1]),
        lambda x: E.cluster_reliability(np.array([0, 0, 1])[::-1], np.array([0, 1, 1]),
                                        np.array([1, 1, 0], np.uint8)[::-1]).iou_tight,
    ],
    ids=["knn", "jaccard", "soft_triplet", "hybrid_memory_loss", "label_means", "reliability"],
)
def test_negative_stride_numpy_equals_contiguous(call):
    x = _unit(10)
    out = call(x)  # would abort the process before the fix
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize(
    "arr, exc, match",
    [
        (lambda x: x.numpy().astype(object), TypeError, "features must hold numbers"),
        (lambda x: np.array([["a", "b"], ["c", "d"]]), TypeError, "features must hold numbers"),
    ],
)
def test_non_numeric_numpy_names_argument(arr, exc, match):
    with pytest.raises(exc, match=match):
        E.knn(arr(_unit(10)), 3)


def test_big_endian_and_read_only_numpy():
    x = _unit(10)
    ref = E.knn(x, 3).indices
    assert torch.equal(E.knn(x.numpy().astype(">f4"), 3).indices, ref)
    ro = x.numpy().copy()
    ro.setflags(write=False)
    assert torch.equal(E.knn(ro, 3).indices, ref)


# --------------------------------------------------------------------------- features


@pytest.mark.parametrize(
    "scale, dtype",
    [(1e30, torch.float32), (1e-30, torch.float32), (1e300, torch.float64),
     (1e-300, torch.float64)],
)
def test_knn_rows_outside_float32_range_are_normalised(scale, dtype):
    # Before: 1e30 rows overflowed the norm (all distances 2, silently); 1e-30 rows
    # underflowed it ("all zero"); float64 1e300 rows were called non-finite.
    x = _unit(12)
    r = E.knn(x.to(dtype) * scale, 4)
    ref = E.knn(x, 4)
    assert torch.equal(r.indices, ref.indices)
    torch.testing.assert_close(r.distances, ref.distances, atol=1e-5, rtol=0)


def test_knn_seed_and_ivf_small_n_wide_d():
    with pytest.raises(TypeError, match="seed"):
        E.knn(_unit(10), 3, backend="ivf", seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        E.knn(_unit(10), 3, backend="ivf", seed=2**70)
    # N < pca_dim < D: pca_lowrank's own ValueError before the fix.
    x = _unit(5, 200)
    assert torch.equal(E.knn(x, 4, backend="ivf").indices, E.knn(x, 4).indices)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: E.knn(_unit(10), 3, block_size=2**70), "block_size"),
        (lambda: E.dbscan(E.kreciprocal_jaccard(_unit(10), 4, 2), 0.5, 2**70), "min_samples"),
        (lambda: E.hybrid_memory_loss(_unit(4), _unit(6), LABELS, TARGETS, block_size=2**70),
         "block_size"),
        (lambda: E.label_index(LABELS, 2**70), "num_labels"),
    ],
)
def test_ints_beyond_int64_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# --------------------------------------------------------------------------- Jaccard


def _knn4():
    r = E.knn(_unit(10), 4)
    return r.indices, r.distances


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda i, d: (i, torch.full_like(d, float("nan"))), ValueError, "finite"),
        (lambda i, d: (i, torch.full_like(d, float("inf"))), ValueError, "finite"),
        (lambda i, d: (i, d - 5.0), ValueError, ">= 0"),
        (lambda i, d: (i, d.flip(1)), ValueError, "sorted"),
        (lambda i, d: (torch.zeros_like(i), d), ValueError, "repeat"),
        (lambda i, d: (i.double() + 0.7, d), TypeError, "indices must hold integers"),
        (lambda i, d: (i.bool(), d), TypeError, "indices must hold integers"),
        (lambda i, d: (i, d.to(torch.complex64)), TypeError, "distances must be floating"),
        (lambda i, d: (i,), TypeError, "knn_result"),
        (lambda i, d: i, TypeError, "knn_result"),
    ],
    ids=["nan", "inf", "negative", "unsorted", "repeated", "float-idx", "bool-idx",
         "complex-dist", "1-tuple", "tensor"],
)
def test_jaccard_rejects_bad_knn_result(make, exc, match):
    i, d = _knn4()
    with pytest.raises(exc, match=match):
        E.kreciprocal_jaccard(_unit(10), 4, 2, knn_result=make(i, d))


def test_jaccard_given_lists_equal_computed_ones():
    x = _unit(10)
    i, d = _knn4()
    a = E.kreciprocal_jaccard(x, 4, 2, knn_result=(i.numpy()[::-1].copy()[::-1], d.numpy()))
    b = E.kreciprocal_jaccard(x, 4, 2)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.distances, b.distances)


# --------------------------------------------------------------------------- DBSCAN


@pytest.mark.parametrize(
    "graph, exc, match",
    [
        ((torch.tensor([0.0, 1.0]), torch.tensor([0.7]), torch.tensor([0.0])), TypeError,
         "indptr must hold integers"),
        ((torch.tensor([0, 1]), torch.tensor([True]), torch.tensor([0.0])), TypeError,
         "indices must hold integers"),
        ((torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([0j])), TypeError,
         "distances must be real"),
        (sp.csr_matrix(np.array([[0, 1j], [1j, 0]])), TypeError, "real distances"),
        # (0, 1) stored in row 0 only: scikit-learn says [0, 0], the kernel said [0, -1].
        ((torch.tensor([0, 1, 1]), torch.tensor([1]), torch.tensor([0.1])), ValueError,
         "symmetric"),
        ((torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.tensor([0.1, 0.2])), ValueError,
         "symmetric"),
        # (0, 1) twice in row 0: counted twice by the kernel, once by scikit-learn.
        (sp.csr_matrix((np.full(4, 0.1), np.array([1, 1, 0, 0]), np.array([0, 2, 4])),
                       shape=(2, 2)), ValueError, "more than once"),
    ],
    ids=["float-indptr", "bool-indices", "complex", "scipy-complex", "one-sided",
         "asymmetric-distance", "duplicate"],
)
def test_dbscan_rejects_bad_graph(graph, exc, match):
    with pytest.raises(exc, match=match):
        E.dbscan(graph, 0.15, 2)


@pytest.mark.parametrize(
    "graph",
    [
        E.JaccardGraph(torch.tensor([0, 1, 2], dtype=torch.int32),
                       torch.tensor([1, 0], dtype=torch.int32),
                       torch.tensor([0.1, 0.1], dtype=torch.float64)),
        E.JaccardGraph(np.array([0, 1, 2]), np.array([1, 0]), np.array([0.1, 0.1])),
        (np.array([0, 1, 2])[::-1][::-1], np.array([1, 0]), np.array([0.1, 0.1], np.float16)),
    ],
    ids=["int32-float64", "numpy-in-graph", "numpy-tuple"],
)
def test_dbscan_accepts_other_dtypes(graph):
    # Before: a raw RuntimeError from C++ (int32) or an AttributeError (numpy).
    assert E.dbscan(graph, 0.5, 2).tolist() == [0, 0]


def test_dbscan_on_jaccard_graph_unchanged():
    x = _unit(40)
    g = E.kreciprocal_jaccard(x, 6, 3)
    labels = E.dbscan(g, [0.3, 0.6], 2)
    m = g.to_scipy()
    for k, eps in enumerate([0.3, 0.6]):
        assert torch.equal(labels[k], E.dbscan(m, eps, 2))


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize(
    "labels, num_labels",
    [(torch.tensor([0, 2**40]), None), (torch.tensor([0, 1]), 2**40)],
    ids=["huge-label", "huge-num_labels"],
)
def test_label_index_huge_label_space(labels, num_labels):
    # Before: a raw allocation RuntimeError (8 TB).
    with pytest.raises(ValueError, match="num_labels must be <="):
        E.label_index(labels, num_labels)
    if num_labels is None:
        with pytest.raises(ValueError, match="num_labels must be <="):
            E.hybrid_memory_loss(_unit(4), _unit(2), labels, torch.tensor([0, 0, 0, 0]))


@pytest.mark.parametrize(
    "kwargs, dtype, match",
    [
        (dict(temperature=1e-39), torch.float32, "temperature must be >="),
        (dict(temperature=1e-320), torch.float64, "temperature must be >="),
        (dict(eps=1e39), torch.float32, "eps must be <="),
    ],
)
def test_hybrid_memory_loss_accumulator_range(kwargs, dtype, match):
    # Before: a NaN or -inf loss, silently.
    with pytest.raises(ValueError, match=match):
        E.hybrid_memory_loss(_unit(4).to(dtype), _unit(6).to(dtype), LABELS, TARGETS, **kwargs)


def test_hybrid_memory_loss_smallest_valid_temperature_is_finite():
    r = E.hybrid_memory_loss(_unit(4).requires_grad_(), _unit(6), LABELS, TARGETS, 2e-38)
    assert torch.isfinite(r.loss)


def _hand_made_index():
    # label_rows points at row 99 of a 6-row memory; label_ptr at 100 rows.
    return [
        E.LabelIndex(LABELS, torch.tensor([0, 2, 4, 6]), torch.tensor([0, 1, 2, 3, 4, 99]),
                     torch.tensor([2, 2, 2])),
        E.LabelIndex(LABELS, torch.tensor([0, 2, 4, 100]), torch.tensor([0, 1, 2, 3, 4, 5]),
                     torch.tensor([2, 2, 96])),
    ]


@pytest.mark.parametrize("which", [0, 1])
def test_hand_made_label_index_is_rebuilt(which):
    # Before: the kernels read memory rows through label_rows / label_ptr unchecked
    # (out of bounds).
    index = _hand_made_index()[which]
    f, m = _unit(4), _unit(6, seed=1)
    a = E.hybrid_memory_loss(f, m, index, TARGETS).loss
    b = E.hybrid_memory_loss(f, m, LABELS, TARGETS).loss
    assert torch.equal(a, b)
    lab = torch.tensor([0, 1, 2])
    assert torch.equal(E.label_means(m, index, lab), E.label_means(m, E.label_index(LABELS), lab))


def test_inconsistent_label_index_names_argument():
    index = E.LabelIndex(LABELS, torch.tensor([0, 6]), torch.arange(6), torch.tensor([6]))
    with pytest.raises(ValueError, match="index is a LabelIndex not built by label_index"):
        E.label_means(_unit(6), index, torch.tensor([0]))


def test_kreciprocal_jaccard_names_its_knn_backend_argument():
    # the error used to name `backend`, the argument of the knn call inside
    with pytest.raises(ValueError, match=r"^knn_backend must be one of"):
        E.kreciprocal_jaccard(torch.randn(30, 8), k1=5, k2=2, knn_backend="annoy")
