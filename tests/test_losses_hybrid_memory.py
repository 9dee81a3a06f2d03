"""smcr_ext.hybrid_memory_loss / hybrid_memory_update_ against the plain-PyTorch float64
reference (SpCL's formulation), gradcheck, opcheck, validation and mutation checks (CPU)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from smcr.losses.reference import hybrid_memory_loss_reference, hybrid_memory_update_reference

import smcr_ext

f64 = torch.float64


def make_case(b=12, m=57, d=16, num_labels=20, absent=(3, 11), dtype=f64, seed=0):
    """Unit features and memory; labels in [0, num_labels) with some labels absent; targets
    drawn from the present labels."""
    g = torch.Generator().manual_seed(seed)
    memory = F.normalize(torch.randn(m, d, generator=g, dtype=f64), dim=1).to(dtype)
    present = torch.tensor([c for c in range(num_labels) if c not in absent])
    row_labels = present[torch.randint(0, present.numel(), (m,), generator=g)]
    k = min(m, present.numel())
    row_labels[:k] = present[:k]  # every present label has a row (when m allows)
    targets = row_labels[torch.randint(0, m, (b,), generator=g)]
    features = F.normalize(torch.randn(b, d, generator=g, dtype=f64), dim=1).to(dtype)
    return features, memory, row_labels, targets


def test_hand_computed_case():
    # D = 2, rows e1, e2, -e1; labels 0, 1, 1 -> label 1's mean is (-0.5, 0.5).
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=f64)
    row_labels = torch.tensor([0, 1, 1])
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=f64)
    out = smcr_ext.hybrid_memory_loss(f, memory, row_labels, torch.tensor([0, 1]), 1.0, eps=0.0)
    # sample 0: s = (1, -0.5), target 0 -> log(1 + e^-1.5); sample 1: s = (0, 0.5), target 1.
    expect = torch.tensor([math.log1p(math.exp(-1.5)), math.log1p(math.exp(-0.5))], dtype=f64)
    torch.testing.assert_close(out.per_sample, expect, rtol=0, atol=1e-14)
    torch.testing.assert_close(out.loss, expect.mean(), rtol=0, atol=1e-14)


@pytest.mark.parametrize("temperature,eps", [(0.05, 1e-6), (0.05, 0.0), (0.5, 1e-3), (1.0, 1e-6)])
@pytest.mark.parametrize("block_size", [1, 7, 1024])
def test_matches_reference_float64(temperature, eps, block_size):
    features, memory, row_labels, targets = make_case()
    f1 = features.clone().requires_grad_()
    f2 = features.clone().requires_grad_()
    out = smcr_ext.hybrid_memory_loss(f1, memory, row_labels, targets, temperature, eps=eps,
                                      block_size=block_size)
    ref_loss, ref_per = hybrid_memory_loss_reference(f2, memory, row_labels, targets,
                                                     temperature, eps)
    torch.testing.assert_close(out.loss, ref_loss, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out.per_sample, ref_per, rtol=1e-9, atol=1e-9)
    # A gradient through both outputs: loss + weighted per-sample losses.
    w = torch.linspace(0.1, 1.0, features.shape[0], dtype=f64)
    (2.0 * out.loss + (w * out.per_sample).sum()).backward()
    (2.0 * ref_loss + (w * ref_per).sum()).backward()
    torch.testing.assert_close(f1.grad, f2.grad, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("block_size", [7, 50, 1024])
@pytest.mark.parametrize("dtype", [f64, torch.float32])
def test_zero_copy_singleton_runs(block_size, dtype):
    """Runs of singleton labels on consecutive rows are multiplied straight from the memory;
    mixed with clusters, absent labels and short runs, the result is unchanged."""
    g = torch.Generator().manual_seed(12)
    m, d, b = 300, 24, 20
    memory = F.normalize(torch.randn(m, d, generator=g, dtype=f64), dim=1)
    row_labels = torch.cat([
        torch.arange(100),                              # source classes: one long run
        100 + torch.randint(0, 20, (100,), generator=g),  # clusters
        torch.arange(125, 225),                         # un-clustered rows (120..124 absent)
    ])
    row_labels[[250, 251]] = row_labels[[251, 250]]  # breaks the run at 250
    targets = row_labels[torch.randint(0, m, (b,), generator=g)]
    features = F.normalize(torch.randn(b, d, generator=g, dtype=f64), dim=1)
    x = features.to(dtype).clone().requires_grad_()
    out = smcr_ext.hybrid_memory_loss(x, memory.to(dtype), row_labels, targets,
                                      block_size=block_size)
    out.loss.backward()
    xr = features.clone().requires_grad_()
    ref, ref_per = hybrid_memory_loss_reference(xr, memory, row_labels, targets)
    ref.backward()
    tol = 1e-10 if dtype == f64 else 2e-5
    torch.testing.assert_close(out.per_sample.double(), ref_per, rtol=tol, atol=tol)
    torch.testing.assert_close(x.grad.double(), xr.grad, rtol=tol * 10, atol=tol)


def test_zero_copy_run_longer_than_a_block():
    """A run of 9,000 singleton labels is split into zero-copy blocks of at most 8,192 (the
    20-label tail is copied like any short run)."""
    g = torch.Generator().manual_seed(13)
    m, d, b = 9020, 8, 6
    memory = F.normalize(torch.randn(m, d, generator=g, dtype=f64), dim=1)
    row_labels = torch.arange(m)
    targets = torch.tensor([0, 8191, 8192, 9000, 9019, 4000])
    features = F.normalize(torch.randn(b, d, generator=g, dtype=f64), dim=1)
    x = features.clone().requires_grad_()
    out = smcr_ext.hybrid_memory_loss(x, memory, row_labels, targets, 0.5)
    out.loss.backward()
    xr = features.clone().requires_grad_()
    ref, ref_per = hybrid_memory_loss_reference(xr, memory, row_labels, targets, 0.5)
    ref.backward()
    torch.testing.assert_close(out.per_sample, ref_per, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-8, atol=1e-10)


def _runs_reference(row_labels: torch.Tensor, num_labels: int, min_run: int):
    """(label0, count, row0) of the runs of single-row labels on consecutive rows, by loop."""
    rows_of = [[] for _ in range(num_labels)]
    for r, c in enumerate(row_labels.tolist()):
        rows_of[c].append(r)
    runs, c = [], 0
    while c < num_labels:
        if len(rows_of[c]) != 1:
            c += 1
            continue
        n = 1
        while (c + n < num_labels and len(rows_of[c + n]) == 1
               and rows_of[c + n][0] == rows_of[c][0] + n):
            n += 1
        if n >= min_run:
            runs.append([c, n, rows_of[c][0]])
        c += n
    return runs


def _grouped_case(seed=14, d=12, b=16, dtype=f64):
    """Rows in label order (as HybridMemory stores them): 60 source classes, 25 clusters,
    then 150 single-row labels, with an absent label and a swap that splits one run."""
    g = torch.Generator().manual_seed(seed)
    clusters = torch.sort(60 + torch.randint(0, 25, (120,), generator=g)).values
    row_labels = torch.cat([torch.arange(60), clusters, torch.arange(85, 235)])
    row_labels = row_labels[row_labels != 150]  # label 150 absent: the run breaks there
    row_labels[[250, 251]] = row_labels[[251, 250]]  # two singles out of row order
    m = row_labels.numel()
    memory = F.normalize(torch.randn(m, d, generator=g, dtype=f64), dim=1).to(dtype)
    targets = row_labels[torch.randint(0, m, (b,), generator=g)]
    features = F.normalize(torch.randn(b, d, generator=g, dtype=f64), dim=1).to(dtype)
    return features, memory, row_labels, targets


def test_label_index_finds_the_zero_copy_runs():
    g = torch.Generator().manual_seed(15)
    _, _, grouped, _ = _grouped_case()
    cases = [grouped, torch.arange(100), torch.randperm(200, generator=g) % 150,
             torch.cat([torch.arange(31), torch.arange(40, 72)]),  # 31 (too short) and 32
             torch.tensor([0, 0, 1])]
    for row_labels in cases:
        idx = smcr_ext.label_index(row_labels)
        want = _runs_reference(row_labels, idx.num_labels, smcr_ext.losses.ZERO_COPY_MIN_RUN)
        assert idx.runs.device.type == "cpu" and idx.runs.dtype == torch.int64
        assert idx.runs.tolist() == want
    # source classes; singles 85..149 (150 is absent); 151..155 too short (the swap of rows
    # 250 and 251 breaks the run); 158..234
    assert smcr_ext.label_index(grouped).runs.tolist() == [[0, 60, 0], [85, 65, 180],
                                                           [158, 77, 252]]
    assert smcr_ext.label_index(torch.arange(100)).runs.tolist() == [[0, 100, 0]]


def test_singleton_runs_op():
    """The op behind LabelIndex.runs: any minimum length, opcheck, a broken index refused."""
    _, _, grouped, _ = _grouped_case()
    idx = smcr_ext.label_index(grouped)
    op = torch.ops.smcr._hybrid_memory_singleton_runs
    for min_run in (1, 5, 61, 1000):
        assert op(idx.label_ptr, idx.label_rows, min_run).tolist() == \
            _runs_reference(grouped, idx.num_labels, min_run)
    torch.library.opcheck(op.default, (idx.label_ptr, idx.label_rows, 5))
    bad = idx.label_ptr.clone()
    bad[3] = bad[4] + 1  # not rising
    with pytest.raises(RuntimeError, match="label_ptr must rise from 0 to M"):
        op(bad, idx.label_rows, 5)
    with pytest.raises(RuntimeError, match="label_ptr must rise from 0 to M"):
        op(idx.label_ptr, idx.label_rows[:-1], 5)


@pytest.mark.parametrize("dtype", [f64, torch.float32, torch.bfloat16])
def test_runs_given_found_or_absent_give_the_same_loss(dtype):
    """The op multiplies the given runs in place, finds them itself when runs is None, and
    copies every label's mean when runs is empty: the same loss and gradient cache. Any part
    of a run is a run too (split blocks)."""
    features, memory, row_labels, targets = _grouped_case(
        dtype=torch.float32 if dtype == torch.bfloat16 else dtype)
    memory = memory.to(dtype)
    idx = smcr_ext.label_index(row_labels)
    assert idx.runs.shape[0] >= 2
    parts = torch.tensor([[r[0], r[1] // 2, r[2]] for r in idx.runs.tolist()]
                         + [[r[0] + r[1] // 2, r[1] - r[1] // 2, r[2] + r[1] // 2]
                            for r in idx.runs.tolist()])
    parts = parts[torch.argsort(parts[:, 0])]
    outs = []
    for runs in (idx.runs, None, torch.zeros(0, 3, dtype=torch.int64), parts, idx.runs[1:]):
        for block in (7, 1000):
            outs.append(torch.ops.smcr.hybrid_memory_loss(
                features, memory, idx.label_ptr, idx.label_rows, targets, 0.05, 1e-6, block,
                True, runs))
    tol = 1e-12 if dtype == f64 else 1e-5
    for loss, per, cache in outs[1:]:
        torch.testing.assert_close(loss, outs[0][0], rtol=tol, atol=tol)
        torch.testing.assert_close(per, outs[0][1], rtol=tol, atol=tol)
        torch.testing.assert_close(cache, outs[0][2], rtol=tol, atol=tol)
    ref, ref_per = hybrid_memory_loss_reference(features.double(), memory.double(), row_labels,
                                                targets)
    torch.testing.assert_close(outs[0][1].double(), ref_per, rtol=1e-4 if dtype != f64 else 1e-10,
                               atol=1e-4 if dtype != f64 else 1e-10)


def test_bad_runs_are_refused():
    features, memory, row_labels, targets = _grouped_case()
    idx = smcr_ext.label_index(row_labels)

    def call(runs):
        return torch.ops.smcr.hybrid_memory_loss(features, memory, idx.label_ptr, idx.label_rows,
                                                 targets, 0.05, 1e-6, 64, True, runs)

    good = idx.runs.tolist()
    bad = {
        "a cluster label": ([[60, 40, 60]], "does not match the label index"),
        "shifted rows": ([[good[0][0], good[0][1], good[0][2] + 1]], "does not match"),
        "overlapping": ([good[0], [good[0][0] + 1, 2, good[0][2] + 1]], "after the previous run"),
        "past L": ([[230, 10, 0]], "not a run of labels"),
        "past M": ([[0, 5, memory.shape[0] - 2]], "not a run of labels"),
        "empty run": ([[0, 0, 0]], "not a run of labels"),
        "negative": ([[-1, 3, 0]], "not a run of labels"),
    }
    for name, (runs, match) in bad.items():
        with pytest.raises(RuntimeError, match=match):
            call(torch.tensor(runs, dtype=torch.int64))
            pytest.fail(f"runs with {name} were accepted")
    with pytest.raises(RuntimeError, match=r"runs must be a \(K, 3\) int64"):
        call(idx.runs.float())
    with pytest.raises(RuntimeError, match=r"runs must be a \(K, 3\) int64"):
        call(idx.runs[:, :2])


@pytest.mark.parametrize("dtype", [f64, torch.float32, torch.bfloat16])
def test_label_means(dtype):
    """Means of the rows of given labels (repeats allowed; absent or out-of-range labels give
    zeros) in the memory's dtype, as the loss computes them (a float32 sum rounded once)."""
    g = torch.Generator().manual_seed(16)
    memory = torch.randn(40, 9, generator=g, dtype=f64).to(dtype)
    row_labels = torch.randint(0, 12, (40,), generator=g)
    row_labels[row_labels == 4] = 5  # label 4 absent
    idx = smcr_ext.label_index(row_labels, 13)  # label 12 absent too
    labels = torch.tensor([0, 5, 5, 4, 12, 13, -1, 11, 3])
    got = smcr_ext.label_means(memory, idx, labels)
    assert got.dtype == dtype and got.shape == (9, 9)
    acc = f64 if dtype == f64 else torch.float32
    for i, c in enumerate(labels.tolist()):
        rows = (row_labels == c).nonzero().flatten() if 0 <= c < 13 else torch.tensor([], dtype=torch.long)
        want = (memory[rows].to(acc).sum(0) / max(1, rows.numel())).to(dtype) if rows.numel() \
            else torch.zeros(9, dtype=dtype)
        torch.testing.assert_close(got[i], want, rtol=1e-6 if dtype == torch.float32 else 0,
                                   atol=1e-6 if dtype == torch.float32 else 1e-12)
    torch.library.opcheck(torch.ops.smcr._hybrid_memory_label_means.default,
                          (memory, idx.label_ptr, idx.label_rows, labels))
    with pytest.raises(TypeError, match="labels must be a 1-D integer tensor"):
        smcr_ext.label_means(memory, idx, labels.float())
    with pytest.raises(ValueError, match="index must cover"):
        smcr_ext.label_means(memory[:30].contiguous(), idx, labels)


