"""LR schedules (poly decay with linear warmup from 1e-8, constant) and EMA arithmetic."""

from __future__ import annotations

import pytest
import torch

from fmcore.training import EMA, build_scheduler, lr_at

POLY = {"kind": "poly", "warmup_steps": 10, "power": 1.0, "lr_min": 1e-8}


@pytest.mark.parametrize(("step", "expected"), [
    (0, 1e-8),                          # warmup starts at 1e-8
    (5, 1e-8 + (1e-3 - 1e-8) * 0.5),    # halfway through the warmup
    (10, 1e-3),                         # peak
    (60, 1e-8 + (1e-3 - 1e-8) * 0.5),   # halfway through the decay (power 1)
    (110, 1e-8),                        # end of the run: back to lr_min
])
def test_poly_schedule_values(step, expected):
    assert lr_at(step, 1e-3, POLY, total_steps=110) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_poly_power_and_constant():
    sched = {**POLY, "power": 2.0, "lr_min": 0.0}
    assert lr_at(60, 1.0, sched, 110) == pytest.approx(0.25)
    const = {"kind": "constant"}
    assert [lr_at(s, 0.1, const, 5) for s in (0, 3, 100)] == [0.1, 0.1, 0.1]
    assert lr_at(1, 0.1, {"kind": "constant", "warmup_steps": 2}, 5) == pytest.approx((0.1 + 1e-8) / 2)


def test_schedule_refuses_bad_settings():
    with pytest.raises(ValueError, match="lr_schedule.kind='cosine'"):
        lr_at(20, 0.1, {"kind": "cosine"}, 10)
    with pytest.raises(ValueError, match="warmup_steps=10: must be < train.steps=10"):
        build_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), 0.1, POLY, 10)


def test_scheduler_drives_optimizer_lr():
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=1e-3)
    sched = build_scheduler(opt, 1e-3, POLY, 110)
    seen = []
    for _ in range(110):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([lr_at(s, 1e-3, POLY, 110) for s in range(110)], rel=1e-12)


def test_ema_update_is_the_convex_combination():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.75)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    for k, v in ema.state_dict().items():
        torch.testing.assert_close(v, 0.75 * before[k] + 0.25 * model.state_dict()[k])
    with pytest.raises(ValueError, match="ema_decay=1.5"):
        EMA(model, 1.5)
