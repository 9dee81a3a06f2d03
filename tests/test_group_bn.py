"""Batch norm over fixed-size groups: equal to BatchNorm applied to each group on its own
(outputs, gradients, running statistics), plain BatchNorm in eval mode, same state dict."""

import copy

import pytest
import torch
from smcr.models import ModelConfig, build_model
from smcr.models.dsbn import DSBN, convert_dsbn
from smcr.models.group_bn import GroupBatchNorm1d, GroupBatchNorm2d, convert_group_bn
from torch import nn


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 6 * 6, 5), nn.BatchNorm1d(5))


@pytest.mark.parametrize("group", [4, 8])
def test_equals_batch_norm_of_each_group_on_its_own(group):
    ref = _net()
    x = torch.randn(16, 3, 8, 8)
    grouped = convert_group_bn(copy.deepcopy(ref), group)
    y = grouped(x)
    copies = [copy.deepcopy(ref) for _ in range(16 // group)]
    y_ref = torch.cat([m(x[i * group:(i + 1) * group]) for i, m in enumerate(copies)])
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    # gradients: the sum of the per-group copies' gradients
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (y_ref * w).sum().backward()
    for name, p in grouped.named_parameters():
        g_ref = sum(dict(m.named_parameters())[name].grad for m in copies)
        torch.testing.assert_close(p.grad, g_ref, rtol=1e-4, atol=1e-5)
    # running statistics: the mean of the per-group updates
    for name, b in grouped.named_buffers():
        if b.is_floating_point():
            b_ref = sum(dict(m.named_buffers())[name] for m in copies) / len(copies)
            torch.testing.assert_close(b, b_ref, rtol=1e-6, atol=1e-6)


def test_small_batches_eval_mode_and_state_dict_are_plain_batch_norm():
    ref = _net()
    grouped = convert_group_bn(copy.deepcopy(ref), 8)
    assert isinstance(grouped[1], GroupBatchNorm2d) and isinstance(grouped[5], GroupBatchNorm1d)
    assert grouped.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(8, 3, 8, 8)
    torch.testing.assert_close(grouped(x), ref(x))  # a batch of one group
    grouped.eval(), ref.eval()
    x = torch.randn(24, 3, 8, 8)
    torch.testing.assert_close(grouped(x), ref(x))
    plain = _net()
    plain.load_state_dict(grouped.state_dict())  # loads into a plain network


def test_a_batch_that_is_not_whole_groups_is_refused():
    grouped = convert_group_bn(_net(), 8)
    with pytest.raises(ValueError, match="data.bn_group"):
        grouped(torch.randn(12, 3, 8, 8))


def test_dsbn_halves_and_frozen_neck_bias_are_converted():
    model = build_model(ModelConfig(arch="resnet18_ibn_a", width=0.125, num_classes=0))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    convert_group_bn(convert_dsbn(model), 4)
    dsbn = [m for m in model.modules() if isinstance(m, DSBN)]
    assert dsbn and all(isinstance(m.bn_s, (GroupBatchNorm1d, GroupBatchNorm2d)) for m in dsbn)
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in model.modules())
    still = {n.replace(".bn_s", "").replace(".bn_t", "") for n, p in model.named_parameters()
             if not p.requires_grad}
    assert still == frozen
    model.train()
    out = model.forward_all(torch.randn(16, 3, 64, 32))  # 8 source + 8 target, groups of 4
    assert torch.isfinite(out.embedding).all()


def test_group_size_must_be_a_non_negative_int():
    with pytest.raises(ValueError, match="group"):
        convert_group_bn(_net(), -1)