def _refresh_case(dtype, seed=17):
    """A memory in HybridMemory's layout: rows [0, L) one per label (source and un-clustered
    rows are their own label; rows [2, 5) hold the means of clusters 2..4), then the members
    of clusters 2..4; the means index gives the mean rows the spare label L."""
    g = torch.Generator().manual_seed(seed)
    n_labels, members = 8, torch.tensor([2, 2, 2, 3, 3, 4, 4, 4, 4])
    row_labels = torch.cat([torch.arange(n_labels), members])
    memory = torch.randn(row_labels.numel(), 6, generator=g, dtype=f64).to(dtype)
    means_labels = row_labels.clone()
    means_labels[2:5] = n_labels
    return memory, row_labels, smcr_ext.label_index(means_labels, n_labels + 1)


@pytest.mark.parametrize("dtype", [f64, torch.float32, torch.bfloat16])
def test_refresh_means_writes_label_means_of_the_rows_clusters(dtype):
    """_hybrid_memory_refresh_means_ writes, for every cluster of the given rows, exactly what
    label_means returns (bitwise) to the cluster's mean row, and touches no other row."""
    memory, row_labels, idx = _refresh_case(dtype)
    rows = torch.tensor([9, 0, 14, 12, 9, 6])  # clusters 3, 4 (twice), 2; label 0; label 6
    want = memory.clone()
    want[[3, 4, 2]] = smcr_ext.label_means(memory, idx, torch.tensor([3, 4, 2]))
    got = memory.clone()
    torch.ops.smcr._hybrid_memory_refresh_means_(got, rows, row_labels, idx.label_ptr,
                                                 idx.label_rows)
    assert torch.equal(got, want)
    assert not torch.equal(got[2:5], memory[2:5])  # the means did change
    torch.library.opcheck(torch.ops.smcr._hybrid_memory_refresh_means_.default,
                          (memory.clone(), rows, row_labels, idx.label_ptr, idx.label_rows))


