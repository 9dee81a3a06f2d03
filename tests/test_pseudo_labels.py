"""PseudoLabeler: the SpCL pipeline end to end against the dense reference pipeline."""

import logging

import numpy as np
import pytest
import torch
from sklearn.cluster import DBSCAN
from smcr.cluster import ClusteringCollapsed, PseudoLabeler
from smcr.reference import kreciprocal_jaccard_reference, pseudo_labels_spcl_reference
from smcr.simulate import reid_like_features

import smcr_ext


def partition(labels: torch.Tensor) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, v in enumerate(labels.tolist()):
        groups.setdefault(v, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def reference_pipeline(x, k1, k2, eps, gap, min_samples, threshold=None):
    dist = kreciprocal_jaccard_reference(x.double(), k1, k2).numpy()
    labs = [
        torch.from_numpy(
            DBSCAN(eps=e, min_samples=min_samples, metric="precomputed").fit_predict(dist)
        ).long()
        for e in (eps - gap, eps, eps + gap)
    ]
    keep, thr = pseudo_labels_spcl_reference(*labs, indep_threshold=threshold)
    final = labs[1].clone()
    final[~keep] = -1
    # noise and unreliable points are their own classes
    nxt = int(final.max()) + 1
    for i in torch.nonzero(final < 0).flatten().tolist():
        final[i] = nxt
        nxt += 1
    return final, thr


@pytest.fixture(scope="module")
def feats():
    return [
        reid_like_features(260, 24, seed=s, images_per_id=9, outlier_fraction=0.12).features
        for s in (0, 1)
    ]


def test_spcl_criterion_matches_reference_pipeline(feats):
    pl = PseudoLabeler(eps=0.5, eps_gap=0.03, min_samples=3, k1=12, k2=4)
    thr = None
    for x in feats:  # the threshold is fixed at the first call and reused
        ours = pl(x)
        ref, thr = reference_pipeline(x, 12, 4, 0.5, 0.03, 3, thr)
        assert partition(ours.labels) == partition(ref)
        assert ours.indep_threshold == pytest.approx(thr, abs=1e-6)
        counts = torch.bincount(ours.labels)
        assert ours.num_clusters == int((counts > 1).sum()) > 0
        assert ours.num_outliers == int((counts == 1).sum())
        assert ours.largest_cluster == int(counts.max())
        assert ours.labels.max().item() == ours.num_classes - 1
        # clusters first, then un-clustered instances
        assert bool((counts[: ours.num_clusters] > 1).all())
        assert bool((counts[ours.num_clusters :] == 1).all())


def test_threshold_fixed_at_first_call_and_state_roundtrip(feats):
    pl = PseudoLabeler(eps=0.5, eps_gap=0.03, min_samples=3, k1=12, k2=4)
    pl(feats[0])
    thr = pl.indep_threshold
    pl(feats[1])
    assert pl.indep_threshold == thr
    state = pl.state_dict()
    fresh = PseudoLabeler(eps=0.5, eps_gap=0.03, min_samples=3, k1=12, k2=4)
    fresh.load_state_dict(state)
    assert torch.equal(fresh(feats[1]).labels, pl(feats[1]).labels)
    pl.reset()
    assert pl.indep_threshold is None and pl.previous is None


def test_criterion_none_is_plain_dbscan(feats):
    x = feats[0]
    ours = PseudoLabeler(eps=0.5, min_samples=3, k1=12, k2=4, criterion="none")(x)
    g = smcr_ext.kreciprocal_jaccard(x, 12, 4, max_dist=0.5)
    raw = smcr_ext.dbscan(g, 0.5, 3)
    assert partition(ours.labels) == partition(
        torch.where(raw >= 0, raw, raw.max() + 1 + torch.arange(raw.numel()))
    )
    assert ours.dbscan_labels.shape == (1, x.shape[0])


def test_paper_criterion_follows_eq_6_7(feats):
    x = feats[0]
    pl = PseudoLabeler(eps=0.5, eps_gap=0.03, min_samples=3, k1=12, k2=4, criterion="paper")
    try:
        ours = pl(x)
    except ClusteringCollapsed as e:  # the literal reading can keep nothing (a == 1)
        ours = e.result
    tight, normal, loose = ours.dbscan_labels
    rel = smcr_ext.cluster_reliability(tight, normal, loose)
    ids = normal.clone()
    ids[ids < 0] = ids.max() + 1 + torch.arange(int((ids < 0).sum()))
    a = pl.comp_threshold
    keep = torch.zeros(x.shape[0], dtype=torch.bool)
    for c in ids.unique():
        m = ids == c
        b = rel.iou_loose[m].max()
        c1 = rel.iou_tight[m] + rel.iou_loose[m] - (a + b)
        c2 = rel.iou_tight[m] - rel.iou_loose[m] - (a - b)
        keep[m] = (c1 > 0) & (c2 > 0)
    expected = torch.where(keep & (normal >= 0), normal, torch.full_like(normal, -1))
    assert partition(ours.labels) == partition(
        torch.where(expected >= 0, expected, expected.max() + 1 + torch.arange(expected.numel()))
    )
    multi = torch.bincount(ids) > 1
    sizes_s = torch.full((int(ids.max()) + 1,), -1.0).scatter_reduce(0, ids, rel.iou_tight, "amax")
    vals = torch.sort(sizes_s[multi], descending=True).values
    assert a == pytest.approx(float(vals[min(len(vals) - 1, round(0.9 * len(vals)))]))


def test_zero_clusters_raise_typed_error_or_keep_previous(feats):
    x = feats[0]
    with pytest.raises(ClusteringCollapsed, match="0 clusters") as info:
        PseudoLabeler(k1=12, k2=4, min_samples=200)(x)
    assert info.value.result is not None and info.value.result.num_clusters == 0
    pl = PseudoLabeler(
        eps=0.5, eps_gap=0.03, min_samples=3, k1=12, k2=4, collapse_policy="keep_previous"
    )
    good = pl(x)
    pl.min_samples = 200
    with pytest.warns(RuntimeWarning, match="keeping the previous labels"):
        kept = pl(x)
    assert kept.kept_previous and torch.equal(kept.labels, good.labels)
    assert kept.num_clusters == good.num_clusters


def test_one_giant_cluster_is_a_collapse():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(
        torch.ones(100, 8) + 0.01 * torch.randn(100, 8, generator=g), dim=1
    )
    with pytest.raises(ClusteringCollapsed, match="one cluster holds"):
        PseudoLabeler(eps=0.9, eps_gap=0.05, k1=10, k2=3, min_samples=2, criterion="none")(x)


def test_log_line(feats, caplog):
    with caplog.at_level(logging.INFO, logger="smcr.cluster"):
        r = PseudoLabeler(eps=0.5, eps_gap=0.03, min_samples=3, k1=12, k2=4)(feats[0])
    assert f"{r.num_clusters} clusters, {r.num_outliers} un-clustered instances" in caplog.text


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"criterion": "iou"}, "criterion"),
        ({"eps": 0.0}, "eps must be in"),
        ({"eps": 0.6, "eps_gap": 0.7}, "eps_gap"),
        ({"eps_gap": 0.0}, "eps_gap must be > 0"),
        ({"collapse_policy": "ignore"}, "collapse_policy"),
        ({"min_samples": 0}, "min_samples"),
        ({"percentile": 0.0}, "percentile"),
    ],
)
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PseudoLabeler(**kwargs)


def test_bad_features():
    with pytest.raises(ValueError, match="k1 must be <= N - 1 = 9"):
        PseudoLabeler(k1=30)(torch.randn(10, 4))
    with pytest.raises(ValueError, match="finite"):
        PseudoLabeler()(torch.full((50, 4), float("inf")))


def test_numpy_input(feats):
    pl = PseudoLabeler(eps=0.5, eps_gap=0.03, min_samples=3, k1=12, k2=4)
    a = pl(feats[0].numpy()).labels
    pl.reset()
    assert torch.equal(a, pl(feats[0]).labels)
    assert isinstance(np.asarray(a), np.ndarray)
