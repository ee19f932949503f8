"""The mask's learning-rate "travel budget" and `mask_lr_multiplier: auto` (docs/method.md §4, §10).

W_M starts at 0 and the sparsity loss pulls it to ±0.5; how far the *task* loss can move it first depends
on the sum of the mask's learning rate over the steps in which the task loss still reaches it:

    budget = Σ_{s < S} mask_lr(s),   S = 0.8·s0 (released schedule: W_M detached from then on)
                                     S = s0     (paper schedule: the exact mask from then on)

The released recipe (lr 5e-5 on every parameter, W_M included; cosine with 100 warm-up steps; s0 = 10,000
of 30,000 steps) gives about 0.38. A short run at the same multiplier has a very different budget, so
`auto` picks the multiplier that gives the run the released recipe's budget under its own learning-rate
schedule (warm-up + cosine / linear / constant, as configured): multiplier = budget_released / Σ_{s<S} lr(s).
Both sums use the learning rates of the very scheduler the Trainer builds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import get_scheduler

from pat_lite.core.mask import Schedule, mask_moving_steps

AUTO = "auto"


@dataclass(frozen=True)
class LRSchedule:
    """A run's learning-rate schedule, as transformers' `get_scheduler` builds it."""

    learning_rate: float
    scheduler_type: str
    warmup_steps: int
    total_steps: int

    def rates(self, steps: int) -> list[float]:
        """The learning rate of optimizer steps 0 .. steps − 1 (the rate step s is taken with)."""
        param = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.SGD([param], lr=self.learning_rate)
        scheduler = get_scheduler(
            self.scheduler_type,
            optimizer=optimizer,
            num_warmup_steps=self.warmup_steps,
            num_training_steps=self.total_steps,
        )
        lambdas = getattr(scheduler, "lr_lambdas", None)
        if not lambdas:
            raise ValueError(
                f"mask_lr_multiplier=auto needs a step-wise learning-rate schedule; "
                f"lr_scheduler_type={self.scheduler_type!r} is not one"
            )
        return [self.learning_rate * lambdas[0](step) for step in range(steps)]


#: The authors' released recipe (docs/method.md §7): one learning rate for everything, W_M included.
RELEASED_RECIPE = LRSchedule(
    learning_rate=5e-5, scheduler_type="cosine", warmup_steps=100, total_steps=30_000
)
RELEASED_MILESTONE = 10_000
RELEASED_FREEZE_FRACTION = 0.8


def mask_travel_budget(
    lr: LRSchedule, milestone: int, schedule: Schedule, freeze_fraction: float = 0.8, multiplier: float = 1.0
) -> float:
    """Σ of the mask's learning rate (multiplier × lr) over the steps in which the task loss moves W_M."""
    steps = min(mask_moving_steps(milestone, schedule, freeze_fraction), lr.total_steps)
    return multiplier * sum(lr.rates(steps))


def released_budget() -> float:
    """The released recipe's budget (≈ 0.38), computed from its schedule."""
    return mask_travel_budget(RELEASED_RECIPE, RELEASED_MILESTONE, "released", RELEASED_FREEZE_FRACTION)


def resolve_mask_lr(
    multiplier: float | str, lr: LRSchedule, milestone: int, schedule: Schedule, freeze_fraction: float = 0.8
) -> dict[str, float]:
    """The multiplier to use (a number as given, or the one `auto` computes) and the budget it gives:
    `{"mask_lr_multiplier", "mask_travel_budget", "released_travel_budget"}`."""
    reference = released_budget()
    unit = mask_travel_budget(lr, milestone, schedule, freeze_fraction)
    if multiplier == AUTO:
        if unit <= 0:
            raise ValueError(
                "mask_lr_multiplier=auto: the learning rate is zero on every step in which the task loss "
                f"moves the mask (the first {mask_moving_steps(milestone, schedule, freeze_fraction)} steps)"
            )
        multiplier = reference / unit
    multiplier = float(multiplier)
    return {
        "mask_lr_multiplier": multiplier,
        "mask_travel_budget": multiplier * unit,
        "released_travel_budget": reference,
    }
