"""CUDA versions of the training-loss ops: CUDA vs CPU (float32, within 1e-5) vs the float64
reference, gradcheck and opcheck on the device, bf16/fp16 stability, deterministic updates
with duplicate rows, a 20-step run, and 64-bit offsets. Run with `pytest -m cuda` on a GPU
machine with a CUDA build of smcr_ext (skipped elsewhere)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from smcr.losses import HybridMemory
from smcr.losses.reference import (
    hybrid_memory_loss_reference,
    hybrid_memory_update_reference,
    soft_triplet_reference,
)

import smcr_ext

pytestmark = pytest.mark.cuda
f64 = torch.float64
DEV = "cuda"


@pytest.fixture(autouse=True)
def _full_fp32_matmul():
    """CUDA vs CPU within 1e-5 needs true float32 products (no TF32)."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


def make_case(b=64, m=5000, d=256, num_labels=1500, absent=(0, 7, 1499), seed=0):
    g = torch.Generator().manual_seed(seed)
    memory = F.normalize(torch.randn(m, d, generator=g, dtype=f64), dim=1)
    present = torch.tensor([c for c in range(num_labels) if c not in absent])
    row_labels = present[torch.randint(0, present.numel(), (m,), generator=g)]
    k = min(m, present.numel())
    row_labels[:k] = present[:k]
    targets = row_labels[torch.randint(0, m, (b,), generator=g)]
    features = F.normalize(torch.randn(b, d, generator=g, dtype=f64), dim=1)
    return features, memory, row_labels, targets


def hm_loss_and_grad(features, memory, row_labels, targets, device, **kw):
    x = features.to(device).clone().requires_grad_()
    out = smcr_ext.hybrid_memory_loss(x, memory.to(device), row_labels.to(device),
                                      targets.to(device), **kw)
    w = torch.linspace(0.5, 1.5, features.shape[0], device=device, dtype=out.per_sample.dtype)
    (out.loss + (w * out.per_sample).sum()).backward()
    return out.loss.detach().cpu(), out.per_sample.detach().cpu(), x.grad.cpu()


# ------------------------------------------------------------------------------ hybrid memory


@pytest.mark.parametrize("block_size", [None, 1, 333])
def test_loss_cuda_matches_cpu_float32(block_size):
    features, memory, row_labels, targets = make_case()
    args = (features.float(), memory.float(), row_labels, targets)
    kw = {} if block_size is None else {"block_size": block_size}
    lc, pc, gc = hm_loss_and_grad(*args, "cpu", **kw)
    lg, pg, gg = hm_loss_and_grad(*args, DEV, **kw)
    assert abs(lg.item() - lc.item()) <= 1e-5
    assert (pg - pc).abs().max().item() <= 1e-5
    assert (gg - gc).abs().max().item() <= 1e-5
    lr, pr, gr = hm_loss_and_grad(features, memory, row_labels, targets, "cpu")  # float64 CPU
    assert abs(lg.item() - lr.item()) <= 1e-4


def test_loss_cuda_float64_matches_reference_and_gradcheck():
    features, memory, row_labels, targets = make_case(b=16, m=400, d=32, num_labels=150)
    lg, pg, gg = hm_loss_and_grad(features, memory, row_labels, targets, DEV, block_size=37)
    x = features.clone().requires_grad_()
    ref, ref_per = hybrid_memory_loss_reference(x, memory, row_labels, targets)
    w = torch.linspace(0.5, 1.5, features.shape[0], dtype=f64)
    (ref + (w * ref_per).sum()).backward()
    assert abs(lg.item() - ref.item()) <= 1e-9
    assert (gg - x.grad).abs().max().item() <= 1e-9
    small = make_case(b=4, m=30, d=6, num_labels=10, absent=(2,), seed=1)
    f, mem, lab, tgt = (t.to(DEV) for t in small)
    index = smcr_ext.label_index(lab)
    assert torch.autograd.gradcheck(
        lambda v: smcr_ext.hybrid_memory_loss(v, mem, index, tgt, 0.5, block_size=3),
        (f.clone().requires_grad_(),),
    )


