"""Learning-rate schedule and parameter groups."""
from __future__ import annotations

import math

import pytest
import torch

from vmb.config import load_config
from vmb.engine.optim import build_optimizer, lr_at, lr_schedule, param_groups, set_lr

BASE, MAX, WARM, START, END = 1.6, 300.0, 35.0, 0.01, 0.0


def lr(epoch, cosine_after_warmup=False, warmup=WARM, end=END):
    return lr_at(epoch, BASE, MAX, warmup, START, end, cosine_after_warmup)


@pytest.mark.parametrize("after", [False, True])
def test_warmup_starts_at_warmup_start_lr(after):
    assert lr(0.0, after) == pytest.approx(START)


@pytest.mark.parametrize("after", [False, True])
def test_continuous_at_end_of_warmup(after):
    eps = 1e-7
    assert lr(WARM - eps, after) == pytest.approx(lr(WARM, after), rel=1e-5)
    assert lr(WARM + eps, after) == pytest.approx(lr(WARM, after), rel=1e-5)


@pytest.mark.parametrize("after", [False, True])
def test_ends_at_end_lr(after):
    assert lr(MAX, after) == pytest.approx(END, abs=1e-12)
    assert lr(MAX, after, end=0.001) == pytest.approx(0.001)


def test_warmup_is_linear():
    target = lr(WARM)
    for e in (5.0, 17.5, 30.0):
        assert lr(e) == pytest.approx(START + (target - START) * e / WARM)


def test_cosine_over_whole_run_midpoint():
    # X3D: the cosine spans [0, MAX]; at MAX/2 it is halfway between base and end.
    assert lr(MAX / 2) == pytest.approx((BASE + END) / 2)
    # At the end of warm-up it is the cosine's value there, below BASE.
    assert lr(WARM) == pytest.approx(END + (BASE - END) * (math.cos(math.pi * WARM / MAX) + 1) / 2)
    assert lr(WARM) < BASE


def test_cosine_after_warmup():
    # MViT: the cosine starts at BASE at the end of warm-up, halfway at the middle of [WARM, MAX].
    assert lr(WARM, True) == pytest.approx(BASE)
    assert lr((WARM + MAX) / 2, True) == pytest.approx((BASE + END) / 2)
    assert lr(WARM + 0.25 * (MAX - WARM), True) == pytest.approx(END + (BASE - END) * (math.cos(math.pi / 4) + 1) / 2)


def test_no_warmup():
    assert lr(0.0, warmup=0.0) == pytest.approx(BASE)
    assert lr(0.0, True, warmup=0.0) == pytest.approx(BASE)


def test_monotone_after_warmup():
    values = [lr(e) for e in range(int(WARM), int(MAX) + 1)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_lr_schedule_binds_config():
    cfg = load_config(None, ["SOLVER.BASE_LR", "0.4", "SOLVER.MAX_EPOCH", "10", "SOLVER.WARMUP_EPOCHS", "2",
                             "SOLVER.WARMUP_START_LR", "0.04", "SOLVER.COSINE_AFTER_WARMUP", "True"])
    schedule = lr_schedule(cfg)
    assert schedule(0.0) == pytest.approx(0.04)
    assert schedule(2.0) == pytest.approx(0.4)
    assert schedule(6.0) == pytest.approx(0.2)
    assert schedule(10.0) == pytest.approx(0.0, abs=1e-12)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 4, 3)           # weight 5-D, bias 1-D
        self.bn = torch.nn.BatchNorm3d(4)               # weight, bias 1-D
        self.norm = torch.nn.LayerNorm(4)               # 1-D, not batch norm
        self.fc = torch.nn.Linear(4, 2)                 # weight 2-D, bias 1-D
        self.frozen = torch.nn.Parameter(torch.zeros(3), requires_grad=False)


def ids(params):
    return {id(p) for p in params}


def group_by_params(groups):
    return {frozenset(ids(g["params"])): g["weight_decay"] for g in groups}


def test_param_groups_bn_and_1d():
    net = Net()
    groups = param_groups(net, weight_decay=5e-5, bn_weight_decay=0.0, zero_wd_1d=True)
    decay = ids([net.conv.weight, net.fc.weight])
    no_decay = ids([net.conv.bias, net.norm.weight, net.norm.bias, net.fc.bias])
    bn = ids([net.bn.weight, net.bn.bias])
    assert group_by_params(groups) == {frozenset(decay): 5e-5, frozenset(no_decay): 0.0, frozenset(bn): 0.0}
    assert id(net.frozen) not in set().union(*(ids(g["params"]) for g in groups))


def test_param_groups_without_zero_wd_1d():
    net = Net()
    groups = param_groups(net, weight_decay=1e-4, bn_weight_decay=3e-5, zero_wd_1d=False)
    bn = ids([net.bn.weight, net.bn.bias])
    decay = ids(p for p in net.parameters() if p.requires_grad) - bn
    assert group_by_params(groups) == {frozenset(decay): 1e-4, frozenset(bn): 3e-5}


def test_param_groups_each_param_once():
    net = Net()
    groups = param_groups(net, 1e-4, 0.0, True)
    all_ids = [id(p) for g in groups for p in g["params"]]
    assert len(all_ids) == len(set(all_ids)) == sum(1 for p in net.parameters() if p.requires_grad)
    assert all(g["params"] for g in groups)  # no empty groups


@pytest.mark.parametrize("method,cls", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_build_optimizer_and_set_lr(method, cls):
    cfg = load_config(None, ["SOLVER.OPTIMIZING_METHOD", method, "SOLVER.ZERO_WD_1D_PARAM", "True"])
    optimizer = build_optimizer(Net(), cfg)
    assert isinstance(optimizer, cls)
    if method == "sgd":
        assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"] is True
    set_lr(optimizer, 0.123)
    assert all(g["lr"] == 0.123 for g in optimizer.param_groups)