def test_refresh_means_bad_input():
    memory, row_labels, idx = _refresh_case(torch.float32)
    before = memory.clone()

    def call(rows, labels=row_labels, mem=memory):
        torch.ops.smcr._hybrid_memory_refresh_means_(mem, rows, labels, idx.label_ptr,
                                                     idx.label_rows)

    with pytest.raises(RuntimeError, match=r"rows\[1\] = 17 is outside \[0, 17\)"):
        call(torch.tensor([9, 17]))
    with pytest.raises(RuntimeError, match=r"rows\[0\] = -1"):
        call(torch.tensor([-1]))
    bad_labels = row_labels.clone()
    bad_labels[10] = 9  # outside [0, L = 9): the means index has labels 0..8
    with pytest.raises(RuntimeError, match="row 10 has label 9"):
        call(torch.tensor([10]), bad_labels)
    with pytest.raises(RuntimeError, match="row_labels must have one entry per memory row"):
        call(torch.tensor([9]), row_labels[:-1])
    with pytest.raises(RuntimeError, match="rows must be int64"):
        call(torch.tensor([9], dtype=torch.int32))
    with pytest.raises(RuntimeError, match="memory must be float32, bfloat16 or float64"):
        call(torch.tensor([9]), mem=memory.half())
    assert torch.equal(memory, before)  # nothing was written by a rejected call