def test_opcheck_cuda():
    f, mem, lab, tgt = (t.to(DEV) for t in make_case(b=4, m=30, d=6, num_labels=10, absent=(2,)))
    index = smcr_ext.label_index(lab)
    torch.library.opcheck(torch.ops.smcr.hybrid_memory_label_index.default, (lab, 10))
    for dtype, mdtype in ((f64, f64), (torch.float32, torch.float32),
                          (torch.float32, torch.bfloat16)):
        torch.library.opcheck(
            torch.ops.smcr.hybrid_memory_loss.default,
            (f.detach().to(dtype).requires_grad_(), mem.to(mdtype), index.label_ptr, index.label_rows, tgt,
             0.05, 1e-6, 4, True),
        )
    torch.library.opcheck(
        torch.ops.smcr.hybrid_memory_update_.default,
        (mem.clone(), torch.tensor([3, 0, 3, 29], device=DEV), f, 0.2),
    )
    s = f.float().repeat(2, 1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3], device=DEV)
    torch.library.opcheck(torch.ops.smcr.soft_triplet.default,
                          (s.requires_grad_(), s.detach() * 2, labels, 0.0))


def test_label_index_cuda_matches_cpu():
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 5000, (40000,), generator=g)
    cpu = smcr_ext.label_index(labels, num_labels=6000)
    gpu = smcr_ext.label_index(labels.to(DEV), num_labels=6000)
    assert torch.equal(gpu.label_ptr.cpu(), cpu.label_ptr)
    assert torch.equal(gpu.label_rows.cpu(), cpu.label_rows)


def test_loss_is_deterministic():
    features, memory, row_labels, targets = make_case(seed=4)
    a = hm_loss_and_grad(features.float(), memory.float(), row_labels, targets, DEV)
    b = hm_loss_and_grad(features.float(), memory.float(), row_labels, targets, DEV)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def _err_rule(ours: float, torch_own: float, ref: float, floor: float) -> None:
    """Flash-attention's rule: our error <= 2 x PyTorch's own error in the same dtype."""
    err_ours = abs(ours - ref)
    err_torch = abs(torch_own - ref)
    assert math.isfinite(ours)
    if math.isfinite(err_torch):
        assert err_ours <= 2 * err_torch + floor, (err_ours, err_torch)
    else:
        assert err_ours <= floor


@pytest.mark.parametrize("memory_dtype,feature_dtype", [
    (torch.bfloat16, torch.float32), (torch.bfloat16, torch.bfloat16),
    (torch.float32, torch.float16), (torch.float32, torch.bfloat16)])
def test_low_precision_stable_and_within_twice_torch_error(memory_dtype, feature_dtype):
    features, memory, row_labels, targets = make_case(b=64, m=3000, d=512, num_labels=900, seed=5)
    f = features.to(feature_dtype).to(DEV)
    mem = memory.to(memory_dtype).to(DEV)
    lab, tgt = row_labels.to(DEV), targets.to(DEV)
    x = f.clone().requires_grad_()
    out = smcr_ext.hybrid_memory_loss(x, mem, lab, tgt)
    out.loss.backward()
    assert torch.isfinite(out.per_sample).all() and torch.isfinite(x.grad).all()
    assert x.grad.dtype == feature_dtype
    xr = f.double().clone().requires_grad_()
    ref, _ = hybrid_memory_loss_reference(xr, mem.double(), lab, tgt)
    ref.backward()
    low = feature_dtype if feature_dtype != torch.float32 else memory_dtype
    torch_own, _ = hybrid_memory_loss_reference(f.to(low), mem.to(low), lab, tgt)
    _err_rule(out.loss.item(), torch_own.float().item(), ref.item(), floor=1e-4)
    rel = (x.grad.double() - xr.grad).norm() / xr.grad.norm()
    assert rel.item() <= 3e-2


def test_bf16_memory_cuda_close_to_cpu():
    features, memory, row_labels, targets = make_case(seed=6)
    args = (features.float(), memory.to(torch.bfloat16), row_labels, targets)
    lc, _, gc = hm_loss_and_grad(*args, "cpu")
    lg, _, gg = hm_loss_and_grad(*args, DEV)
    # CUDA rounds the features, label means and probabilities to bf16 for tensor-core products.
    assert abs(lg.item() - lc.item()) <= 2e-3 * max(1.0, lc.item())
    assert ((gg - gc).norm() / gc.norm()).item() <= 2e-2


