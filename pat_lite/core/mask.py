"""The one global channel mask M ∈ R^d shared by every HSM (docs/method.md §4-§6).

Training-time gate, for step s and milestone s0 (§4):

    τ(s) = 1 / (1 − ln(max(1, s)) / ln(s0) + 1e-6)        temperature, rises towards ∞ as s → s0
    β(s) = max(0.5 − s / s0, 0)                            offset, reaches 0 at s0 / 2
    M    = sigmoid(τ(s) · W_M) + β(s)                      W_M: trainable proxies, init 0

so M = sigmoid(0) + 0.5 = 1 at step 0 (the model is unchanged) and M tends to a step function of W_M.
Two schedules decide what happens late in training (`PATConfig.schedule`):

- "released" (the authors' code): from `freeze_fraction` · s0 on, τ stays at τ(freeze_fraction · s0) and
  W_M is detached inside the gate — only the sparsity loss moves it any more; the gate stays soft.
- "paper" (Eq. 6): τ follows the formula up to s0 (no freeze, W_M not detached) and is 1/ε from s0 on,
  i.e. the gate *is* the exact 0/1 mask over `kept_channels` — the mask evaluation and the merge use — so
  the rest of training sees what evaluation will see. Only the sparsity loss moves W_M after s0.

At inference (`module.eval()`) the gate is the exact 0/1 mask of the channels `kept_channels` selects —
the same ones the merge keeps. `force_mask` overrides the choice regardless of train/eval mode (used to
measure the train/eval gap). Besides the learned mask there are two fixed ones: the frozen-mask ablation
(§6) and a fixed cut ("fixed": the exact 0/1 mask on a given channel set from step 0, e.g. the norm cut).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Schedule = Literal["released", "paper"]
SCHEDULES = ("released", "paper")
#: What `GlobalMask.forward` returns when forced: the training gate or the exact 0/1 mask.
MaskKind = Literal["soft", "exact"]
#: ε of τ(s) = 1 / (1 − ln s / ln s0 + ε); the paper's schedule uses τ = 1/ε from s0 on (Eq. 6).
EPSILON = 1e-6


def gate_temperature(step: int, milestone: int, freeze_fraction: float = 0.8) -> float:
    """τ(s), frozen at τ(freeze_fraction · s0) from that step on (released code).

    With freeze_fraction = 1 this is the paper's Eq. 6: the formula up to s0 and τ(s0) = 1/ε after it.
    """
    step = min(step, freeze_fraction * milestone)
    return 1.0 / (1.0 - math.log(max(1.0, step)) / math.log(milestone) + EPSILON)


def schedule_temperature(
    step: int, milestone: int, schedule: Schedule, freeze_fraction: float = 0.8
) -> float:
    """τ(s) of a schedule: "released" freezes it at τ(freeze_fraction · s0); "paper" (Eq. 6) lets it reach
    1/ε at s0 and keeps it there (the gate is then the exact mask, see `GlobalMask.training_mask`)."""
    return gate_temperature(step, milestone, freeze_fraction if schedule == "released" else 1.0)


def gate_offset(step: int, milestone: int) -> float:
    """β(s) = max(0.5 − s/s0, 0)."""
    return max(0.5 - step / milestone, 0.0)


def mask_moving_steps(milestone: int, schedule: Schedule, freeze_fraction: float = 0.8) -> int:
    """How many optimizer steps, counted from step 0, in which the task loss still moves W_M (§4, §10).

    Released schedule: the steps s < freeze_fraction · s0 (W_M is detached from then on); paper schedule:
    the steps s < s0 (the exact mask from then on has no gradient with respect to W_M).
    """
    end = freeze_fraction * milestone if schedule == "released" else float(milestone)
    return math.ceil(end)


def gate(
    proxies: torch.Tensor, step: int, milestone: int, freeze_fraction: float = 0.8, clamp: float = 10.0
) -> torch.Tensor:
    """Training-time mask M = sigmoid(τ·W_M) + β, as 1 / (1 + exp(min(−τ·W_M, clamp))) + β."""
    if step >= freeze_fraction * milestone:
        proxies = proxies.detach()
    tau = gate_temperature(step, milestone, freeze_fraction)
    return 1.0 / (1.0 + torch.exp(torch.clamp(-tau * proxies, max=clamp))) + gate_offset(step, milestone)


def frozen_gate(width: int, keep: int, step: int, milestone: int, rate: float = 2.77) -> torch.Tensor:
    """The frozen-mask ablation (§6): channels with index ≥ `keep` are scaled by exp(−rate · s/s0).

    After s0 the decay speeds up to exp(−rate · (s/s0)²) (continuous at s0); channels < keep stay 1.
    """
    progress = step / milestone
    factor = math.exp(-rate * (progress if progress <= 1.0 else progress * progress))
    mask = torch.ones(width)
    mask[keep:] = factor
    return mask


def top_channels(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Sorted indices of the `count` largest scores, ties broken by channel index (deterministic)."""
    order = torch.sort(-scores.detach().float().cpu(), stable=True).indices
    return torch.sort(order[:count]).values


