"""torch.ops.smcr._first_invalid, the one-op value check the loss wrappers run before their
kernels (csrc/kernels/validate.h), against a plain-PyTorch reference (CPU)."""

from __future__ import annotations

import pytest
import torch

import smcr_ext  # noqa: F401  (loads the ops)

ops = torch.ops.smcr


def first_true(mask: torch.Tensor) -> int:
    idx = torch.nonzero(mask).flatten()
    return int(idx[0]) if idx.numel() else -1


def reference(x, y=None, index=None, bound=0, counts=None) -> list[int]:
    out = [first_true(~torch.isfinite(x.float()).all(dim=1)) if x.shape[1] else -1,
           -1 if y is None else first_true(~torch.isfinite(y.float()).all(dim=1)), -1, -1]
    if index is not None:
        in_range = (index >= 0) & (index < bound)
        out[2] = first_true(~in_range)
        if counts is not None:
            present = torch.zeros_like(in_range)
            present[in_range] = counts[index[in_range]] > 0
            out[3] = first_true(in_range & ~present)
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("seed", range(6))
def test_matches_reference(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    rows, cols, bound = 50 + seed * 7, 1 + seed * 5, 20
    x = torch.randn(rows, cols, generator=g).to(dtype)
    y = torch.randn(rows, cols, generator=g).to(dtype)
    for t in (x, y):  # a few non-finite values at random places, sometimes none
        for _ in range(int(torch.randint(0, 3, (1,), generator=g))):
            r, c = (int(torch.randint(0, n, (1,), generator=g)) for n in (rows, cols))
            t[r, c] = (float("nan"), float("inf"), -float("inf"))[seed % 3]
    index = torch.randint(-3 if seed % 2 else 0, bound + (3 if seed % 3 else 0), (40,),
                          generator=g)
    counts = torch.randint(0, 3, (bound,), generator=g)
    y_other = y.double() if dtype != torch.float64 else y.half()  # mixed dtypes: widened
    y_short = y[: rows // 2, : max(1, cols // 2)].contiguous()  # y need not match x's shape
    for args in [(x, None, None, 0, None), (x, y, None, 0, None), (x, None, index, bound, None),
                 (x, y, index, bound, counts), (x, y_other, index, bound, counts),
                 (x, y_short, None, 0, None), (x.t(), y.t(), index, bound, None)]:
        assert ops._first_invalid(*args).tolist() == reference(*args)


def test_edge_cases():
    empty = torch.zeros(0, 4)
    assert ops._first_invalid(empty, None, torch.zeros(0, dtype=torch.int64), 0, None).tolist() \
        == [-1, -1, -1, -1]
    x = torch.zeros(3, 4)
    x[2, 3] = float("inf")
    x[1, 0] = float("-inf")
    assert ops._first_invalid(x, x.flip(0), None, 0, None).tolist() == [1, 0, -1, -1]
    big = torch.ones(1200, 1000)  # the parallel scan
    big[1100, 5] = float("nan")
    big[1199, 999] = float("nan")
    assert ops._first_invalid(big, None, None, 0, None).tolist()[0] == 1100
    # huge finite values are finite
    assert ops._first_invalid(torch.full((2, 2), 3.0e38), None, None, 0, None).tolist()[0] == -1


def test_bad_arguments_raise():
    x = torch.zeros(3, 4)
    idx = torch.tensor([0, 1])
    with pytest.raises(RuntimeError, match="x must be a 2-D floating tensor"):
        ops._first_invalid(torch.zeros(3), None, None, 0, None)
    with pytest.raises(RuntimeError, match="y must be a 2-D floating tensor"):
        ops._first_invalid(x, torch.zeros(3, 4, dtype=torch.int64), None, 0, None)
    with pytest.raises(RuntimeError, match="index must be int64"):
        ops._first_invalid(x, None, idx.int(), 2, None)
    with pytest.raises(RuntimeError, match="counts must have bound = 3"):
        ops._first_invalid(x, None, idx, 3, torch.zeros(2, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="counts needs an index"):
        ops._first_invalid(x, None, None, 2, torch.zeros(2, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="bound must be >= 0"):
        ops._first_invalid(x, None, idx, -1, None)


def test_opcheck():
    x = torch.randn(5, 3)
    x[3, 1] = float("nan")
    torch.library.opcheck(ops._first_invalid.default,
                          (x, x.flip(0), torch.tensor([0, 4, 2]), 4, torch.tensor([1, 0, 1, 1])))
    torch.library.opcheck(ops._first_invalid.default, (x, None, None, 0, None))


def test_raw_op_refuses_an_empty_label_index_with_a_batch():
    # L = 0 and B > 0: no target can be valid; refused from the shapes alone, so the CUDA op
    # (which reads no device values) refuses it too instead of returning a zero loss.
    f, m = torch.randn(3, 4), torch.randn(5, 4)
    ptr, rows = torch.zeros(1, dtype=torch.int64), torch.arange(5)
    with pytest.raises(RuntimeError, match=r"label index is empty \(L = 0\) and B = 3"):
        torch.ops.smcr.hybrid_memory_loss(f, m, ptr, rows, torch.zeros(3, dtype=torch.int64),
                                          0.05, 1e-6, 16, False, None)
    loss, per, _ = torch.ops.smcr.hybrid_memory_loss(f[:0], m, ptr, rows,
                                                     torch.zeros(0, dtype=torch.int64), 0.05,
                                                     1e-6, 16, False, None)
    assert per.numel() == 0