def grouped_case(b=64, c_s=300, n_clustered=2000, k=250, n_single=3000, d=256, seed=30):
    """A memory stored in label order, as HybridMemory keeps it: source classes, clusters,
    then single-row labels, so most labels are zero-copy runs."""
    g = torch.Generator().manual_seed(seed)
    clusters = torch.sort(c_s + torch.randint(0, k, (n_clustered,), generator=g)).values
    row_labels = torch.cat([torch.arange(c_s), clusters,
                            torch.arange(c_s + k, c_s + k + n_single)])
    m = row_labels.numel()
    memory = F.normalize(torch.randn(m, d, generator=g, dtype=f64), dim=1)
    targets = row_labels[torch.randint(0, m, (b,), generator=g)]
    features = F.normalize(torch.randn(b, d, generator=g, dtype=f64), dim=1)
    return features, memory, row_labels, targets


@pytest.mark.parametrize("block_size", [None, 100, 4096])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, f64])
def test_zero_copy_runs_cuda(block_size, dtype):
    """The runs of a label-ordered memory are multiplied in place on CUDA: the same loss and
    gradient as the CUDA path that copies every mean (runs=None), and as the CPU. Block 4096
    holds all labels, yet the runs split the pass into several blocks."""
    features, memory, row_labels, targets = grouped_case()
    f = features.to(f64 if dtype == f64 else torch.float32)
    mem = memory.to(dtype)
    index = smcr_ext.label_index(row_labels.to(DEV))
    assert index.runs.shape[0] == 2 and index.runs.device.type == "cpu"
    res = {}
    for name, idx in (("runs", index), ("copied", dataclasses.replace(index, runs=None))):
        x = f.to(DEV).clone().requires_grad_()
        out = smcr_ext.hybrid_memory_loss(x, mem.to(DEV), idx, targets.to(DEV),
                                          block_size=block_size)
        out.loss.backward()
        res[name] = (out.per_sample.detach().cpu(), x.grad.cpu())
    tol = {torch.float32: 1e-5, torch.bfloat16: 1e-3, f64: 1e-12}[dtype]
    torch.testing.assert_close(res["runs"][0], res["copied"][0], rtol=tol, atol=tol)
    torch.testing.assert_close(res["runs"][1], res["copied"][1], rtol=tol * 10, atol=tol)
    lc, pc, gc = hm_loss_and_grad(f, mem, row_labels, targets, "cpu", block_size=block_size)
    x = f.to(DEV).clone().requires_grad_()
    out = smcr_ext.hybrid_memory_loss(x, mem.to(DEV), index, targets.to(DEV),
                                      block_size=block_size)
    w = torch.linspace(0.5, 1.5, f.shape[0], device=DEV, dtype=out.per_sample.dtype)
    (out.loss + (w * out.per_sample).sum()).backward()
    if dtype == torch.bfloat16:  # CUDA rounds features and probabilities to bf16
        assert abs(out.loss.item() - lc.item()) <= 2e-3 * max(1.0, lc.item())
        assert ((x.grad.cpu() - gc).norm() / gc.norm()).item() <= 2e-2
    else:
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(out.per_sample.detach().cpu(), pc, rtol=tol, atol=tol)
        torch.testing.assert_close(x.grad.cpu(), gc, rtol=tol * 10, atol=tol)


def test_zero_copy_blocks_of_a_large_batch_stay_in_budget():
    """B = 1024 on 40,000 single-row labels: the zero-copy blocks shrink from 32768 labels to
    16384 (64 MiB of float32 scores); the loss and gradient still match the CPU."""
    g = torch.Generator().manual_seed(21)
    b, d, m = 1024, 32, 40_000
    memory = F.normalize(torch.randn(m, d, generator=g), dim=1)
    features = F.normalize(torch.randn(b, d, generator=g), dim=1)
    row_labels = torch.arange(m)
    targets = torch.randint(0, m, (b,), generator=g)
    assert smcr_ext.label_index(row_labels.to(DEV)).runs.shape[0] == 1
    lc, pc, gc = hm_loss_and_grad(features, memory, row_labels, targets, "cpu")
    lg, pg, gg = hm_loss_and_grad(features, memory, row_labels, targets, DEV)
    # per-sample losses are ~log(40000) = 10.6: a float32 relative tolerance
    torch.testing.assert_close(lg, lc, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pg, pc, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gg, gc, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, f64])
