"""smcr.losses.HybridMemory: construction, relabelling, a 20-step training run matching the
plain-PyTorch reference step by step, and identical updates on every rank under
torch.distributed (CPU, gloo)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from smcr.losses import HybridMemory, class_centroids
from smcr.losses.reference import hybrid_memory_loss_reference, hybrid_memory_update_reference

import smcr_ext

f64 = torch.float64


def test_from_features_layout_and_relabel():
    g = torch.Generator().manual_seed(0)
    src = torch.randn(30, 8, generator=g, dtype=f64)
    src_y = torch.arange(30) % 5
    tgt = torch.randn(12, 8, generator=g, dtype=f64)
    mem = HybridMemory.from_features(src, src_y, tgt, dtype=f64)
    assert mem.features.shape == (17, 8) and mem.num_source_classes == 5
    torch.testing.assert_close(mem.features[:5], class_centroids(src, src_y))
    torch.testing.assert_close(mem.target_features, F.normalize(tgt, dim=1))
    assert mem.labels.tolist() == list(range(17))  # every target image its own class
    stats = mem.relabel(torch.tensor([7, 7, -1, 2, 2, 2, -1, 7, 9, 9, -1, 2]))
    assert (stats.num_clusters, stats.num_outliers, stats.largest_cluster, stats.num_labels) == (
        3, 3, 4, 11)
    # clusters 2, 7, 9 -> 0, 1, 2 (+5); outliers -> 3, 4, 5 (+5) in dataset order
    assert mem.target_labels.tolist() == [6, 6, 8, 5, 5, 5, 9, 6, 7, 7, 10, 5]
    assert mem.label_index.num_labels == 11
    # layout: source rows, one mean row per cluster, the un-clustered images (row = label),
    # then the clustered images grouped by cluster; each image's feature moved with it
    assert mem.features.shape == (20, 8) and mem.num_clusters == 3 and mem.num_labels == 11
    assert mem.labels.tolist() == list(range(11)) + [5] * 4 + [6] * 3 + [7] * 2
    assert mem.target_rows(torch.tensor([3, 4, 5, 11, 0, 2, 6, 10])).tolist() == [
        11, 12, 13, 14, 15, 8, 9, 10]
    t = F.normalize(tgt, dim=1)
    torch.testing.assert_close(mem.target_features, t)
    torch.testing.assert_close(mem.features[mem.target_rows(torch.arange(12))], t)
    for row, images in ((5, [3, 4, 5, 11]), (6, [0, 1, 7]), (7, [8, 9])):
        torch.testing.assert_close(mem.features[row], t[images].mean(0), rtol=0, atol=1e-15)
    # a second relabelling rebuilds the layout from the current one
    mem.relabel(torch.tensor([-1, 0, 0, -1, 1, 1, 1, -1, 0, -1, 1, -1]))
    assert mem.labels.tolist() == list(range(12)) + [5] * 3 + [6] * 4
    assert mem.target_rows(torch.tensor([0, 3, 7, 9, 11])).tolist() == [7, 8, 9, 10, 11]
    torch.testing.assert_close(mem.target_features, t)
    torch.testing.assert_close(mem.features[5], t[[1, 2, 8]].mean(0), rtol=0, atol=1e-15)
    torch.testing.assert_close(mem.features[:5], class_centroids(src, src_y))
    with pytest.raises(ValueError, match="target_labels"):
        mem.relabel(torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="rows"):
        mem(torch.randn(2, 8, dtype=f64), torch.tensor([0, 19]))
    with pytest.raises(ValueError, match=r"not the rows \[5, 7\) that hold the cluster means"):
        mem(F.normalize(torch.randn(2, 8, dtype=f64), dim=1), torch.tensor([0, 6]))


def test_bfloat16_memory_halves_bytes():
    tgt = torch.randn(100, 64)
    m32 = HybridMemory.from_features(None, None, tgt)
    m16 = HybridMemory.from_features(None, None, tgt, dtype=torch.bfloat16)
    assert m16.features.element_size() * 2 == m32.features.element_size()
    f = F.normalize(torch.randn(4, 64), dim=1)
    rows = torch.tensor([0, 5, 9, 99])
    assert abs(m32(f, rows).item() - m16(f, rows).item()) < 0.05


def _embed(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.normalize(x @ w, dim=1)  # (B, D)


def test_twenty_step_run_matches_reference():
    """Loss, backward, SGD step and memory update, 20 times (relabelled at step 10): our
    memory, losses and gradients equal the plain float64 reference at every step."""
    g = torch.Generator().manual_seed(1)
    c_s, n_src, n_t, d_in, d = 6, 36, 40, 24, 16
    src_x = torch.randn(n_src, d_in, generator=g, dtype=f64)
    src_y = torch.arange(n_src) % c_s
    tgt_x = torch.randn(n_t, d_in, generator=g, dtype=f64)
    w0 = torch.randn(d_in, d, generator=g, dtype=f64)
    w_ours, w_ref = w0.clone().requires_grad_(), w0.clone().requires_grad_()
    memory = HybridMemory.from_features(_embed(src_x, w0), src_y, _embed(tgt_x, w0), dtype=f64)
    # The reference keeps SpCL's layout (target image k on row C_s + k); ours stores the
    # rows in label order, so its rows are compared through target_row.
    def dataset_layout(t):
        return torch.cat([t[:c_s], t[memory.target_row]])

    ref_memory = memory.features.clone()
    memory.relabel(torch.randint(-1, 8, (n_t,), generator=g))
    ref_labels = dataset_layout(memory.labels)
    for step in range(20):
        if step == 10:
            memory.relabel(torch.randint(-1, 5, (n_t,), generator=g))
            ref_labels = dataset_layout(memory.labels)
        si = torch.randint(0, n_src, (8,), generator=g)
        ti = torch.randint(0, n_t, (8,), generator=g)
        ti[3] = ti[0]  # the same target image twice in one batch
        rows_s, rows_t = memory.source_rows(src_y[si]), memory.target_rows(ti)
        ref_rows_t = c_s + ti
        # ours
        fs, ft = _embed(src_x[si], w_ours), _embed(tgt_x[ti], w_ours)
        loss = memory(fs, rows_s) + memory(ft, rows_t)
        loss.backward()
        # reference
        rs, rt = _embed(src_x[si], w_ref), _embed(tgt_x[ti], w_ref)
        ref = (hybrid_memory_loss_reference(rs, ref_memory, ref_labels, ref_labels[rows_s])[0]
               + hybrid_memory_loss_reference(rt, ref_memory, ref_labels, ref_labels[ref_rows_t])[0])
        ref.backward()
        assert abs(loss.item() - ref.item()) <= 1e-9, step
        torch.testing.assert_close(w_ours.grad, w_ref.grad, rtol=1e-7, atol=1e-9)
        with torch.no_grad():
            for w in (w_ours, w_ref):
                w -= 0.5 * w.grad
                w.grad = None
        memory.update(torch.cat([fs, ft]), torch.cat([rows_s, rows_t]))
        hybrid_memory_update_reference(ref_memory, torch.cat([rows_s, ref_rows_t]),
                                       torch.cat([rs, rt]).detach())
        torch.testing.assert_close(dataset_layout(memory.features), ref_memory, rtol=0,
                                   atol=1e-12)


def _ddp_worker(rank: int, world: int, init_file: str, result_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        g = torch.Generator().manual_seed(2)
        tgt = torch.randn(20, 8, generator=g, dtype=f64)
        memory = HybridMemory.from_features(None, None, tgt, dtype=f64)
        # Each rank has its own batch (different sizes; row 4 on both ranks).
        gr = torch.Generator().manual_seed(100 + rank)
        b = 3 + rank
        feats = F.normalize(torch.randn(b, 8, generator=gr, dtype=f64), dim=1)
        rows = torch.tensor([4, 7, 11, 4][:b]) if rank == 0 else torch.tensor([4, 0, 19, 7])
        loss = memory(feats.clone().requires_grad_(), rows)
        assert torch.isfinite(loss)
        memory.update(feats, rows)
        torch.save(memory.features, f"{result_file}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two gloo processes: ~7 s
def test_distributed_update_is_identical_on_every_rank(tmp_path):
    world = 2
    result = str(tmp_path / "memory")
    mp.spawn(_ddp_worker, args=(world, str(tmp_path / "init"), result), nprocs=world, join=True)
    got = [torch.load(f"{result}.{r}") for r in range(world)]
    assert torch.equal(got[0], got[1])
    # Expected: rank 0's batch, then rank 1's, in order.
    g = torch.Generator().manual_seed(2)
    expect = F.normalize(torch.randn(20, 8, generator=g, dtype=f64), dim=1)
    for rank in range(world):
        gr = torch.Generator().manual_seed(100 + rank)
        feats = F.normalize(torch.randn(3 + rank, 8, generator=gr, dtype=f64), dim=1)
        rows = torch.tensor([4, 7, 11]) if rank == 0 else torch.tensor([4, 0, 19, 7])
        hybrid_memory_update_reference(expect, rows, feats, 0.2)
    torch.testing.assert_close(got[0], expect, rtol=0, atol=1e-12)
    assert not os.path.exists(f"{result}.2")


def test_label_index_is_cached_until_relabel():
    memory = HybridMemory.from_features(None, None, torch.randn(10, 4))
    first = memory.label_index
    assert memory.label_index is first
    memory.relabel(torch.tensor([0, 0, 1, 1, -1, 2, 2, 2, -1, 0]))
    assert memory.label_index is not first and memory.label_index.num_labels == 5
    smcr_ext.hybrid_memory_update_(memory.features, torch.tensor([1]), torch.randn(1, 4), 0.2)
    assert memory.label_index.num_labels == 5


def test_forward_value_checks_name_the_argument(monkeypatch):
    memory = HybridMemory.from_features(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]),
                                        torch.randn(10, 4))
    f = F.normalize(torch.randn(3, 4), dim=1)
    good = torch.tensor([0, 5, 12])
    calls = []
    real = smcr_ext.hybrid_memory_loss
    monkeypatch.setattr(smcr_ext, "hybrid_memory_loss",
                        lambda *a, **k: calls.append(k.get("validate")) or real(*a, **k))
    loss = memory(f, good)
    ref = real(f, memory.features, memory.labels, memory.labels[good], memory.temperature,
               eps=memory.eps).loss
    torch.testing.assert_close(loss, ref)
    assert calls == [False]  # the module's single check replaces the op's
    with pytest.raises(ValueError, match=r"rows must be in \[0, M = 13\)"):
        memory(f, torch.tensor([0, 13, 1]))
    with pytest.raises(ValueError, match=r"rows must be in \[0, M = 13\)"):
        memory(f, torch.tensor([-1, 3, 1]))
    bad = f.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"features must be finite; rows \[1\]"):
        memory(bad, good)
    with pytest.raises(TypeError, match="rows must be an integer tensor"):
        memory(f, good.float())
    with pytest.raises(TypeError, match="features must be a torch.Tensor"):
        memory(f.numpy(), good)
    with pytest.raises(ValueError, match=r"rows must be \(B,\)"):
        memory(f, good[:2])


def test_update_checks_values_unless_told_they_were_checked(monkeypatch):
    import smcr.losses.hybrid_memory as module

    memory = HybridMemory.from_features(None, None, F.normalize(torch.randn(8, 4), dim=1))
    f = F.normalize(torch.randn(2, 4), dim=1)
    rows = torch.tensor([3, 5])
    checks = []
    real = module._first_invalid
    monkeypatch.setattr(module, "_first_invalid",
                        lambda *a, **k: checks.append(1) or real(*a, **k))
    memory.update(f, rows)  # default: this memory's validate (True): one check
    assert len(checks) == 1
    memory.update(f, rows, validate=False)  # a loop whose forward checked these already
    assert len(checks) == 1
    bad = f.clone()
    bad[0, 1] = float("inf")
    before = memory.features.clone()
    with pytest.raises(ValueError, match=r"features must be finite; rows \[0\]"):
        memory.update(bad, rows)
    with pytest.raises(ValueError, match=r"rows must be in \[0, M = 8\)"):
        memory.update(f, torch.tensor([3, 8]))
    memory.relabel(torch.tensor([0, 0, 1, -1, 1, 1, -1, 0]))  # mean rows 0 and 1
    before = memory.features.clone()
    with pytest.raises(ValueError, match=r"rows must be rows of samples"):
        memory.update(f, torch.tensor([1, 5]))
    assert torch.equal(memory.features, before)  # nothing written by a rejected update
    quiet = HybridMemory.from_features(None, None, torch.randn(8, 4), validate=False)
    checks.clear()
    quiet.update(f, rows)
    assert not checks
    quiet.update(f, rows, validate=True)
    assert len(checks) == 1


def test_update_and_forward_refuse_bad_types_and_shapes():
    """update takes its arguments as forward does: float rows are refused (not truncated to
    other rows), a non-tensor or 1-D features gets a TypeError / ValueError naming it, and
    nothing is written."""
    memory = HybridMemory.from_features(None, None, F.normalize(torch.randn(8, 4), dim=1))
    f = F.normalize(torch.randn(2, 4), dim=1)
    before = memory.features.clone()
    with pytest.raises(TypeError, match="rows must be an integer tensor"):
        memory.update(f, torch.tensor([3.0, 5.7]))
    with pytest.raises(TypeError, match="features must be a torch.Tensor"):
        memory.update(f.numpy(), torch.tensor([3, 5]))
    with pytest.raises(ValueError, match=r"rows must be \(B,\) = \(2,\)"):
        memory.update(f, torch.tensor([3]))
    with pytest.raises(ValueError, match="features must be 2-D"):
        memory.update(f[0], torch.tensor([3]))
    with pytest.raises(ValueError, match="features must be 2-D"):
        memory(f[0], torch.tensor([3]))
    assert torch.equal(memory.features, before)
    memory.update(f, [3, 5])  # a list of ints is fine
    assert not torch.equal(memory.features[[3, 5]], before[[3, 5]])


def test_update_keeps_the_cluster_means_current():
    """After every update, each cluster's mean row equals the mean of its image rows, also
    with a row listed twice and rows of several clusters in one batch; single-row labels
    (source classes, un-clustered images) are plain rows."""
    g = torch.Generator().manual_seed(4)
    memory = HybridMemory.from_features(torch.randn(9, 6, generator=g, dtype=f64),
                                        torch.arange(9) % 3, torch.randn(30, 6, generator=g,
                                                                         dtype=f64), dtype=f64)
    memory.relabel(torch.randint(-1, 5, (30,), generator=g))
    c_s, k, n_labels = 3, memory.num_clusters, memory.num_labels
    for step in range(5):
        idx = torch.randint(0, 30, (7,), generator=g)
        idx[2] = idx[0]
        rows = torch.cat([memory.source_rows(torch.tensor([step % 3])), memory.target_rows(idx)])
        memory.update(F.normalize(torch.randn(8, 6, generator=g, dtype=f64), dim=1), rows)
        for j in range(k):
            members = memory.features[n_labels:][memory.labels[n_labels:] == c_s + j]
            torch.testing.assert_close(memory.features[c_s + j], members.mean(0), rtol=0,
                                       atol=1e-15)


def test_state_dict_round_trip_and_old_states_without_target_row():
    g = torch.Generator().manual_seed(3)
    tgt = torch.randn(9, 4, generator=g)
    mem = HybridMemory.from_features(torch.randn(4, 4, generator=g), torch.tensor([0, 0, 1, 2]),
                                     tgt)
    mem.relabel(torch.tensor([1, -1, 0, 1, -1, 0, 0, -1, 1]))
    f = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    rows = mem.target_rows(torch.tensor([0, 4, 8]))
    want = mem(f, rows)
    again = HybridMemory(4, 3, 9)
    again.load_state_dict(mem.state_dict())
    assert torch.equal(again.target_row, mem.target_row)
    assert torch.equal(again.target_features, mem.target_features)
    torch.testing.assert_close(again(f, again.target_rows(torch.tensor([0, 4, 8]))), want)
    # a state saved before the rows were kept in label order: image k on row C_s + k
    old = HybridMemory.from_features(torch.randn(4, 4, generator=g), torch.tensor([0, 0, 1, 2]),
                                     tgt)
    state = {"features": old.features, "labels": old.labels}
    loaded = HybridMemory(4, 3, 9)
    loaded.load_state_dict(state)
    assert loaded.target_row.tolist() == list(range(3, 12))
    torch.testing.assert_close(loaded.target_features, F.normalize(tgt, dim=1))
    loaded.relabel(torch.tensor([1, -1, 0, 1, -1, 0, 0, -1, 1]))  # permutes from there
    torch.testing.assert_close(loaded.target_features, F.normalize(tgt, dim=1))
    # ... and one saved after a relabelling: SpCL's layout with clusters, same loss
    spcl = {"features": torch.cat([mem.features[:3], mem.target_features]),
            "labels": torch.cat([mem.labels[:3], mem.target_labels])}
    loaded = HybridMemory(4, 3, 9)
    loaded.load_state_dict(spcl)
    assert loaded.num_clusters == 2 and loaded.num_labels == mem.num_labels
    torch.testing.assert_close(loaded.target_features, mem.target_features)
    torch.testing.assert_close(loaded(f, loaded.target_rows(torch.tensor([0, 4, 8]))), want)
    bad = dict(mem.state_dict(), target_row=torch.tensor([3, 3, 4, 5, 6, 7, 8, 9, 10]))
    with pytest.raises(RuntimeError, match="not a layout of this class"):
        HybridMemory(4, 3, 9).load_state_dict(bad)
    with pytest.raises(RuntimeError, match="no target_row"):
        HybridMemory(4, 3, 9).load_state_dict({"features": mem.features, "labels": mem.labels})


def test_rows_of_out_of_range_ids_raise_or_are_caught():
    memory = HybridMemory.from_features(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]),
                                        torch.randn(10, 4))
    memory.relabel(torch.tensor([0, 0, 1, 1, -1, 1, 0, -1, -1, 1]))
    with pytest.raises(ValueError, match=r"indices must be in \[0, 10\); indices\[1\] = 10"):
        memory.target_rows(torch.tensor([3, 10]))
    with pytest.raises(ValueError, match=r"class_ids must be in \[0, 3\); class_ids\[0\] = 3"):
        memory.source_rows(torch.tensor([3, 0]))
    with pytest.raises(TypeError, match="indices must be an integer tensor"):
        memory.target_rows(torch.tensor([1.0]))
    # on a device, bad ids get row -1 (no host check there), which the forward refuses
    from smcr.losses.hybrid_memory import _rows_or_minus_one

    rows = _rows_or_minus_one(torch.tensor([0, 12, -3]), 10, memory.target_row)
    assert rows.tolist() == [int(memory.target_row[0]), -1, -1]
    assert _rows_or_minus_one(torch.tensor([2, 5]), 3, None).tolist() == [2, -1]
    with pytest.raises(ValueError, match=r"rows must be in \[0, M = 15\)"):
        memory(F.normalize(torch.randn(3, 4), dim=1), rows)
    assert memory.target_rows(torch.tensor([0, 9])).tolist() == [
        int(memory.target_row[0]), int(memory.target_row[9])]


def test_a_non_finite_bank_is_refused_at_relabel_and_load():
    # The loss and update check the features, not the bank; a NaN that got in through an
    # unvalidated update is caught at the next relabelling and when a state is loaded.
    g = torch.Generator().manual_seed(5)
    mem = HybridMemory.from_features(None, None, torch.randn(8, 4, generator=g))
    state = {k: v.clone() for k, v in mem.state_dict().items()}
    bad = torch.full((1, 4), float("nan"))
    mem.update(bad, mem.target_rows(torch.tensor([6])), validate=False)
    with pytest.raises(ValueError, match=r"NaN or Inf on rows \[6\]"):
        mem.relabel(torch.tensor([0, 0, 1, 1, -1, -1, 2, 2]))
    state["features"][2, 1] = float("inf")
    with pytest.raises(RuntimeError, match=r"features holds NaN or Inf on rows \[2\]"):
        HybridMemory(4, 0, 8).load_state_dict(state)
