"""The global mask: gate schedule, inference mask, frozen ablation, STE and sparsity loss
(docs/method.md §4-§6)."""

import math

import pytest
import torch

from pat_lite.core.mask import (
    EPSILON,
    GlobalMask,
    StraightThroughStep,
    frozen_gate,
    gate,
    gate_offset,
    gate_temperature,
    kept_channels,
    mask_moving_steps,
    schedule_temperature,
    sparsity_loss,
    top_channels,
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


# ------------------------------------------------------------------------------ the paper's schedule (Eq. 6)
def tau_formula(step: int, milestone: int = S0) -> float:
    return 1 / (1 - math.log(max(1, step)) / math.log(milestone) + 1e-6)


def paper_mask(width: int = 8, target: int = 3, proxies=None) -> GlobalMask:
    mask = GlobalMask(width=width, target=target, schedule="paper")
    mask.milestone = S0
    with torch.no_grad():
        values = [0.4, -0.1, 0.2, -0.5, 0.05, 0.7, -0.3, -0.2] if proxies is None else proxies
        mask.proxies.copy_(torch.tensor(values))
    return mask.train()


@pytest.mark.parametrize("step", [0, 1, 37, 80, 90, 99])
def test_paper_temperature_follows_the_formula_up_to_s0_without_the_freeze(step):
    assert schedule_temperature(step, S0, "paper") == pytest.approx(tau_formula(step), rel=1e-12)
    assert schedule_temperature(step, S0, "released") == pytest.approx(tau_formula(min(step, 80)), rel=1e-12)


@pytest.mark.parametrize("step", [100, 101, 5_000])
def test_paper_temperature_is_one_over_epsilon_from_s0_on(step):
    assert schedule_temperature(step, S0, "paper") == pytest.approx(1 / EPSILON)


@pytest.mark.parametrize("step", [0, 40, 80, 99])
def test_paper_gate_before_s0_is_the_soft_formula_and_keeps_the_task_gradient(step):
    mask = paper_mask()
    mask.step = step
    tau, beta = tau_formula(step), gate_offset(step, S0)
    expected = 1 / (1 + torch.exp(torch.clamp(-tau * mask.proxies.detach(), max=10.0))) + beta
    values = mask()
    torch.testing.assert_close(values, expected)
    (values * torch.arange(8.0)).sum().backward()  # not detached at 0.8·s0, unlike the released schedule
    assert mask.proxies.grad.abs().sum() > 0


@pytest.mark.parametrize("step", [100, 150])
def test_paper_gate_from_s0_on_is_exactly_the_inference_mask_with_no_task_gradient(step):
    mask = paper_mask()
    mask.step = step
    values = mask()
    assert torch.equal(values, mask.inference_mask())
    assert values.tolist() == [1, 0, 1, 0, 0, 1, 0, 0]  # the 3 largest of the 4 positive W_M
    assert not values.requires_grad
    sparsity_loss(mask.proxies, target=3).backward()  # only the sparsity loss still moves W_M
    assert mask.proxies.grad.abs().sum() > 0


def test_paper_gate_switches_from_soft_to_exact_at_s0():
    mask = paper_mask()
    mask.step = S0 - 1
    soft = mask().detach()
    assert not torch.equal(soft, mask.inference_mask())
    assert ((soft > 0) & (soft < 1)).any()
    mask.step = S0
    assert torch.equal(mask(), mask.inference_mask())


def test_moving_steps_are_those_whose_gate_passes_the_task_gradient():
    for milestone, schedule, expected in [(100, "released", 80), (100, "paper", 100), (6, "released", 5)]:
        moving = mask_moving_steps(milestone, schedule)
        assert moving == expected
        mask = GlobalMask(width=4, target=2, schedule=schedule)
        mask.milestone = milestone
        mask.train()
        for step, passes in [(moving - 1, True), (moving, False)]:
            mask.step = step
            assert mask().requires_grad is passes, (milestone, schedule, step)


# ----------------------------------------------------------------------------------------- fixed mask
def test_fixed_mask_is_the_exact_mask_on_its_channels_from_step_zero_in_train_and_eval():
    mask = GlobalMask(width=8, target=3, mode="fixed", fixed_channels=[6, 1, 4])
    assert list(mask.parameters()) == []  # nothing to learn: W_M gets no gradient
    expected = [0, 1, 0, 0, 1, 0, 1, 0]
    assert mask.train()().tolist() == expected  # no milestone needed either
    mask.milestone, mask.step = S0, 0
    assert mask().tolist() == expected
    assert mask.eval()().tolist() == expected
    assert kept_channels(mask.proxies, 3).tolist() == [1, 4, 6]


def test_fixed_mask_refuses_a_channel_list_of_the_wrong_length():
    with pytest.raises(ValueError, match="exactly 3 channel indices"):
        GlobalMask(width=8, target=3, mode="fixed", fixed_channels=[0, 1])


def test_top_channels_picks_the_largest_with_ties_to_the_lower_index():
    assert top_channels(torch.tensor([0.1, 0.5, 0.5, 0.2, 0.5]), 2).tolist() == [1, 2]


def test_the_count_term_pushes_every_channel_equally_so_only_the_task_loss_and_pulls_choose():
    # The reading of the study rests on this: the STE count term is a function of the count alone, so its
    # gradient is the same number for every channel; which channels fall is decided elsewhere.
    proxies = torch.tensor([0.31, -0.02, 0.004, 0.47, -0.4, 0.09], requires_grad=True)
    sparsity_loss(proxies, target=3, count_weight=10.0, pull_weight=0.0).backward()
    # 4 active > 3: every channel is pushed down alike
    assert torch.allclose(proxies.grad, torch.full_like(proxies, 10.0 / 3))
    proxies.grad = None
    sparsity_loss(proxies, target=3, count_weight=0.0, pull_weight=1.0).backward()
    # the pulls do tell channels apart: each moves towards ±0.5 on its own side of zero
    assert torch.all(proxies.grad[proxies > 0] < 0) and torch.all(proxies.grad[proxies <= 0] > 0)