def test_label_means_cuda_matches_cpu(dtype):
    _, memory, row_labels, _ = grouped_case()
    mem = memory.to(dtype)
    labels = torch.cat([torch.arange(-2, 600), torch.tensor([300, 300, 10_000])])
    cpu = smcr_ext.label_means(mem, smcr_ext.label_index(row_labels), labels)
    gpu = smcr_ext.label_means(mem.to(DEV), smcr_ext.label_index(row_labels.to(DEV)),
                               labels.to(DEV))
    assert gpu.dtype == dtype
    # the same order of additions on both; bf16 rounds the same float mean once
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-6 if dtype == torch.float32 else 0,
                               atol=1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, f64])
def test_refresh_means_cuda_matches_cpu(dtype):
    """The in-place refresh of cluster-mean rows (HybridMemory's layout) gives the CPU's rows;
    out-of-range rows are skipped on CUDA (the CPU rejects them)."""
    g = torch.Generator().manual_seed(33)
    memory = HybridMemory.from_features(torch.randn(100, 96, generator=g),
                                        torch.arange(100) % 30, torch.randn(3000, 96, generator=g),
                                        dtype=dtype)
    memory.relabel(torch.randint(-1, 200, (3000,), generator=g))
    idx = memory._means_index()
    rows = torch.cat([memory.target_rows(torch.randint(0, 3000, (256,), generator=g)),
                      memory.source_rows(torch.tensor([0, 29]))])
    with torch.no_grad():
        memory.features.add_(0.01 * torch.randn(memory.features.shape, generator=g).to(dtype))
    cpu = memory.features.clone()
    torch.ops.smcr._hybrid_memory_refresh_means_(cpu, rows, memory.labels, idx.label_ptr,
                                                 idx.label_rows)
    assert not torch.equal(cpu, memory.features)
    p = memory.features.shape[0]
    bad = torch.tensor([-1, p, 2 * p])
    gpu = memory.features.to(DEV)
    torch.ops.smcr._hybrid_memory_refresh_means_(
        gpu, torch.cat([bad, rows]).to(DEV), memory.labels.to(DEV), idx.label_ptr.to(DEV),
        idx.label_rows.to(DEV))
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-6 if dtype == torch.float32 else 0,
                               atol=1e-6 if dtype == torch.float32 else 1e-12)


def test_hybrid_memory_module_cuda_matches_cpu():
    """HybridMemory on CUDA (mean rows refreshed by the label-means kernel after every
    update) follows the CPU step by step."""
    g = torch.Generator().manual_seed(31)
    src, src_y = torch.randn(200, 64, generator=g), torch.arange(200) % 40
    tgt = torch.randn(1500, 64, generator=g)
    pseudo = torch.randint(-1, 120, (1500,), generator=g)
    res = {}
    for device in ("cpu", DEV):
        memory = HybridMemory.from_features(src.to(device), src_y.to(device), tgt.to(device))
        memory.relabel(pseudo.to(device))
        gb = torch.Generator().manual_seed(32)
        losses = []
        for _ in range(10):
            ti = torch.randint(0, 1500, (48,), generator=gb)
            f = F.normalize(torch.randn(48, 64, generator=gb), dim=1).to(device)
            rows = memory.target_rows(ti.to(device))
            losses.append(memory(f, rows).item())
            memory.update(f, rows)
        res[device] = (losses, memory.features.cpu())
    assert max(abs(a - b) for a, b in zip(res["cpu"][0], res[DEV][0], strict=True)) <= 1e-4
    assert (res["cpu"][1] - res[DEV][1]).abs().max().item() <= 1e-5