def kept_channels(proxies: torch.Tensor, target: int) -> torch.Tensor:
    """Sorted indices of the channels PAT keeps: those with W_M > 0 when there are exactly `target` of them,
    otherwise the `target` largest W_M (ties broken by channel index, so the choice is deterministic)."""
    proxies = proxies.detach().float().cpu()
    positive = torch.nonzero(proxies > 0).flatten()
    if positive.numel() == target:
        return positive
    return top_channels(proxies, target)


class StraightThroughStep(torch.autograd.Function):
    """Forward: the hard indicator 1(W_M ≥ 0). Backward: the identity (straight-through estimator, §5)."""

    @staticmethod
    def forward(ctx, proxies: torch.Tensor) -> torch.Tensor:
        return (proxies >= 0).to(proxies.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output


def sparsity_loss(
    proxies: torch.Tensor,
    target: int,
    count_weight: float = 10.0,
    pull_weight: float = 1.0,
    pull_target: float = 0.5,
) -> torch.Tensor:
    """Active-channel loss of the released code (§5):

        L = count_weight · |Σ_i STE(W_M,i) − N| / N
          + pull_weight · ( mean_{W>0} (W − 0.5)² + mean_{W≤0} (W + 0.5)² )

    An empty group contributes 0 (at step 0 every W_M is 0 and the first group is empty).
    """
    count = StraightThroughStep.apply(proxies).sum()
    loss = count_weight * (count - target).abs() / target
    positive = proxies > 0
    for group, centre in ((positive, pull_target), (~positive, -pull_target)):
        if group.any():
            loss = loss + pull_weight * (proxies[group] - centre).pow(2).mean()
    return loss


class GlobalMask(nn.Module):
    """Holds W_M and produces M for the current step; shared by all HSMs.

    Modes: "trainable" (PAT: W_M is a parameter), "frozen" (§6: channels ≥ target fade out) and "fixed"
    (the exact 0/1 mask on `fixed_channels` at every step). The two fixed modes keep ±1 proxies in a
    buffer, so `kept_channels` (and with it the eval mask and the merge) selects exactly their channel set.
    """

    def __init__(
        self,
        width: int,
        target: int,
        mode: str = "trainable",
        freeze_fraction: float = 0.8,
        clamp: float = 10.0,
        frozen_decay_rate: float = 2.77,
        schedule: Schedule = "paper",
        fixed_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.width, self.target, self.mode, self.schedule = width, target, mode, schedule
        self.freeze_fraction, self.clamp, self.frozen_decay_rate = freeze_fraction, clamp, frozen_decay_rate
        if mode == "trainable":
            self.proxies = nn.Parameter(torch.zeros(width, dtype=torch.float32))
        else:
            if mode == "fixed" and (fixed_channels is None or len(fixed_channels) != target):
                raise ValueError(f"a fixed mask needs exactly {target} channel indices, got {fixed_channels}")
            kept = list(range(target)) if mode == "frozen" else list(fixed_channels)
            proxies = torch.full((width,), -1.0)
            proxies[kept] = 1.0
            self.register_buffer("proxies", proxies)
        #: Schedule state, set by `set_pat_step`; plain Python numbers so the gate needs no device sync.
        self.step = 0
        self.milestone: int | None = None
        #: `mask_after_milestone="fixed"`: from this step on W_M is held at its value then (`hold`).
        self.hold_from: int | None = None
        # The held W_M and whether it is set: buffers, so that checkpoints and a resumed run carry them.
        self.register_buffer("held", torch.zeros(width, dtype=torch.float32))
        self.register_buffer("held_set", torch.zeros((), dtype=torch.bool))
        #: None: follow train/eval mode; "soft" or "exact": force that mask (see `force_mask`).
        self.forced: MaskKind | None = None
        self._eval_mask_cache: tuple[tuple, torch.Tensor] | None = None

    def start_from(self, kept: Sequence[int], value: float) -> None:
        """An informed start: W_M = +value on the channels `kept`, −value elsewhere (`PATConfig.mask_init`).
        With value = the sparsity loss's pull target and |kept| = N the sparsity loss is at rest there."""
        if self.mode != "trainable":
            raise ValueError(f"only a trainable mask has a start to choose (mode={self.mode!r})")
        start = torch.full((self.width,), -float(value), device=self.proxies.device)
        start[torch.as_tensor(list(kept), dtype=torch.long, device=start.device)] = float(value)
        with torch.no_grad():
            self.proxies.copy_(start)

    def hold(self) -> None:
        """From `hold_from` on, keep W_M where it was at that step: the first call there records it, every
        call puts it back (after each optimizer step, and before each forward pass)."""
        if self.hold_from is None or self.step < self.hold_from:
            return
        with torch.no_grad():
            if not bool(self.held_set):
                self.held.copy_(self.proxies.detach())
                self.held_set.fill_(True)
            self.proxies.copy_(self.held)

    def forward(self) -> torch.Tensor:
        kind = self.forced or ("soft" if self.training else "exact")
        return self.training_mask() if kind == "soft" else self.inference_mask()

    def training_mask(self) -> torch.Tensor:
        """M as training sees it at the current step (§4, §6), whatever the module's train/eval mode."""
        if self.mode == "fixed":
            return self.inference_mask()
        if self.milestone is None:
            raise RuntimeError(
                "the PAT gate has no milestone step s0: call set_pat_step(model, step, total_steps) "
                "(the trainer does this every optimizer step) or set PATConfig.milestone_step"
            )
        if self.mode == "frozen":
            mask = frozen_gate(self.width, self.target, self.step, self.milestone, self.frozen_decay_rate)
            return mask.to(self.proxies.device)
        if self.schedule == "paper":
            if self.step >= self.milestone:  # Eq. 6: τ = 1/ε, β = 0 — the exact mask, no task gradient
                return self.inference_mask()
            return gate(self.proxies, self.step, self.milestone, 1.0, self.clamp)
        return gate(self.proxies, self.step, self.milestone, self.freeze_fraction, self.clamp)

    def temperature(self) -> float:
        """τ of the current step under this mask's schedule (needs the milestone)."""
        return schedule_temperature(self.step, self.milestone, self.schedule, self.freeze_fraction)

    def inference_mask(self) -> torch.Tensor:
        """The exact 0/1 mask (τ = ∞, β = 0) over `kept_channels`; cached until W_M changes, since every
        HSM asks for it on every forward pass."""
        key = (self.proxies._version, self.proxies.data_ptr(), self.proxies.device)
        if self._eval_mask_cache is None or self._eval_mask_cache[0] != key:
            mask = torch.zeros(self.width, device=self.proxies.device)
            mask[kept_channels(self.proxies, self.target).to(mask.device)] = 1.0
            self._eval_mask_cache = (key, mask)
        return self._eval_mask_cache[1]

    def active_channels(self) -> int:
        """Σ 1(W_M > 0): how many channels would survive now."""
        return int((self.proxies > 0).sum().item())

    def extra_repr(self) -> str:
        return (
            f"width={self.width}, target={self.target}, mode={self.mode}, schedule={self.schedule}, "
            f"step={self.step}"
        )