def test_large_batch_and_labels_float64():
    features, memory, row_labels, targets = make_case(b=64, m=3000, d=32, num_labels=900,
                                                      absent=(0, 5, 899), seed=1)
    f1 = features.clone().requires_grad_()
    f2 = features.clone().requires_grad_()
    out = smcr_ext.hybrid_memory_loss(f1, memory, row_labels, targets, block_size=128)
    ref_loss, _ = hybrid_memory_loss_reference(f2, memory, row_labels, targets)
    assert abs(out.loss.item() - ref_loss.item()) <= 1e-6
    out.loss.backward()
    ref_loss.backward()
    assert (f1.grad - f2.grad).abs().max().item() <= 1e-6


def test_float32_close_to_float64_reference():
    features, memory, row_labels, targets = make_case(b=32, m=500, d=64, num_labels=120, seed=2)
    f32 = features.float().requires_grad_()
    out = smcr_ext.hybrid_memory_loss(f32, memory.float(), row_labels, targets, block_size=50)
    f64_ = features.clone().requires_grad_()
    ref, _ = hybrid_memory_loss_reference(f64_, memory, row_labels, targets)
    assert out.loss.dtype == torch.float32
    assert abs(out.loss.item() - ref.item()) <= 1e-5 * max(1.0, ref.item())
    out.loss.backward()
    ref.backward()
    torch.testing.assert_close(f32.grad.double(), f64_.grad, rtol=1e-4, atol=1e-6)