# ------------------------------------------------------------------------------ update


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, f64])
def test_update_cuda_matches_cpu_and_changes_only_listed_rows(dtype):
    g = torch.Generator().manual_seed(7)
    m, d, b = 500, 2048, 128
    memory = F.normalize(torch.randn(m, d, generator=g, dtype=f64), dim=1).to(dtype)
    feats = F.normalize(torch.randn(b, d, generator=g, dtype=f64), dim=1)
    feats = feats if dtype == f64 else feats.float()
    rows = torch.randint(0, 60, (b,), generator=g)  # many duplicates
    cpu = memory.clone()
    smcr_ext.hybrid_memory_update_(cpu, rows, feats, 0.2)
    gpu = memory.to(DEV)
    fg, rg = feats.to(DEV), rows.to(DEV)
    f_before, r_before = fg.clone(), rg.clone()
    smcr_ext.hybrid_memory_update_(gpu, rg, fg, 0.2)
    assert torch.equal(fg, f_before) and torch.equal(rg, r_before)
    tol = {torch.float32: 1e-6, torch.bfloat16: 8e-3, f64: 1e-13}[dtype]
    assert (gpu.cpu().double() - cpu.double()).abs().max().item() <= tol
    changed = (gpu.cpu() != memory).any(dim=1)
    assert set(torch.nonzero(changed).flatten().tolist()) <= set(rows.tolist())
    again = memory.to(DEV)
    smcr_ext.hybrid_memory_update_(again, rg, fg, 0.2)
    assert torch.equal(again, gpu)  # deterministic
    ref = memory.double().clone()
    hybrid_memory_update_reference(ref, rows, feats.double(), 0.2)
    assert (gpu.cpu().double() - ref).abs().max().item() <= max(tol, 1e-6)


def test_twenty_step_run_cuda_matches_cpu():
    g = torch.Generator().manual_seed(8)
    c_s, n_src, n_t, d_in, d = 50, 400, 2000, 64, 128
    src_x = torch.randn(n_src, d_in, generator=g)
    src_y = torch.arange(n_src) % c_s
    tgt_x = torch.randn(n_t, d_in, generator=g)
    w0 = torch.randn(d_in, d, generator=g)
    pseudo = torch.randint(-1, 300, (n_t,), generator=g)
    runs = {}
    for device in ("cpu", DEV):
        w = w0.clone().to(device).requires_grad_()
        sx, sy, tx = src_x.to(device), src_y.to(device), tgt_x.to(device)
        memory = HybridMemory.from_features(F.normalize(sx @ w0.to(device), dim=1), sy,
                                            F.normalize(tx @ w0.to(device), dim=1))
        memory.relabel(pseudo)
        gb = torch.Generator().manual_seed(9)
        losses = []
        for _ in range(20):
            si = torch.randint(0, n_src, (32,), generator=gb).to(device)
            ti = torch.randint(0, n_t, (32,), generator=gb).to(device)
            fs, ft = F.normalize(sx[si] @ w, dim=1), F.normalize(tx[ti] @ w, dim=1)
            rows_s, rows_t = memory.source_rows(sy[si]), memory.target_rows(ti)
            loss = memory(fs, rows_s) + memory(ft, rows_t)
            loss.backward()
            with torch.no_grad():
                w -= 0.1 * w.grad
                w.grad = None
            memory.update(torch.cat([fs, ft]), torch.cat([rows_s, rows_t]))
            losses.append(loss.item())
        runs[device] = (losses, memory.features.cpu(), w.detach().cpu())
    (lc, mc, wc), (lg, mg, wg) = runs["cpu"], runs[DEV]
    assert max(abs(a - b) for a, b in zip(lc, lg, strict=True)) <= 1e-4
    assert (mc - mg).abs().max().item() <= 1e-4
    assert (wc - wg).abs().max().item() <= 1e-4


# ------------------------------------------------------------------------------ soft triplet


def make_triplets(b=64, d=2048, ids=16, seed=10):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, d, generator=g, dtype=f64)
    t = s + 0.3 * torch.randn(b, d, generator=g, dtype=f64)
    labels = torch.arange(b) % ids
    labels[5] = 999  # an anchor without a positive
    return s, t, labels


