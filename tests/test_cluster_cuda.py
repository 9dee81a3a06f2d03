"""CUDA clustering kernels: equal to the CPU ones (labels exactly, distances to 1e-5)."""

import pytest
import torch
from smcr.cluster import PseudoLabeler
from smcr.simulate import reid_like_features

import smcr_ext

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def feats():
    return reid_like_features(3000, 256, seed=11, images_per_id=12).features


@pytest.mark.parametrize("k", [1, 7, 30, 33, 64, 100, 128])
def test_knn_cuda_equals_cpu(feats, k):
    cpu = smcr_ext.knn(feats, k)
    gpu = smcr_ext.knn(feats.cuda(), k, block_size=1000)  # several symmetric blocks
    assert gpu.indices.is_cuda
    assert torch.equal(gpu.indices.cpu(), cpu.indices)
    torch.testing.assert_close(gpu.distances.cpu(), cpu.distances, atol=1e-5, rtol=0)


def test_knn_cuda_k_limit(feats):
    with pytest.raises(ValueError, match="k must be <= 128 for CUDA features"):
        smcr_ext.knn(feats[:500].cuda(), 129)


@pytest.mark.parametrize("k1, k2, max_dist", [(30, 6, 1.0), (20, 6, 0.62), (15, 1, 0.9)])
def test_jaccard_cuda_equals_cpu(feats, k1, k2, max_dist):
    res = smcr_ext.knn(feats, k1)
    cpu = smcr_ext.kreciprocal_jaccard(res, k1, k2, max_dist=max_dist)
    knn_gpu = smcr_ext.KnnResult(res.indices.cuda(), res.distances.cuda(), res.features.cuda())
    gpu = smcr_ext.kreciprocal_jaccard(knn_gpu, k1, k2, max_dist=max_dist).to("cpu")
    # Same pairs (away from the max_dist boundary), same distances within 1e-5.
    dense_c, dense_g = cpu.to_dense(), gpu.to_dense()
    near_edge = (dense_c - max_dist).abs() < 1e-5
    assert bool(((dense_c - dense_g).abs() <= 1e-5)[~near_edge].all())
    assert torch.equal(dense_g, dense_g.T)  # bitwise symmetric on the GPU too
    for i in range(0, 3000, 211):
        idx, dist = gpu.row(i)
        assert idx[0] == i and dist[0] == 0
        assert bool((dist[1:] >= dist[:-1]).all())


def test_dbscan_and_reliability_cuda_equal_cpu(feats):
    g = smcr_ext.kreciprocal_jaccard(feats, 30, 6, max_dist=0.62)
    eps = [0.58, 0.6, 0.62]
    cpu = smcr_ext.dbscan(g, eps, 4)
    gpu = smcr_ext.dbscan(g.to("cuda"), eps, 4)
    assert torch.equal(gpu.cpu(), cpu)
    rel_c = smcr_ext.cluster_reliability(cpu[0], cpu[1], cpu[2])
    rel_g = smcr_ext.cluster_reliability(gpu[0], gpu[1], gpu[2])
    assert torch.equal(rel_g.iou_tight.cpu(), rel_c.iou_tight)
    assert torch.equal(rel_g.iou_loose.cpu(), rel_c.iou_loose)


def test_pseudo_labeler_cuda_equals_cpu(feats):
    cpu = PseudoLabeler()(feats)
    gpu = PseudoLabeler()(feats.cuda())
    assert gpu.labels.is_cuda
    assert torch.equal(gpu.labels.cpu(), cpu.labels)
    assert gpu.indep_threshold == pytest.approx(cpu.indep_threshold, abs=1e-6)


def test_opcheck_cuda(feats):
    x = feats[:200].cuda()
    idx, dist = smcr_ext.knn(x, 10)
    torch.library.opcheck(torch.ops.smcr.knn.default, (x, 10, 64))
    torch.library.opcheck(torch.ops.smcr.kreciprocal_jaccard.default, (x, idx, dist, 10, 3, 0.9))
    g = smcr_ext.kreciprocal_jaccard(x, 10, 3, 0.9)
    torch.library.opcheck(
        torch.ops.smcr.dbscan.default, (g.indptr, g.indices, g.distances, [0.5], 3)
    )
    lab = smcr_ext.dbscan(g, 0.6, 3)
    torch.library.opcheck(torch.ops.smcr.cluster_iou.default, (lab, lab.flip(0)))


def test_cupy_arrays_are_accepted(feats):
    cupy = pytest.importorskip("cupy", reason="CuPy is an optional DLPack peer")
    x = cupy.asarray(feats.numpy())
    res = smcr_ext.knn(x, 10)
    assert res.indices.is_cuda
    assert torch.equal(res.indices.cpu(), smcr_ext.knn(feats, 10).indices)


def test_cuda_op_errors_raise_runtime_error(feats):
    # Errors raised inside the compiled CUDA glue surface as RuntimeError (kept last in
    # this file: it exercises C++ exception unwinding through the CUDA build).
    with pytest.raises(RuntimeError, match="k must be <= 128 on CUDA"):
        torch.ops.smcr.knn(feats[:500].cuda(), 129, 64)
    bad = torch.tensor([0, 7], device="cuda")
    with pytest.raises(RuntimeError, match="labels must lie"):
        torch.ops.smcr.cluster_iou(bad, torch.zeros_like(bad))