def test_gradcheck():
    features, memory, row_labels, targets = make_case(b=5, m=19, d=6, num_labels=9, absent=(2,))
    x = features.clone().requires_grad_()
    index = smcr_ext.label_index(row_labels)
    assert torch.autograd.gradcheck(
        lambda f: smcr_ext.hybrid_memory_loss(f, memory, index, targets, 0.5, block_size=3),
        (x,),
    )
    assert torch.autograd.gradcheck(
        lambda f: smcr_ext.hybrid_memory_loss(f, memory, index, targets, 0.05, eps=0.0).loss, (x,)
    )


def test_opcheck():
    features, memory, row_labels, targets = make_case(b=4, m=15, d=5, num_labels=8, absent=(1,))
    index = smcr_ext.label_index(row_labels)
    x = features.clone().requires_grad_()
    torch.library.opcheck(torch.ops.smcr.hybrid_memory_label_index.default, (row_labels, 8))
    torch.library.opcheck(
        torch.ops.smcr.hybrid_memory_loss.default,
        (x, memory, index.label_ptr, index.label_rows, targets, 0.05, 1e-6, 3, True),
    )
    torch.library.opcheck(
        torch.ops.smcr.hybrid_memory_loss.default,
        (features.float(), memory.float(), index.label_ptr, index.label_rows, targets, 0.05, 1e-6,
         1024, False),
    )
    _, _, grouped_labels, _ = _grouped_case()
    grouped = smcr_ext.label_index(grouped_labels)
    gf, gm, _, gt = _grouped_case()
    torch.library.opcheck(
        torch.ops.smcr.hybrid_memory_loss.default,
        (gf.clone().requires_grad_(), gm, grouped.label_ptr, grouped.label_rows, gt, 0.05, 1e-6,
         16, True, grouped.runs),
    )
    cache = torch.randn(4, 5, dtype=f64)
    g = smcr_ext._hybrid_memory_loss_backward(torch.tensor(2.0, dtype=f64),
                                              torch.full((4,), 0.5, dtype=f64), cache,
                                              torch.float32)
    torch.testing.assert_close(g, (cache * (2.0 / 4 + 0.5)).float())
    # grad_per_sample None (per_sample unused: autograd passes no tensor of zeros) = zeros
    g0 = smcr_ext._hybrid_memory_loss_backward(torch.tensor(2.0, dtype=f64), None, cache,
                                               torch.float64)
    torch.testing.assert_close(g0, cache * (2.0 / 4), rtol=0, atol=0)
    for gps in (torch.rand(4, dtype=f64), None):
        torch.library.opcheck(
            torch.ops.smcr._hybrid_memory_loss_backward.default,
            (torch.tensor(1.0, dtype=f64), gps, cache, torch.float32),
        )
    torch.library.opcheck(
        torch.ops.smcr.hybrid_memory_update_.default,
        (memory.clone(), torch.tensor([3, 0, 3, 14]), features, 0.2),
    )