@pytest.mark.parametrize("soft", [True, False])
def test_soft_triplet_cuda_matches_cpu(soft):
    s, t, labels = make_triplets()
    res = {}
    for device in ("cpu", DEV):
        x = s.float().to(device).requires_grad_()
        out = smcr_ext.soft_triplet(x, t.float().to(device) if soft else None, labels.to(device))
        w = torch.rand(s.shape[0], generator=torch.Generator().manual_seed(0)).to(device)
        (out.loss + (w * out.per_anchor).sum()).backward()
        res[device] = (out.loss.item(), out.per_anchor.cpu(), out.pos_index.cpu(),
                       out.neg_index.cpu(), x.grad.cpu())
    (lc, pc, ipc, inc, gc), (lg, pg, ipg, ing, gg) = res["cpu"], res[DEV]
    assert torch.equal(ipc, ipg) and torch.equal(inc, ing)
    assert abs(lc - lg) <= 1e-5 and (pc - pg).abs().max().item() <= 1e-5
    assert (gc - gg).abs().max().item() <= 1e-5


@pytest.mark.parametrize("soft", [True, False])
def test_soft_triplet_cuda_huge_norms_match_cpu(soft):
    # float32 rows of norm ~7e19 overflow the Gram matrix: both backends mine on exact
    # squared distances and find the pairs of the unscaled batch.
    s, t, labels = make_triplets(b=48, d=130, ids=12, seed=13)
    scale = 2.0**66
    base = smcr_ext.soft_triplet(s.float(), t.float() if soft else None, labels)
    outs = [smcr_ext.soft_triplet((s.float() * scale).to(dev),
                                  (t.float() * scale).to(dev) if soft else None, labels.to(dev))
            for dev in ("cpu", DEV)]
    for out in outs:
        assert torch.equal(out.pos_index.cpu(), base.pos_index)
        assert torch.equal(out.neg_index.cpu(), base.neg_index)
    cpu, gpu = outs
    torch.testing.assert_close(gpu.dist_ap.cpu(), cpu.dist_ap, rtol=1e-6, atol=0)
    torch.testing.assert_close(gpu.loss.cpu(), cpu.loss, rtol=1e-5, atol=0)


def test_soft_triplet_cuda_float64_reference_and_gradcheck():
    s, t, labels = make_triplets(b=32, d=64, ids=8)
    x = s.to(DEV).requires_grad_()
    out = smcr_ext.soft_triplet(x, t.to(DEV), labels.to(DEV))
    out.loss.backward()
    xr = s.clone().requires_grad_()
    ref, *_ = soft_triplet_reference(xr, t, labels)
    ref.backward()
    assert abs(out.loss.item() - ref.item()) <= 1e-9
    assert (x.grad.cpu() - xr.grad).abs().max().item() <= 1e-9
    small_s, small_t, small_l = make_triplets(b=8, d=5, ids=3, seed=11)
    tt = small_t.to(DEV)
    assert torch.autograd.gradcheck(
        lambda v: smcr_ext.soft_triplet(v, tt, small_l.to(DEV))[:2],
        (small_s.to(DEV).requires_grad_(),),
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_soft_triplet_low_precision_cuda(dtype):
    s, t, labels = make_triplets(seed=12)
    x = s.to(dtype).to(DEV).requires_grad_()
    out = smcr_ext.soft_triplet(x, t.to(dtype).to(DEV), labels.to(DEV))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(x.grad).all()
    ref, *_ = soft_triplet_reference(s.to(dtype).double(), t.to(dtype).double(), labels)
    assert abs(out.loss.item() - ref.item()) <= 1e-5


def test_soft_triplet_degenerate_cuda():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 0.0], [3.0, 0.0]], device=DEV,
                     requires_grad=True)
    out = smcr_ext.soft_triplet(x, x.detach() * 1.1, torch.tensor([0, 0, 1, 1], device=DEV))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(x.grad).all()
    y = torch.randn(6, 4, device=DEV, requires_grad=True)
    out = smcr_ext.soft_triplet(y, None, torch.zeros(6, dtype=torch.int64, device=DEV))
    out.loss.backward()
    assert out.loss.item() == 0.0 and torch.equal(y.grad, torch.zeros_like(y))


# ------------------------------------------------------------------------------ validation


