"""`PATConfig`: every knob of PAT with the paper's defaults (docs/method.md §3-§7)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from transformers import PretrainedConfig

from pat_lite.core.arch import arch_spec, check_ratio, check_width, width_for_ratio
from pat_lite.core.mask import Schedule
from pat_lite.utils.typed import convert_fields

MaskMode = Literal["trainable", "frozen", "fixed"]
IdentityLoss = Literal["released", "paper", "off"]
Basis = Literal["coordinates", "pca"]
MaskInit = Literal["zero", "energy", "norm"]
AfterMilestone = Literal["trainable", "fixed"]
#: `fixed_channels` value that asks for the norm criterion's channels (computed when PAT is attached).
NORM_CRITERION = "norm"
#: `fixed_channels` value that asks for the channels of highest activation energy on calibration text (in
#: the PCA basis: the leading principal directions, i.e. the PCA slice), computed when PAT is attached.
ENERGY_CRITERION = "energy"


@dataclass
class PATConfig:
    """How to prune and tune. Give either `target_width` (d') or `pruning_ratio` (d' ≈ d · (1 − ratio)).

    Construction converts every field to its declared type (`hio_rank=2.5` is a ConfigError, "4" is 4)
    and checks what can be checked without a model (ranges, names); `resolve(model_config)` (called by
    `attach_pat`) checks the width against the model and returns a copy with `target_width` filled in.
    Both raise `ValueError` (ConfigError is one) saying what would work.
    """

    #: Fraction of hidden channels to remove (paper: 0.2, 0.25, 0.3). Ignored if `target_width` is set.
    pruning_ratio: float | None = 0.25
    #: Hidden size of the pruned model, N_target in the sparsity loss (Llama-2-7B at 25 %: 3072).
    target_width: int | None = None
    #: Extra divisor for widths chosen from a ratio (e.g. 64/128 for fast GPU matmuls). Always combined
    #: with num_attention_heads, which transformers requires.
    width_alignment: int | None = None
    #: Rank r of the Hybrid-Identity-Operator D = I + L1·L0 (§3). None → d // 20 (≈5 %, paper: 200 @ 4096).
    hio_rank: int | None = None
    #: Milestone step s0 of the gate schedule (§4). None → `milestone_fraction` · total training steps.
    milestone_step: int | None = None
    milestone_fraction: float = 1 / 3
    #: Gate schedule (§4): "paper" (Eq. 6: τ = 1/ε from s0 on, i.e. the exact 0/1 mask that evaluation
    #: and the merge use, for the rest of training) or "released" (the authors' code: τ frozen and W_M
    #: detached from `mask_freeze_fraction` · s0 on, the gate stays soft). The default is the paper's: on
    #: the real model it left the merged model orders of magnitude better (docs/method.md §10-§11).
    schedule: Schedule = "paper"
    #: Released schedule: from `mask_freeze_fraction` · s0 on, τ is frozen and the task loss stops moving
    #: the mask (§4). Not used by the paper's schedule.
    mask_freeze_fraction: float = 0.8
    #: The sigmoid's exponent is clamped at this value, as in the released code (§4).
    gate_exponent_clamp: float = 10.0
    #: "trainable": the learned global mask (PAT). "frozen": the ablation of §6 (channels ≥ N decay to 0).
    #: "fixed": the exact 0/1 mask on `fixed_channels` from step 0, nothing learned about the mask, HSMs
    #: trainable (the prune-ft-norm-hsm baseline: a fixed cut tuned with LoRA and HSMs).
    mask_mode: MaskMode = "trainable"
    #: The kept channels of `mask_mode="fixed"`: a list of N channel indices, "norm" for the N channels
    #: of largest writer norm (`pat_lite.core.slicing.norm_channels`) or "energy" for the N of highest
    #: activation energy on calibration text (ours; with basis="pca" the PCA slice), computed when PAT is
    #: attached.
    fixed_channels: list[int] | str | None = None
    #: Where W_M starts (ours, not the paper's; docs/method.md §12): "zero" (the paper: every gate at 1,
    #: the task decides), "energy" (+pull_target on the N channels of highest activation energy on
    #: calibration text, −pull_target on the rest: the sparsity loss is at rest there, only the task moves
    #: W_M, and the gate fades the others out gradually) or "norm" (the same by writer norm). "energy"
    #: needs calibration batches (`attach_pat(..., calibration=...)`; `train()` passes them).
    mask_init: MaskInit = "zero"
    #: The residual basis PAT prunes in (ours): "coordinates" (the paper) or "pca" — the base is first
    #: rotated, exactly, into the PCA basis of its residual stream on calibration text (as the PCA
    #: baseline), so channel i is the i-th principal direction; the merged model is still a plain model
    #: of the same class. With mask_init="energy" W_M starts ±pull_target by PCA rank.
    basis: Basis = "coordinates"
    #: What happens to W_M once the task loss stops moving it (s0 under the paper schedule, 0.8·s0 under
    #: the released one): "trainable" (both: the sparsity loss still moves it, so the kept set can change
    #: after s0) or "fixed" (ours: W_M is held where it was, the kept set is final from then on).
    mask_after_milestone: AfterMilestone = "trainable"
    #: Decay rate of the frozen-mask ablation: kept factor exp(−rate · s/s0) (§6).
    frozen_decay_rate: float = 2.77
    #: Identity loss variant (§5): "released" MSE(L0·L0ᵀ, I); "paper" adds ‖L1ᵀL1 − I‖ and a rank scale v.
    identity_loss: IdentityLoss = "released"
    identity_loss_weight: float = 1.0
    #: Sparsity loss (§5): count_weight · |Σ STE(W_M) − N| / N + pull_weight · (pulls of W_M to ±pull_target).
    sparsity_count_weight: float = 10.0
    sparsity_pull_weight: float = 1.0
    sparsity_pull_target: float = 0.5

    def __post_init__(self) -> None:
        # Types and names (mask_mode, schedule, identity_loss: their Literal values), and YAML 1.1's False
        # for a bare `off` → "off"; then the ranges below.
        convert_fields(self)
        if self.target_width is None and self.pruning_ratio is None:
            raise ValueError("give either target_width (the pruned hidden size) or pruning_ratio, e.g. 0.25")
        if self.target_width is None:
            check_ratio(self.pruning_ratio)
        if self.target_width is not None and int(self.target_width) < 1:
            raise ValueError(f"target_width must be a positive number of channels, got {self.target_width}")
        if self.hio_rank is not None and self.hio_rank < 1:
            raise ValueError(f"hio_rank must be ≥ 1, got {self.hio_rank} (paper: 200 for a 4096-wide model)")
        if self.milestone_step is not None and self.milestone_step < 2:
            raise ValueError(f"milestone_step s0 must be ≥ 2 (τ divides by ln s0), got {self.milestone_step}")
        if not 0.0 < self.milestone_fraction <= 1.0:
            raise ValueError(f"milestone_fraction must be in (0, 1], got {self.milestone_fraction}")
        if not 0.0 < self.mask_freeze_fraction <= 1.0:
            raise ValueError(f"mask_freeze_fraction must be in (0, 1], got {self.mask_freeze_fraction}")
        self._check_fixed_channels()
        if self.mask_mode != "trainable" and (
            self.mask_init != "zero" or self.mask_after_milestone != "trainable"
        ):
            raise ValueError(
                f"mask_init and mask_after_milestone shape a learned mask; mask_mode={self.mask_mode!r} "
                "has none (use mask_mode='trainable')"
            )
        if self.width_alignment is not None and self.width_alignment < 1:
            raise ValueError(f"width_alignment must be ≥ 1, got {self.width_alignment}")

    def _check_fixed_channels(self) -> None:
        channels = self.fixed_channels
        if self.mask_mode != "fixed":
            if channels is not None:
                raise ValueError(
                    f"fixed_channels is only used with mask_mode='fixed', not mask_mode={self.mask_mode!r}"
                )
            return
        if channels is None:
            raise ValueError(
                "mask_mode='fixed' needs fixed_channels: a list of kept channel indices, 'norm' for the "
                "channels of largest writer norm or 'energy' for those of highest activation energy"
            )
        if channels in (NORM_CRITERION, ENERGY_CRITERION):
            return
        if not isinstance(channels, list | tuple) or not channels:
            raise ValueError(
                f"fixed_channels must be a list of channel indices, 'norm' or 'energy', got {channels!r}"
            )
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in channels):
            raise ValueError(f"fixed_channels must be non-negative channel indices, got {channels}")
        if len(set(channels)) != len(channels):
            raise ValueError(f"fixed_channels lists a channel twice: {sorted(channels)}")

    # ------------------------------------------------------------------ model-dependent resolution
    def resolve(self, model_config: PretrainedConfig) -> PATConfig:
        """A copy with `target_width` and `hio_rank` set for this model; ValueError if impossible."""
        arch_spec(model_config)
        if self.target_width is not None:
            width = check_width(model_config, int(self.target_width), self.width_alignment)
        else:
            width = width_for_ratio(model_config, float(self.pruning_ratio), self.width_alignment)
        hidden = int(model_config.hidden_size)
        rank = self.hio_rank if self.hio_rank is not None else max(1, hidden // 20)
        if rank > hidden:
            raise ValueError(f"hio_rank {rank} exceeds the hidden size {hidden}; use at most {hidden}")
        channels = self.fixed_channels
        if isinstance(channels, list | tuple):
            if len(channels) != width:
                raise ValueError(
                    f"fixed_channels lists {len(channels)} channels but the target width is {width}; "
                    f"give exactly {width} (or set target_width={len(channels)})"
                )
            if max(channels) >= hidden:
                raise ValueError(f"fixed_channels has index {max(channels)}, beyond the hidden size {hidden}")
            channels = sorted(int(c) for c in channels)
        return dataclasses.replace(self, target_width=width, hio_rank=rank, fixed_channels=channels)

    @property
    def needs_calibration(self) -> bool:
        """Whether attaching needs calibration batches (a PCA basis, an energy-ranked start or cut)."""
        return self.basis == "pca" or self.mask_init == "energy" or self.fixed_channels == ENERGY_CRITERION

    def milestone_for(self, total_steps: int | None) -> int:
        """s0: `milestone_step`, or `milestone_fraction` of the run (the paper: 1/3 of all steps)."""
        if self.milestone_step is not None:
            return int(self.milestone_step)
        if not total_steps:
            raise ValueError(
                "the gate schedule needs its milestone step s0: set PATConfig.milestone_step, or pass "
                "total_steps to set_pat_step(...) so that s0 = milestone_fraction · total_steps"
            )
        return max(2, round(self.milestone_fraction * total_steps))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PATConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown PATConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)