def test_validate_false_same_result_and_memory_safe():
    features, memory, row_labels, targets = make_case(seed=11)
    a = smcr_ext.hybrid_memory_loss(features, memory, row_labels, targets)
    b = smcr_ext.hybrid_memory_loss(features, memory, row_labels, targets, validate=False)
    assert torch.equal(a.per_sample, b.per_sample)
    # Without validation the CPU kernels still refuse bad rows and targets (RuntimeError, no
    # out-of-bounds access); the CUDA kernels skip them.
    mem = memory.clone()
    with pytest.raises(RuntimeError, match="rows"):
        smcr_ext.hybrid_memory_update_(mem, torch.full((12,), 10**6), features, validate=False)
    with pytest.raises(RuntimeError, match="targets"):
        smcr_ext.hybrid_memory_loss(features, memory, row_labels, targets + 100, validate=False)


def test_label_index():
    row_labels = torch.tensor([3, 0, 3, 1, 0, 3])
    idx = smcr_ext.label_index(row_labels, num_labels=5)
    assert idx.label_ptr.tolist() == [0, 2, 3, 3, 6, 6]
    assert idx.label_rows.tolist() == [1, 4, 3, 0, 2, 5]
    assert idx.counts.tolist() == [2, 1, 0, 3, 0]
    with pytest.raises(ValueError, match="num_labels"):
        smcr_ext.label_index(row_labels, num_labels=3)
    with pytest.raises(ValueError, match="row_labels must be >= 0"):
        smcr_ext.label_index(torch.tensor([0, -1]))


