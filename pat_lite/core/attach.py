"""Attach PAT to a stock `transformers` causal LM, and the loss terms it adds (docs/method.md §3-§5).

How it is attached (and why this way):
- All PAT state lives in one new submodule, `model.pat` (a `PATModule`): the global mask and the
  1 + 2·L HSMs. Nothing else changes: the model keeps its class and its existing parameter names.
- HSMs are applied by forward hooks on the *blocks* that write into the residual stream:
  `model.model.embed_tokens`, every `layers[i].self_attn` and every `layers[i].mlp`. Hooking the block
  rather than `o_proj` / `down_proj` matters with peft: LoRA wraps those Linear layers and adds its
  update outside the wrapped base layer, so only the block's output contains the whole writer.
- HSM weights are bare `nn.Parameter`s (no `nn.Linear`), so peft's "all-linear" never wraps them.

In `model.train()` the mask follows the schedule of the step given to `set_pat_step`; in `model.eval()`
it is the exact 0/1 mask the merge will use. `force_mask(model, "soft" | "exact")` picks one of the two
regardless of the mode (e.g. to measure the train/eval gap on one batch without dropout).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from pat_lite.core.arch import arch_spec
from pat_lite.core.config import ENERGY_CRITERION, NORM_CRITERION, PATConfig
from pat_lite.core.hsm import HSM
from pat_lite.core.mask import (
    GlobalMask,
    MaskKind,
    gate_offset,
    mask_moving_steps,
    sparsity_loss,
    top_channels,
)
from pat_lite.core.residual import Calibration, pca_rotation, residual_energy, rotate_residual
from pat_lite.core.slicing import norm_channels
from pat_lite.utils.errors import ConfigError


class PATModule(nn.Module):
    """The global mask and every HSM of one model, plus the resolved `PATConfig`."""

    def __init__(self, config: PATConfig, width: int, num_layers: int) -> None:
        super().__init__()
        self.config = config
        self.mask = GlobalMask(
            width,
            config.target_width,
            mode=config.mask_mode,
            freeze_fraction=config.mask_freeze_fraction,
            clamp=config.gate_exponent_clamp,
            frozen_decay_rate=config.frozen_decay_rate,
            schedule=config.schedule,
            fixed_channels=config.fixed_channels,
        )
        rank_scale = config.identity_loss == "paper"
        names = ["embed"] + [f"{kind}_{i}" for i in range(num_layers) for kind in ("attn", "mlp")]
        self.hsms = nn.ModuleDict({name: HSM(width, config.hio_rank, rank_scale) for name in names})
        self._hook_handles: list[Any] = []

    def sparsify(self, name: str, y: torch.Tensor) -> torch.Tensor:
        """z = s ⊙ M ⊙ (D · y) for the HSM called `name` (not `apply`: nn.Module.apply walks submodules)."""
        return self.hsms[name](y, self.mask())

    def losses(self) -> dict[str, torch.Tensor]:
        """The regularisers of §5, weighted, each summed over every HSM, and their sum as `total`."""
        cfg = self.config
        device = self.mask.proxies.device
        zero = torch.zeros((), device=device)
        sparsity = zero
        if cfg.mask_mode == "trainable":
            sparsity = sparsity_loss(
                self.mask.proxies,
                cfg.target_width,
                cfg.sparsity_count_weight,
                cfg.sparsity_pull_weight,
                cfg.sparsity_pull_target,
            )
        identity = zero
        if cfg.identity_loss != "off":
            identity = cfg.identity_loss_weight * sum(
                hsm.identity_loss(cfg.identity_loss) for hsm in self.hsms.values()
            )
        return {"sparsity": sparsity, "identity": identity, "total": sparsity + identity}

    def stats(self) -> dict[str, float]:
        """Numbers worth logging: active channels, and τ, β and s0 of the step last set (not for a fixed
        mask, which has no schedule)."""
        mask = self.mask
        stats: dict[str, float] = {"active_channels": float(mask.active_channels())}
        if mask.milestone is not None and mask.mode != "fixed":
            stats["tau"] = mask.temperature()
            stats["beta"] = gate_offset(mask.step, mask.milestone)
            stats["milestone"] = float(mask.milestone)
        return stats


def unwrap_model(model: nn.Module) -> PreTrainedModel:
    """The underlying `transformers` model of a peft model (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def get_pat(model: nn.Module) -> PATModule:
    """The `PATModule` attached to `model` (plain or peft-wrapped); a clear error if there is none."""
    pat = getattr(unwrap_model(model), "pat", None)
    if not isinstance(pat, PATModule):
        raise ValueError(
            "this model has no PAT attached: call pat_lite.attach_pat(model, PATConfig(...)) first"
        )
    return pat


def has_pat(model: nn.Module) -> bool:
    return isinstance(getattr(unwrap_model(model), "pat", None), PATModule)


def attach_pat(
    model: nn.Module,
    config: PATConfig | None = None,
    calibration: Calibration | None = None,
    rotation: torch.Tensor | None = None,
) -> nn.Module:
    """Insert the embedding HSM, the attention and MLP HSMs of every layer and the global mask.

    Works on a plain `transformers` model or a peft model wrapping one and returns the model with PAT;
    PAT parameters are float32 on the model's device and trainable. Usually the model is modified in
    place; with `basis="pca"` the returned model is a new one, the input rotated into its residual PCA
    basis (exact, `pat_lite.core.residual`) — use the return value.

    `calibration` (token-id batches of tuning text) is needed by `basis="pca"` and `mask_init="energy"`
    (`PATConfig.needs_calibration`); `rotation` gives the PCA basis directly instead (e.g. the one saved
    in a PAT state, `PATModule.rotation`).
    """
    config = config or PATConfig()
    base = unwrap_model(model)
    _check_attachable(base)
    if has_pat(base):
        raise ValueError("PAT is already attached to this model; attach it once (or use a fresh model)")
    resolved = config.resolve(base.config)
    # A given rotation replaces the measurement for the PCA basis only; energy ranks always measure.
    measures_energy = resolved.mask_init == ENERGY_CRITERION or resolved.fixed_channels == ENERGY_CRITERION
    if calibration is None and (measures_energy or (resolved.basis == "pca" and rotation is None)):
        raise ValueError(
            f"PATConfig(basis={resolved.basis!r}, mask_init={resolved.mask_init!r}) measures the residual "
            "stream first: pass calibration batches, attach_pat(model, config, calibration=...) "
            "(pat_lite's train() passes the first tuning records)"
        )
    if resolved.basis == "pca":
        if base is not model:
            raise ValueError("basis='pca' rotates the base model: attach PAT before wrapping it with peft")
        if rotation is None:
            rotation, _ = pca_rotation(base, calibration)
        base = model = rotate_residual(base, rotation)
    if resolved.mask_mode == "fixed" and resolved.fixed_channels in (NORM_CRITERION, ENERGY_CRITERION):
        # Decided once, from the weights (in the basis PAT prunes in) as they are now; the resolved config
        # records the channels.
        channels = _ranked_channels(base, resolved.fixed_channels, int(resolved.target_width), calibration)
        resolved = dataclasses.replace(resolved, fixed_channels=channels)
    decoder = base.model
    layers = decoder.layers
    device = next(base.parameters()).device
    pat = PATModule(resolved, int(base.config.hidden_size), len(layers)).to(device)
    if rotation is not None and resolved.basis == "pca":
        pat.register_buffer("rotation", rotation.detach().to(device=device, dtype=torch.float32))
    if resolved.mask_init != "zero":
        start = _ranked_channels(base, resolved.mask_init, int(resolved.target_width), calibration)
        pat.mask.start_from(start, resolved.sparsity_pull_target)
    base.pat = pat

    def writer_hook(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            if isinstance(output, tuple):  # attention returns (attn_output, attn_weights)
                return (pat.sparsify(name, output[0]), *output[1:])
            return pat.sparsify(name, output)

        return hook

    handles = [decoder.embed_tokens.register_forward_hook(writer_hook("embed"))]
    for i, layer in enumerate(layers):
        handles.append(layer.self_attn.register_forward_hook(writer_hook(f"attn_{i}")))
        handles.append(layer.mlp.register_forward_hook(writer_hook(f"mlp_{i}")))
    pat._hook_handles = handles
    if resolved.milestone_step is not None:
        pat.mask.milestone = int(resolved.milestone_step)
    return model


def _check_attachable(base: nn.Module) -> None:
    """A transformers causal LM of a supported family with the module layout PAT hooks (see `arch`);
    ConfigError (a ValueError) in one line otherwise: an nn.Linear, a bare LlamaModel, a GPT-2..."""
    if not isinstance(getattr(base, "config", None), PretrainedConfig):
        raise ConfigError(
            f"attach_pat needs a transformers causal LM (e.g. LlamaForCausalLM), not a {type(base).__name__}"
        )
    arch_spec(base.config)  # UnsupportedArchitectureError names the supported families
    decoder = getattr(base, "model", None)
    if not all(hasattr(decoder, name) for name in ("embed_tokens", "layers")):
        raise ConfigError(
            f"attach_pat needs the causal LM (e.g. LlamaForCausalLM, with its lm_head), not the bare decoder "
            f"{type(base).__name__}: load it with AutoModelForCausalLM"
        )


def _ranked_channels(
    base: PreTrainedModel, criterion: str, width: int, calibration: Calibration | None
) -> list[int]:
    """The `width` channels a criterion keeps (an informed start or a fixed cut): highest activation
    energy on the calibration text ("energy"), or largest writer norm ("norm")."""
    if criterion == ENERGY_CRITERION:
        return top_channels(residual_energy(base, calibration), width).tolist()
    return norm_channels(base, width).tolist()


def detach_pat(model: nn.Module) -> nn.Module:
    """Remove the hooks and `model.pat`: the model computes exactly what it did before `attach_pat`."""
    base = unwrap_model(model)
    pat = get_pat(base)
    for handle in pat._hook_handles:
        handle.remove()
    del base.pat
    return model


def set_pat_step(model: nn.Module, step: int, total_steps: int | None = None) -> None:
    """Move the gate schedule to optimizer step `step` (the trainer calls this every step).

    `total_steps` fixes s0 = milestone_fraction · total_steps when `PATConfig.milestone_step` is unset.
    """
    pat = get_pat(model)
    step = _whole_number("step", step)
    if total_steps is not None:
        total_steps = _whole_number("total_steps", total_steps)
        if total_steps < 1:
            raise ConfigError(f"set_pat_step: total_steps={total_steps} must be ≥ 1")
    if step < 0 or (total_steps is not None and step > total_steps):
        bound = f"in [0, total_steps={total_steps}]" if total_steps is not None else "≥ 0"
        raise ConfigError(f"set_pat_step: step={step} must be {bound}")
    cfg = pat.config
    if total_steps is not None or pat.mask.milestone is None:
        pat.mask.milestone = cfg.milestone_for(total_steps)
    pat.mask.step = step
    if cfg.mask_mode == "trainable" and cfg.mask_after_milestone == "fixed":
        pat.mask.hold_from = mask_moving_steps(pat.mask.milestone, cfg.schedule, cfg.mask_freeze_fraction)
        pat.mask.hold()


def _whole_number(name: str, value: object) -> int:
    """`value` as an int if it is a whole number (7, 7.0, a 0-d integer tensor); else ConfigError."""
    try:
        number = float(value)  # ints, floats, numpy and 0-d tensor scalars
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or not number.is_integer():
        raise ConfigError(f"set_pat_step: {name}={value!r} must be a whole number of optimizer steps")
    return int(number)


@contextmanager
def force_mask(model: nn.Module, kind: MaskKind) -> Iterator[None]:
    """Inside the block the mask is `kind` whatever the model's train/eval mode: "soft" — the training
    gate of the step last set by `set_pat_step` — or "exact" — the 0/1 mask over `kept_channels` that eval
    mode and the merge use. Dropout still follows the mode (call `model.eval()` for a clean comparison)."""
    if kind not in ("soft", "exact"):
        raise ValueError(f"the mask can be forced to 'soft' or 'exact', not {kind!r}")
    mask = get_pat(model).mask
    previous, mask.forced = mask.forced, kind
    try:
        yield
    finally:
        mask.forced = previous


def pat_losses(model: nn.Module) -> dict[str, torch.Tensor]:
    """`{"sparsity", "identity", "total"}`: add `total` to the language-model loss (§5)."""
    return get_pat(model).losses()


def pat_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """PAT's trainable parameters by group: `mask` (W_M) and `hsm` (L0, L1, s, v). Trainers give the
    mask its own learning rate (docs/method.md §10)."""
    pat = get_pat(model)
    mask = [p for p in pat.mask.parameters()]
    return {"mask": mask, "hsm": [p for p in pat.hsms.parameters()]}


def mark_pat_trainable(model: nn.Module) -> None:
    """Re-enable gradients for PAT parameters (peft freezes everything that is not LoRA)."""
    for group in pat_parameters(model).values():
        for param in group:
            param.requires_grad_(True)
