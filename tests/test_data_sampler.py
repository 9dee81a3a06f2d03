"""P x K identity sampler preferring other cameras (SpCL's RandomMultipleGallerySampler)."""

import numpy as np
import pytest
import torch
from smcr.data import RandomMultipleGallerySampler


def _data():
    # pid: list of cameras of its images
    layout = {0: [0, 0, 1, 2, 3], 1: [0, 0, 0, 0], 2: [5], 3: [1, 2], 4: [0, 1, 1, 1, 1, 1]}
    pids, cams = [], []
    for p, cs in layout.items():
        pids += [p] * len(cs)
        cams += cs
    pids += [-1, -1]
    cams += [0, 1]
    return np.array(pids), np.array(cams)


def test_every_identity_gives_exactly_k_grouped_indices():
    pids, cams = _data()
    s = RandomMultipleGallerySampler(pids, cams, num_instances=4, seed=1)
    idx = list(s)
    assert len(idx) == len(s) == 5 * 4
    groups = np.array(idx).reshape(-1, 4)
    assert sorted(pids[groups[:, 0]].tolist()) == [0, 1, 2, 3, 4]
    for g in groups:
        assert len(set(pids[g].tolist())) == 1 and pids[g[0]] >= 0


def test_prefers_cameras_other_than_the_anchor():
    pids, cams = _data()
    for seed in range(20):
        groups = np.array(list(RandomMultipleGallerySampler(pids, cams, 4, seed))).reshape(-1, 4)
        for g in groups:
            pid, anchor_cam = pids[g[0]], cams[g[0]]
            others = [c for c in cams[pids == pid]]
            n_other = sum(c != anchor_cam for c in others)
            picked_other = sum(cams[i] != anchor_cam for i in g[1:])
            assert picked_other == min(3, n_other) or (n_other > 0 and picked_other == 3)
            if n_other >= 3:
                assert len(set(g[1:].tolist())) == 3  # without replacement


def test_deterministic_per_seed_and_epoch():
    pids, cams = _data()
    a = RandomMultipleGallerySampler(pids, cams, 4, seed=3)
    b = RandomMultipleGallerySampler(pids, cams, 4, seed=3)
    assert list(a) == list(b)
    e0 = list(a)
    a.set_epoch(1)
    assert list(a) != e0


def test_batches_hold_p_identities_with_a_dataloader():
    pids, cams = _data()
    s = RandomMultipleGallerySampler(pids, cams, num_instances=2, seed=0)
    loader = torch.utils.data.DataLoader(
        torch.arange(len(pids)), batch_size=4, sampler=s, drop_last=True
    )
    for batch in loader:
        assert len(set(pids[batch.numpy()].tolist())) == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_instances"):
        RandomMultipleGallerySampler([0, 1], [0, 1], num_instances=0)
    with pytest.raises(ValueError, match="same length"):
        RandomMultipleGallerySampler([0, 1], [0], num_instances=2)
    with pytest.raises(ValueError, match="no identity"):
        RandomMultipleGallerySampler([-1, -1], [0, 1])