def test_no_grad_and_noncontiguous_features():
    features, memory, row_labels, targets = make_case()
    ref, _ = hybrid_memory_loss_reference(features, memory, row_labels, targets)
    with torch.no_grad():
        out = smcr_ext.hybrid_memory_loss(features.t().contiguous().t(), memory, row_labels, targets)
    assert out.loss.grad_fn is None
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_features_stable_and_accurate(dtype):
    """Low-precision features: our error against float64 is at most twice PyTorch's own error
    in that dtype (flash-attention's rule), and never inf/NaN; the plain formula's exp of
    logits up to 1/tau = 20 overflows float16 (65504 < e^20)."""
    features, memory, row_labels, targets = make_case(b=16, m=200, d=32, num_labels=60, seed=3)
    fl = features.to(dtype)
    x = fl.clone().requires_grad_()
    out = smcr_ext.hybrid_memory_loss(x, memory.float(), row_labels, targets)
    assert torch.isfinite(out.per_sample).all()
    out.loss.backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad).all()
    ref, _ = hybrid_memory_loss_reference(fl.double(), memory.float().double(), row_labels, targets)
    torch_own, _ = hybrid_memory_loss_reference(fl, memory.to(dtype), row_labels, targets)
    err_ours = abs(out.loss.item() - ref.item())
    err_torch = abs(torch_own.float().item() - ref.item())
    if math.isfinite(err_torch):
        assert err_ours <= 2 * err_torch + 1e-6
    else:
        assert err_ours <= 1e-5


def test_bfloat16_memory():
    features, memory, row_labels, targets = make_case(b=16, m=300, d=32, num_labels=80, seed=4)
    mem_bf = memory.to(torch.bfloat16)
    x = features.float().requires_grad_()
    out = smcr_ext.hybrid_memory_loss(x, mem_bf, row_labels, targets, block_size=32)
    xr = features.clone().requires_grad_()
    ref, _ = hybrid_memory_loss_reference(xr, mem_bf.double(), row_labels, targets)
    assert abs(out.loss.item() - ref.item()) <= 1e-5 * max(1.0, ref.item())
    out.loss.backward()
    ref.backward()
    torch.testing.assert_close(x.grad.double(), xr.grad, rtol=1e-4, atol=1e-6)


def test_extreme_temperature_is_finite():
    features, memory, row_labels, targets = make_case(seed=5)
    x = features.float().requires_grad_()
    out = smcr_ext.hybrid_memory_loss(x, memory.float(), row_labels, targets, 1e-3)
    out.loss.backward()
    assert torch.isfinite(out.per_sample).all() and torch.isfinite(x.grad).all()
    ref, _ = hybrid_memory_loss_reference(features.float(), memory.float(), row_labels, targets,
                                          1e-3)
    assert not torch.isfinite(ref)  # the un-stabilised plain formula overflows (exp(1000))


# ------------------------------------------------------------------------------ update


@pytest.mark.parametrize("dtype", [f64, torch.float32])
def test_update_matches_sequential_reference_with_duplicates(dtype):
    features, memory, _, _ = make_case(b=10, m=30, d=8, dtype=dtype, seed=6)
    rows = torch.tensor([4, 1, 4, 29, 4, 1, 0, 7, 8, 29])
    ours, ref = memory.clone(), memory.clone()
    smcr_ext.hybrid_memory_update_(ours, rows, features, 0.2)
    hybrid_memory_update_reference(ref, rows, features, 0.2)
    tol = 1e-13 if dtype == f64 else 1e-6
    torch.testing.assert_close(ours, ref, rtol=0, atol=tol)
    # Order matters and is the batch order: reversing the batch changes row 4.
    rev = memory.clone()
    smcr_ext.hybrid_memory_update_(rev, rows.flip(0), features.flip(0), 0.2)
    assert not torch.allclose(rev[4], ours[4])


def test_update_bfloat16_memory():
    features, memory, _, _ = make_case(b=6, m=12, d=64, seed=7)
    rows = torch.tensor([2, 5, 2, 11, 0, 2])
    ours = memory.to(torch.bfloat16)
    ref = ours.double()
    smcr_ext.hybrid_memory_update_(ours, rows, features.float(), 0.2)
    hybrid_memory_update_reference(ref, rows, features, 0.2)
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours.double(), ref, rtol=0, atol=2e-2)
    torch.testing.assert_close(ours.double().norm(dim=1), torch.ones(12, dtype=f64), rtol=0,
                               atol=1e-2)


