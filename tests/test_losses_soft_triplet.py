"""smcr_ext.soft_triplet (soft and hard versions) against MMT's formulation in float64,
gradcheck, opcheck, degenerate batches and validation (CPU)."""

from __future__ import annotations

import math

import pytest
import torch
from smcr.losses import SoftTripletLoss
from smcr.losses.reference import soft_triplet_reference

import smcr_ext

f64 = torch.float64


def make_batch(b=16, d=12, ids=5, seed=0, singles=(), dtype=f64):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(b, d, generator=g, dtype=f64).to(dtype)
    teacher = (student.double() + 0.3 * torch.randn(b, d, generator=g, dtype=f64)).to(dtype)
    labels = torch.arange(b) % ids
    for k, i in enumerate(singles):  # anchors whose identity appears once
        labels[i] = 1000 + k
    return student, teacher, labels


def test_hand_computed_hard_case():
    # 1-D points 0, 1 (id 0) and 3 (id 1): anchor 0: d+ = 1, d- = 3; anchor 1: d+ = 1, d- = 2;
    # anchor 2 has no positive and contributes nothing.
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=f64)
    out = smcr_ext.soft_triplet(x, None, torch.tensor([0, 0, 1]))
    expect = [math.log1p(math.exp(-2.0)), math.log1p(math.exp(-1.0)), 0.0]
    torch.testing.assert_close(out.per_anchor, torch.tensor(expect, dtype=f64), rtol=0, atol=1e-14)
    assert out.loss.item() == pytest.approx((expect[0] + expect[1]) / 2, abs=1e-14)
    assert out.pos_index.tolist() == [1, 0, -1] and out.neg_index.tolist() == [2, 2, -1]
    torch.testing.assert_close(out.dist_an, torch.tensor([3.0, 2.0, 0.0], dtype=f64))


@pytest.mark.parametrize("soft,margin", [(True, None), (False, 0.0), (False, 0.3)])
@pytest.mark.parametrize("singles", [(), (3, 7)])
def test_matches_reference_float64(soft, margin, singles):
    student, teacher, labels = make_batch(singles=singles)
    x1 = student.clone().requires_grad_()
    x2 = student.clone().requires_grad_()
    t = teacher if soft else None
    out = smcr_ext.soft_triplet(x1, t, labels, margin=margin)
    ref_loss, ref_per, ref_pos, ref_neg = soft_triplet_reference(x2, t, labels, margin)
    torch.testing.assert_close(out.loss, ref_loss, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.per_anchor, ref_per, rtol=1e-10, atol=1e-12)
    assert torch.equal(out.pos_index, ref_pos) and torch.equal(out.neg_index, ref_neg)
    w = torch.rand(student.shape[0], dtype=f64)
    (out.loss + (w * out.per_anchor).sum()).backward()
    (ref_loss + (w * ref_per).sum()).backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("soft", [True, False])
def test_gradcheck(soft):
    student, teacher, labels = make_batch(b=8, d=5, ids=3, singles=(5,), seed=1)
    x = student.clone().requires_grad_()
    t = teacher if soft else None
    assert torch.autograd.gradcheck(lambda s: smcr_ext.soft_triplet(s, t, labels)[:2], (x,))


def test_opcheck():
    student, teacher, labels = make_batch(b=8, d=5, ids=3, singles=(2,), seed=2)
    x = student.clone().requires_grad_()
    torch.library.opcheck(torch.ops.smcr.soft_triplet.default, (x, teacher, labels, 0.0))
    torch.library.opcheck(torch.ops.smcr.soft_triplet.default, (x.float(), None, labels, 0.2))
    out = torch.ops.smcr.soft_triplet(student, teacher, labels, 0.0)
    for gpa in (torch.rand(8, dtype=f64), None):  # None: per_anchor unused, counts as zero
        torch.library.opcheck(
            torch.ops.smcr._soft_triplet_backward.default,
            (torch.tensor(1.0, dtype=f64), gpa, student, out[2], out[3], out[4], out[5], out[6],
             torch.float64),
        )
    gl = torch.tensor(1.5, dtype=f64)
    args = (student, out[2], out[3], out[4], out[5], out[6], torch.float64)
    torch.testing.assert_close(torch.ops.smcr._soft_triplet_backward(gl, None, *args),
                               torch.ops.smcr._soft_triplet_backward(gl, torch.zeros(8, dtype=f64),
                                                                     *args), rtol=0, atol=0)


def test_teacher_gets_no_gradient():
    student, teacher, labels = make_batch(seed=3)
    x = student.clone().requires_grad_()
    t = teacher.clone().requires_grad_()
    smcr_ext.soft_triplet(x, t, labels).loss.backward()
    assert t.grad is None and x.grad is not None


