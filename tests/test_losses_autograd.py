"""The C++ autograd of the training-loss ops (csrc/torch/autograd.cpp): gradients through each
output alone and both together against the float64 reference, the compute_grad=False error,
no double backward, and torch.compile (fake tensors through the C++ autograd kernel)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from smcr.losses.reference import hybrid_memory_loss_reference, soft_triplet_reference

import smcr_ext

f64 = torch.float64
ops = torch.ops.smcr


def hm_case(b=6, m=23, d=8, num_labels=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    memory = F.normalize(torch.randn(m, d, generator=g, dtype=f64), dim=1)
    row_labels = torch.arange(m) % num_labels
    targets = row_labels[torch.randint(0, m, (b,), generator=g)]
    features = F.normalize(torch.randn(b, d, generator=g, dtype=f64), dim=1)
    return features, memory, row_labels, targets


def triplet_case(b=8, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(b, d, generator=g, dtype=f64)
    teacher = torch.randn(b, d, generator=g, dtype=f64)
    labels = torch.arange(b) // 2
    return student, teacher, labels


@pytest.mark.parametrize("which", ["loss", "per_sample", "both"])
def test_hybrid_memory_grad_through_each_output(which):
    features, memory, row_labels, targets = hm_case()
    w = torch.linspace(0.5, 2.0, features.shape[0], dtype=f64)

    def objective(loss, per_sample):
        if which == "loss":
            return 3.0 * loss
        if which == "per_sample":
            return (w * per_sample).sum()
        return 3.0 * loss + (w * per_sample).sum()

    x = features.clone().requires_grad_()
    out = smcr_ext.hybrid_memory_loss(x, memory, row_labels, targets, 0.1)
    (gx,) = torch.autograd.grad(objective(out.loss, out.per_sample), x)
    r = features.clone().requires_grad_()
    loss, per = hybrid_memory_loss_reference(r, memory, row_labels, targets, 0.1)
    (gr,) = torch.autograd.grad(objective(loss, per), r)
    torch.testing.assert_close(gx, gr, rtol=0, atol=1e-10)


def test_hybrid_memory_gradient_dtype_follows_features():
    features, memory, row_labels, targets = hm_case()
    index = smcr_ext.label_index(row_labels)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = features.to(dtype).requires_grad_()
        smcr_ext.hybrid_memory_loss(x, memory.float(), index, targets).loss.backward()
        assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()


def test_backward_without_gradient_cache_raises():
    features, memory, row_labels, targets = hm_case()
    index = smcr_ext.label_index(row_labels)
    x = features.clone().requires_grad_()
    loss = ops.hybrid_memory_loss(x, memory, index.label_ptr, index.label_rows, targets, 0.05,
                                  1e-6, 16, False)[0]
    with pytest.raises(RuntimeError, match="compute_grad=False"):
        loss.backward()


def test_no_double_backward():
    features, memory, row_labels, targets = hm_case()
    x = features.clone().requires_grad_()
    loss = smcr_ext.hybrid_memory_loss(x, memory, row_labels, targets).loss
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    assert not g.requires_grad  # the backward op is not differentiable: nothing silently wrong


@pytest.mark.parametrize("which", ["loss", "per_anchor", "both"])
def test_soft_triplet_grad_through_each_output(which):
    student, teacher, labels = triplet_case()
    w = torch.linspace(0.5, 2.0, student.shape[0], dtype=f64)

    def objective(loss, per):
        if which == "loss":
            return 2.0 * loss
        if which == "per_anchor":
            return (w * per).sum()
        return 2.0 * loss + (w * per).sum()

    x = student.clone().requires_grad_()
    out = smcr_ext.soft_triplet(x, teacher, labels)
    (gx,) = torch.autograd.grad(objective(out.loss, out.per_anchor), x)
    r = student.clone().requires_grad_()
    loss, per, _, _ = soft_triplet_reference(r, teacher, labels)
    (gr,) = torch.autograd.grad(objective(loss, per), r)
    torch.testing.assert_close(gx, gr, rtol=0, atol=1e-10)
    # the teacher is a target, never trained through this loss
    t = teacher.clone().requires_grad_()
    out = smcr_ext.soft_triplet(student.clone().requires_grad_(), t, labels)
    out.loss.backward()
    assert t.grad is None


def test_torch_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    d = 16
    memory = F.normalize(torch.randn(20, d), dim=1)
    index = smcr_ext.label_index(torch.arange(20) % 10)
    targets = torch.tensor([0, 0, 3, 3, 5, 5, 9, 9])
    lin = torch.nn.Linear(d, d)
    x = torch.randn(8, d)

    def step(x):
        f = F.normalize(lin(x), dim=1)
        hm = ops.hybrid_memory_loss(f, memory, index.label_ptr, index.label_rows, targets, 0.05,
                                    1e-6, 4, True)[0]
        st = ops.soft_triplet(f, (f * 0.5).detach(), targets, 0.0)[0]
        return hm + 0.5 * st

    eager = step(x)
    eager.backward()
    g_eager = lin.weight.grad.clone()
    lin.weight.grad = None
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(x)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(lin.weight.grad, g_eager)

    # the Python wrappers too, without their value check (which reads from the device)
    def wrapped(x):
        f = F.normalize(lin(x), dim=1)
        hm = smcr_ext.hybrid_memory_loss(f, memory, index, targets, block_size=4,
                                         validate=False).loss
        st = smcr_ext.soft_triplet(f, (f * 0.5).detach(), targets, validate=False).loss
        return hm + 0.5 * st

    lin.weight.grad = None
    compiled = torch.compile(wrapped, fullgraph=True, backend="aot_eager")(x)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(lin.weight.grad, g_eager)