def test_raw_op_refuses_an_empty_label_index_cuda():
    f, m = torch.randn(3, 4, device=DEV), torch.randn(5, 4, device=DEV)
    ptr = torch.zeros(1, dtype=torch.int64, device=DEV)
    rows = torch.arange(5, device=DEV)
    with pytest.raises(RuntimeError, match=r"label index is empty \(L = 0\) and B = 3"):
        torch.ops.smcr.hybrid_memory_loss(f, m, ptr, rows,
                                          torch.zeros(3, dtype=torch.int64, device=DEV), 0.05,
                                          1e-6, 16, False, None)


def test_bad_input_cuda():
    f, mem, lab, tgt = (t.to(DEV) for t in make_case(b=4, m=30, d=8, num_labels=10, absent=(3,)))
    with pytest.raises(ValueError, match="targets"):
        smcr_ext.hybrid_memory_loss(f, mem, lab, torch.tensor([0, 1, 3, 4], device=DEV))
    with pytest.raises(ValueError, match="features and memory"):
        smcr_ext.hybrid_memory_loss(f.cpu(), mem, lab, tgt)
    bad = f.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="features"):
        smcr_ext.hybrid_memory_loss(bad, mem, lab, tgt)
    with pytest.raises(ValueError, match="rows"):
        smcr_ext.hybrid_memory_update_(mem, torch.tensor([0, 30, 1, 2], device=DEV), f)


# ------------------------------------------------------------------------------ 64-bit offsets


@pytest.mark.slow
def test_64bit_offsets_bf16_memory():
    """M * D > 2^31 elements (a 4.3 GB bf16 memory): the last rows are read and updated at
    the right place."""
    m, d = 1_050_000, 2048
    assert m * d > 2**31
    torch.manual_seed(13)
    mem = torch.empty(m, d, dtype=torch.bfloat16, device=DEV)
    mem.normal_()
    mem.div_(mem.float().norm(dim=1, keepdim=True).to(torch.bfloat16))
    lab = torch.arange(m, device=DEV) // 1000  # 1050 labels of 1000 rows
    f = F.normalize(torch.randn(8, d, device=DEV), dim=1)
    tgt = torch.tensor([0, 1, 500, 1048, 1049, 1049, 3, 1000], device=DEV)
    out = smcr_ext.hybrid_memory_loss(f, mem, lab, tgt)
    means = torch.stack([mem[k * 1000:(k + 1) * 1000].float().mean(0) for k in range(1050)])
    s = f @ means.t() / 0.05  # (8, 1050)
    p = torch.softmax(s.double(), dim=1)[torch.arange(8), tgt]
    ref = -torch.log(p + 1e-6)  # eps in the denominator changes nothing at this scale
    assert (out.per_sample.double() - ref).abs().max().item() <= 2e-3
    rows = torch.tensor([m - 1, m - 2, 0], device=DEV)
    expect = F.normalize(0.2 * mem[rows].float() + 0.8 * f[:3], dim=1)
    smcr_ext.hybrid_memory_update_(mem, rows, f[:3], 0.2)
    assert (mem[rows].float() - expect).abs().max().item() <= 8e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_first_invalid_cuda_matches_cpu(dtype):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(700, 300, generator=g).to(dtype)
    y = torch.randn(700, 300, generator=g).to(dtype)
    x[650, 299] = float("inf")
    x[411, 3] = float("nan")
    y[12, 100] = -float("inf")
    index = torch.randint(-2, 60, (5000,), generator=g)
    counts = torch.randint(0, 2, (50,), generator=g)
    for args in [(x, None, None, 0, None), (x[:400], y, index, 50, counts),
                 (x[:10], None, index.clamp(0, 49), 50, counts.clamp(min=1))]:
        cpu = torch.ops.smcr._first_invalid(*args).tolist()
        dev = [a.to(DEV) if isinstance(a, torch.Tensor) else a for a in args]
        out = torch.ops.smcr._first_invalid(*dev)
        assert out.device.type == "cuda" and out.tolist() == cpu
    torch.library.opcheck(torch.ops.smcr._first_invalid.default,
                          (x.to(DEV), None, index.to(DEV), 60, None))
    mixed = (x[:400].to(DEV), y.double().to(DEV), index.to(DEV), 50, counts.to(DEV))
    assert torch.ops.smcr._first_invalid(*mixed).tolist() == \
        torch.ops.smcr._first_invalid(*[a.cpu() if isinstance(a, torch.Tensor) else a
                                        for a in mixed]).tolist()