def test_no_valid_anchor_gives_zero_loss_and_gradient():
    student, _, _ = make_batch(b=6, seed=4)
    x = student.clone().requires_grad_()
    for labels in (torch.zeros(6, dtype=torch.int64), torch.arange(6)):  # one id / all singles
        out = smcr_ext.soft_triplet(x, None, labels)
        assert out.loss.item() == 0.0 and (out.pos_index == -1).all()
        out.loss.backward()
        assert torch.equal(x.grad, torch.zeros_like(x))
        x.grad = None


def test_identical_points_are_finite():
    # sqrt(0) without a clamp gives NaN gradients (fast-reid#170); the clamp at 1e-12 does not.
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 0.0], [3.0, 0.0]], dtype=torch.float32)
    x.requires_grad_()
    out = smcr_ext.soft_triplet(x, x.detach() * 1.1, torch.tensor([0, 0, 1, 1]))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(x.grad).all()
    assert out.dist_ap.tolist() == pytest.approx([1e-6] * 4, rel=1e-3)


@pytest.mark.parametrize("soft", [True, False])
@pytest.mark.parametrize("scale", [2.0**66, 2.0**100])
def test_huge_norms_mine_the_pairs_of_unit_scale(soft, scale):
    # float32 rows of norm ~1e20: the Gram matrix's squared distances overflow to inf, so
    # mining used to pick wrong pairs (NaN comparisons). Now it falls back to exact squared
    # distances: a power-of-two scale changes nothing but the distances, exactly.
    student, teacher, labels = make_batch(b=32, d=16, ids=8, seed=9, singles=(4,),
                                          dtype=torch.float32)
    ref = smcr_ext.soft_triplet(student, teacher if soft else None, labels)
    x = (student * scale).requires_grad_()
    out = smcr_ext.soft_triplet(x, teacher * scale if soft else None, labels)
    assert out.pos_index.tolist() == ref.pos_index.tolist()
    assert out.neg_index.tolist() == ref.neg_index.tolist()
    assert torch.equal(out.dist_ap, ref.dist_ap * scale)
    assert torch.equal(out.dist_an, ref.dist_an * scale)
    # and the float64 formulation on the same data agrees (mining and loss)
    want, _, pos, neg = soft_triplet_reference(x.detach().double(),
                                               teacher.double() * scale if soft else None, labels)
    assert out.pos_index.tolist() == pos.tolist() and out.neg_index.tolist() == neg.tolist()
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-5)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs(dtype):
    student, teacher, labels = make_batch(b=32, d=64, ids=8, seed=5)
    s, t = student.to(dtype), teacher.to(dtype)
    x = s.clone().requires_grad_()
    out = smcr_ext.soft_triplet(x, t, labels)
    out.loss.backward()
    assert out.loss.dtype == torch.float32 and x.grad.dtype == dtype
    ref, *_ = soft_triplet_reference(s.double(), t.double(), labels)
    assert abs(out.loss.item() - ref.item()) <= 1e-5
    assert torch.isfinite(x.grad).all()


def test_module():
    student, teacher, labels = make_batch(seed=6)
    soft, hard = SoftTripletLoss(), SoftTripletLoss(margin=0.0)
    assert soft(student, labels, teacher).item() == pytest.approx(
        soft_triplet_reference(student, teacher, labels)[0].item(), rel=1e-12)
    assert hard(student, labels).item() == pytest.approx(
        soft_triplet_reference(student, None, labels, 0.0)[0].item(), rel=1e-12)
    with pytest.raises(ValueError, match="teacher"):
        soft(student, labels)
    with pytest.raises(ValueError, match="teacher"):
        hard(student, labels, teacher)
    with pytest.raises(ValueError, match="margin"):
        SoftTripletLoss(margin=2.0)


@pytest.mark.parametrize(
    "name,override",
    [
        ("student", dict(student=torch.full((6, 4), float("nan")))),
        ("teacher", dict(teacher=torch.full((6, 4), float("inf")))),
        ("teacher", dict(teacher=torch.zeros(5, 4))),
        ("labels", dict(labels=torch.zeros(5, dtype=torch.int64))),
        ("labels", dict(labels=torch.zeros(6))),
        ("margin", dict(teacher=None, margin=1.5)),
        ("margin", dict(margin=0.0)),  # a teacher and a margin
        ("student", dict(student=torch.zeros(6))),
    ],
)
def test_bad_input(name, override, monkeypatch):
    args = dict(student=torch.randn(6, 4), teacher=torch.randn(6, 4),
                labels=torch.tensor([0, 0, 1, 1, 2, 2]))
    args.update(override)
    margin = args.pop("margin", None)

    class NoKernel:  # only the value-check op may run
        def __getattr__(self, op):
            if op == "_first_invalid":
                return torch.ops.smcr._first_invalid
            raise AssertionError(f"kernel {op} ran before validation finished")

    monkeypatch.setattr(smcr_ext.losses, "_ops", NoKernel())
    with pytest.raises((ValueError, TypeError), match=name):
        smcr_ext.soft_triplet(args["student"], args["teacher"], args["labels"], margin=margin)
