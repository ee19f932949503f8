"""The one global channel mask M ∈ R^d shared by every HSM (docs/method.md §4-§6).

Training-time gate, for step s and milestone s0 (§4):

    τ(s) = 1 / (1 − ln(max(1, s)) / ln(s0) + 1e-6)        temperature, rises towards ∞ as s → s0
    β(s) = max(0.5 − s / s0, 0)                            offset, reaches 0 at s0 / 2
    M    = sigmoid(τ(s) · W_M) + β(s)                      W_M: trainable proxies, init 0

so M = sigmoid(0) + 0.5 = 1 at step 0 (the model is unchanged) and M tends to a step function of W_M.
From `freeze_fraction` · s0 on, τ stays at τ(freeze_fraction · s0) and W_M is detached inside the gate:
only the sparsity loss moves it any more. At inference (`module.eval()`) the gate is the exact 0/1 mask of
the channels `kept_channels` selects — the same ones the merge keeps.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def gate_temperature(step: int, milestone: int, freeze_fraction: float = 0.8) -> float:
    """τ(s), frozen at τ(freeze_fraction · s0) from that step on (released code)."""
    step = min(step, freeze_fraction * milestone)
    return 1.0 / (1.0 - math.log(max(1.0, step)) / math.log(milestone) + 1e-6)


def gate_offset(step: int, milestone: int) -> float:
    """β(s) = max(0.5 − s/s0, 0)."""
    return max(0.5 - step / milestone, 0.0)


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


def kept_channels(proxies: torch.Tensor, target: int) -> torch.Tensor:
    """Sorted indices of the channels PAT keeps: those with W_M > 0 when there are exactly `target` of them,
    otherwise the `target` largest W_M (ties broken by channel index, so the choice is deterministic)."""
    proxies = proxies.detach().float().cpu()
    positive = torch.nonzero(proxies > 0).flatten()
    if positive.numel() == target:
        return positive
    order = torch.sort(-proxies, stable=True).indices
    return torch.sort(order[:target]).values


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
    """Holds W_M (trainable mode) and produces M for the current step; shared by all HSMs."""

    def __init__(
        self,
        width: int,
        target: int,
        mode: str = "trainable",
        freeze_fraction: float = 0.8,
        clamp: float = 10.0,
        frozen_decay_rate: float = 2.77,
    ) -> None:
        super().__init__()
        self.width, self.target, self.mode = width, target, mode
        self.freeze_fraction, self.clamp, self.frozen_decay_rate = freeze_fraction, clamp, frozen_decay_rate
        if mode == "trainable":
            self.proxies = nn.Parameter(torch.zeros(width, dtype=torch.float32))
        else:
            # Frozen ablation: a fixed set of channels (index ≥ N) is faded out, nothing is learned.
            proxies = torch.full((width,), -1.0)
            proxies[:target] = 1.0
            self.register_buffer("proxies", proxies)
        #: Schedule state, set by `set_pat_step`; plain Python numbers so the gate needs no device sync.
        self.step = 0
        self.milestone: int | None = None
        self._eval_mask_cache: tuple[tuple, torch.Tensor] | None = None

    def forward(self) -> torch.Tensor:
        if not self.training:
            return self.inference_mask()
        if self.milestone is None:
            raise RuntimeError(
                "the PAT gate has no milestone step s0: call set_pat_step(model, step, total_steps) "
                "(the trainer does this every optimizer step) or set PATConfig.milestone_step"
            )
        if self.mode == "frozen":
            mask = frozen_gate(self.width, self.target, self.step, self.milestone, self.frozen_decay_rate)
            return mask.to(self.proxies.device)
        return gate(self.proxies, self.step, self.milestone, self.freeze_fraction, self.clamp)

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
        return f"width={self.width}, target={self.target}, mode={self.mode}, step={self.step}"
