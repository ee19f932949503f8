"""The global mask: gate schedule, inference mask, frozen ablation, STE and sparsity loss
(docs/method.md §4-§6)."""

import math

import pytest
import torch

from pat_lite.core.mask import (
    GlobalMask,
    StraightThroughStep,
    frozen_gate,
    gate,
    gate_offset,
    gate_temperature,
    kept_channels,
    sparsity_loss,
)

S0 = 100


@pytest.mark.parametrize("step", [0, 1, 10, 37, 50, 79])
def test_temperature_and_offset_follow_the_formulas_before_the_freeze(step):
    expected_tau = 1 / (1 - math.log(max(1, step)) / math.log(S0) + 1e-6)
    assert gate_temperature(step, S0) == pytest.approx(expected_tau, rel=1e-12)
    assert gate_offset(step, S0) == pytest.approx(max(0.5 - step / S0, 0.0))


@pytest.mark.parametrize("step", [80, 81, 99, 150, 10_000])
def test_temperature_is_frozen_from_0_8_s0(step):
    assert gate_temperature(step, S0) == pytest.approx(1 / (1 - math.log(80) / math.log(S0) + 1e-6))
    assert gate_offset(step, S0) == 0.0


def test_mask_is_exactly_one_everywhere_at_step_zero():
    mask = GlobalMask(width=16, target=12)
    mask.milestone = S0
    mask.train()
    assert torch.equal(mask(), torch.ones(16))


def test_gate_matches_clamped_sigmoid_plus_offset():
    proxies = torch.tensor([-3.0, -0.2, 0.0, 0.1, 2.0])
    step = 40
    tau, beta = gate_temperature(step, S0), gate_offset(step, S0)
    expected = 1 / (1 + torch.exp(torch.clamp(-tau * proxies, max=10.0))) + beta
    assert torch.allclose(gate(proxies, step, S0), expected)
    # The clamp keeps even a hopeless channel at 1 / (1 + e^10), as in the released code.
    assert gate(torch.tensor([-1e6]), 90, S0).item() == pytest.approx(1 / (1 + math.exp(10)))


def test_eval_mask_is_exact_zero_one_on_positive_proxies():
    mask = GlobalMask(width=8, target=3)
    with torch.no_grad():
        mask.proxies.copy_(torch.tensor([0.4, -0.1, 0.2, -0.5, 0.0, 0.7, -0.3, -0.2]))
    mask.eval()
    assert mask().tolist() == [1, 0, 1, 0, 0, 1, 0, 0]


def test_when_count_differs_from_target_the_largest_proxies_are_kept_deterministically():
    proxies = torch.tensor([0.3, 0.3, -0.1, 0.9, 0.3, -0.2])  # 4 positive, target 2
    assert kept_channels(proxies, 2).tolist() == [0, 3]  # ties at 0.3 go to the lower index
    assert kept_channels(torch.zeros(6), 3).tolist() == [0, 1, 2]


def test_eval_mask_follows_changes_of_the_proxies():
    mask = GlobalMask(width=4, target=2).eval()
    with torch.no_grad():
        mask.proxies.copy_(torch.tensor([1.0, 1.0, -1.0, -1.0]))
    assert mask().tolist() == [1, 1, 0, 0]
    with torch.no_grad():
        mask.proxies.copy_(torch.tensor([-1.0, 1.0, 1.0, -1.0]))
    assert mask().tolist() == [0, 1, 1, 0]


def test_task_loss_gradient_reaches_the_proxies_only_before_0_8_s0():
    proxies = torch.nn.Parameter(torch.linspace(-0.3, 0.3, 6))
    weights = torch.arange(6.0)
    (gate(proxies, 79, S0) * weights).sum().backward()
    assert proxies.grad.abs().sum() > 0
    proxies.grad = None
    frozen = gate(proxies, 80, S0)
    assert not frozen.requires_grad
    # ... while the sparsity loss still moves them
    sparsity_loss(proxies, target=3).backward()
    assert proxies.grad.abs().sum() > 0


def test_frozen_ablation_fades_channels_beyond_the_target():
    early, late = frozen_gate(8, 6, 50, S0), frozen_gate(8, 6, 200, S0)
    assert torch.equal(early[:6], torch.ones(6))
    assert early[6:].tolist() == pytest.approx([math.exp(-2.77 * 0.5)] * 2)
    assert late[6:].tolist() == pytest.approx([math.exp(-2.77 * 4.0)] * 2)  # faster after s0
    mask = GlobalMask(width=8, target=6, mode="frozen")
    assert not any(p.requires_grad for p in mask.parameters())
    assert mask.eval()().tolist() == [1, 1, 1, 1, 1, 1, 0, 0]


def test_straight_through_forward_is_the_hard_count_and_backward_the_identity():
    proxies = torch.tensor([-0.5, -1e-4, 0.0, 0.2, 3.0], requires_grad=True)
    hard = StraightThroughStep.apply(proxies)
    assert hard.tolist() == [0, 0, 1, 1, 1]
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    hard.backward(upstream)
    assert torch.equal(proxies.grad, upstream)


def test_sparsity_loss_at_step_zero_is_finite_and_has_no_empty_group_nan():
    proxies = torch.zeros(16, requires_grad=True)
    loss = sparsity_loss(proxies, target=12)
    # count term 10 · |16 − 12| / 12, plus the (W + 0.5)² pull of the only non-empty group (W ≤ 0)
    assert loss.item() == pytest.approx(10 * 4 / 12 + 0.25)
    loss.backward()
    assert torch.isfinite(proxies.grad).all()


def test_sparsity_loss_value_by_hand():
    proxies = torch.tensor([0.7, 0.5, -0.1, -0.5])
    expected = 10 * abs(2 - 3) / 3 + ((0.2**2 + 0.0) / 2) + ((0.4**2 + 0.0) / 2)
    assert sparsity_loss(proxies, target=3).item() == pytest.approx(expected)