# ------------------------------------------------------------------------------ graphs, syncs


def _graph_case(memory_dtype, layout="scattered"):
    if layout == "grouped":  # zero-copy runs in the loss
        features, memory, row_labels, _ = grouped_case(b=48, d=128, seed=22)
    else:
        features, memory, row_labels, _ = make_case(b=48, m=3000, d=128, num_labels=900,
                                                    seed=21)
    index = smcr_ext.label_index(row_labels.to(DEV))
    m = memory.shape[0]
    rows = torch.randint(0, m, (48,), generator=torch.Generator().manual_seed(2)).to(DEV)
    return features.float().to(DEV), memory.to(memory_dtype).to(DEV), index, rows


def _unchecked_step(f0, memory, index, rows, teacher=None):
    """One training step of the losses with validate=False: loss, backward, update (and the
    soft triplet when a teacher is given)."""
    f = f0.clone().requires_grad_()
    loss = smcr_ext.hybrid_memory_loss(f, memory, index, index.row_labels[rows],
                                       validate=False).loss
    if teacher is not None:
        loss = loss + smcr_ext.soft_triplet(f, teacher, index.row_labels[rows],
                                            validate=False).loss
    loss.backward()
    smcr_ext.hybrid_memory_update_(memory, rows, f.detach(), validate=False)
    return loss, f.grad


@pytest.mark.parametrize("layout", ["scattered", "grouped"])
@pytest.mark.parametrize("memory_dtype", [torch.float32, torch.bfloat16])
def test_unchecked_step_never_synchronises(memory_dtype, layout):
    f0, memory, index, rows = _graph_case(memory_dtype, layout)
    teacher = f0.flip(0).contiguous()
    _unchecked_step(f0, memory, index, rows, teacher)  # warm (cuBLAS handles, allocator)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _unchecked_step(f0, memory, index, rows, teacher)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()


@pytest.mark.parametrize("memory_dtype", [torch.float32, torch.bfloat16])
def test_hybrid_memory_unchecked_step_never_synchronises(memory_dtype):
    """HybridMemory with validate=False: loss, backward, update and the refresh of the
    cluster-mean rows queue device work only."""
    g = torch.Generator().manual_seed(33)
    memory = HybridMemory.from_features(
        torch.randn(100, 32, generator=g).to(DEV), (torch.arange(100) % 20).to(DEV),
        torch.randn(800, 32, generator=g).to(DEV), dtype=memory_dtype, validate=False)
    memory.relabel(torch.randint(-1, 60, (800,), generator=g).to(DEV))
    rows = memory.target_rows(torch.randint(0, 800, (32,), generator=g).to(DEV))
    f0 = F.normalize(torch.randn(32, 32, generator=g), dim=1).to(DEV)

    def step():
        f = f0.clone().requires_grad_()
        memory(f, rows).backward()
        memory.update(f.detach(), rows)

    step()  # warm (caches of the label indexes, cuBLAS handles)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()


@pytest.mark.parametrize("layout", ["scattered", "grouped"])
@pytest.mark.parametrize("memory_dtype", [torch.float32, torch.bfloat16])
def test_unchecked_step_replays_in_a_cuda_graph(memory_dtype, layout):
    f0, memory, index, rows = _graph_case(memory_dtype, layout)
    teacher = f0.flip(0).contiguous()
    eager, graphed = memory.clone(), memory.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        scratch = memory.clone()
        for _ in range(3):
            _unchecked_step(f0, scratch, index, rows, teacher)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss_g, grad_g = _unchecked_step(f0, graphed, index, rows, teacher)
    assert torch.equal(graphed, memory)  # capturing runs nothing
    for _ in range(2):  # each replay = one eager step on the same memory
        graph.replay()
        loss_e, grad_e = _unchecked_step(f0, eager, index, rows, teacher)
        torch.cuda.synchronize()
        # the same kernels; cuBLAS may pick another algorithm for the captured products
        torch.testing.assert_close(loss_g.detach(), loss_e.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad_g, grad_e, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(graphed.float(), eager.float(), rtol=1e-5, atol=1e-6)