def test_mutating_ops_change_only_declared_tensor():
    features, memory, row_labels, targets = make_case(seed=8)
    rows = torch.tensor([5, 3, 5, 40, 0, 1, 2, 9, 10, 11, 12, 13])
    before = [t.clone() for t in (memory, rows, features, row_labels, targets)]
    # The loss changes nothing.
    smcr_ext.hybrid_memory_loss(features.clone().requires_grad_(), memory, row_labels, targets)
    for t, b in zip((memory, rows, features, row_labels, targets), before, strict=True):
        assert torch.equal(t, b)
    # The update changes the memory's listed rows only.
    smcr_ext.hybrid_memory_update_(memory, rows, features, 0.2)
    assert torch.equal(rows, before[1]) and torch.equal(features, before[2])
    changed = (memory != before[0]).any(dim=1)
    assert set(torch.nonzero(changed).flatten().tolist()) == set(rows.tolist())


# ------------------------------------------------------------------------------ bad input


class _NoKernel:
    """Stands in for torch.ops.smcr: only the value-check op may run."""

    def __getattr__(self, name):
        if name == "_first_invalid":
            return torch.ops.smcr._first_invalid
        raise AssertionError(f"kernel {name} ran before validation finished")


def _bad_loss_cases():
    features, memory, row_labels, targets = make_case(b=4, m=20, d=8, num_labels=10,
                                                      absent=(3,), seed=9)
    nan = features.clone()
    nan[2, 1] = float("nan")
    return [
        ("targets", dict(targets=torch.tensor([0, 1, 2, 10]))),  # out of range
        ("targets", dict(targets=torch.tensor([0, 1, 3, 4]))),  # label 3 has no row
        ("targets", dict(targets=torch.tensor([0, 1, -1, 4]))),
        ("features", dict(features=nan)),
        ("features", dict(features=features.float())),  # float32 features, float64 memory
        ("memory", dict(memory=memory.half())),
        ("features and memory", dict(features=features.to("meta"))),
        ("temperature", dict(temperature=0.0)),
        ("temperature", dict(temperature=-0.05)),
        ("eps", dict(eps=-1.0)),
        ("row_labels", dict(row_labels=row_labels[:-1])),
        ("targets", dict(targets=targets[:3])),
        ("features", dict(features=features[:, :5])),
    ], (features, memory, row_labels, targets)


@pytest.mark.parametrize("i", range(13))
def test_bad_loss_input_raises_before_kernels(i, monkeypatch):
    cases, (features, memory, row_labels, targets) = _bad_loss_cases()
    name, override = cases[i]
    args = dict(features=features, memory=memory, row_labels=row_labels, targets=targets,
                temperature=0.05)
    eps = override.pop("eps", 1e-6)
    args.update(override)
    index = smcr_ext.label_index(row_labels)
    if "row_labels" not in override:
        args["row_labels"] = index  # so that no label-index kernel is needed
    monkeypatch.setattr(smcr_ext.losses, "_ops", _NoKernel())
    with pytest.raises((ValueError, TypeError), match=name):
        smcr_ext.hybrid_memory_loss(**args, eps=eps)


@pytest.mark.parametrize(
    "name,override",
    [
        ("rows", dict(rows=torch.tensor([0, 20, 1, 2]))),
        ("rows", dict(rows=torch.tensor([0, -1, 1, 2]))),
        ("rows", dict(rows=torch.tensor([0, 1, 2]))),
        ("momentum", dict(momentum=1.5)),
        ("momentum", dict(momentum=-0.1)),
        ("features", dict(features=torch.full((4, 8), float("inf"), dtype=f64))),
        ("features", dict(features=torch.zeros(4, 8))),  # float32 vs float64 memory
    ],
)
def test_bad_update_input_raises_and_leaves_memory(name, override, monkeypatch):
    features, memory, _, _ = make_case(b=4, m=20, d=8, seed=10)
    before = memory.clone()
    args = dict(memory=memory, rows=torch.tensor([0, 5, 5, 19]), features=features, momentum=0.2)
    args.update(override)
    monkeypatch.setattr(smcr_ext.losses, "_ops", _NoKernel())
    with pytest.raises((ValueError, TypeError), match=name):
        smcr_ext.hybrid_memory_update_(**args)
    assert torch.equal(memory, before)
