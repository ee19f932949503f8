"""Fold PAT into the weights and slice out a smaller, ordinary dense model (docs/method.md §8).

merge = fold every HSM into the writer before it, then cut the kept channels K (`core.slicing`). Let
a = s ⊙ M be an HSM's per-channel factor (M ∈ {0, 1}) and D = I + L1·L0 its operator:

    writers   o_proj, down_proj:   W ← diag(a) · D · W        b ← diag(a) · D · b
    embedding E (vocab × d):       E ← E · Dᵀ · diag(a)

after which the model's residual stream is exactly zero outside K (M is 0 there), so the cut of
`core.slicing` (`sliced_state_dict`, the one `slice_hidden` makes of a plain model) is exact: writers'
rows, readers' columns and the embedding's columns to K, RMSNorm g' = g[K]·sqrt(d/d') with eps' = eps·d/d'
(Gemma: (1 + g) and the sqrt(d) embedding scale), untied embeddings.
The result is exact: the tuned model in eval mode (0/1 mask) and the merged model give the same logits.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from transformers import PreTrainedModel

from pat_lite.core.arch import shrunk_config
from pat_lite.core.attach import PATModule, detach_pat, get_pat
from pat_lite.core.mask import kept_channels
from pat_lite.core.slicing import Fold, ResidualRole, model_from_state_dict, sliced_state_dict


def _merge_adapters(model: nn.Module, inplace: bool) -> PreTrainedModel:
    """Merge LoRA/DoRA into the base weights if `model` is a peft model; return the plain model.

    A plain model is only read, never changed, so it needs no copy."""
    if not hasattr(model, "merge_and_unload"):
        return model
    return (model if inplace else copy.deepcopy(model)).merge_and_unload()


def hsm_fold(pat: PATModule) -> Fold:
    """The fold of every HSM into the tensor written before it, with the exact eval-mode mask."""
    mask = pat.mask.inference_mask()

    def fold(key: str, role: ResidualRole, value: torch.Tensor) -> torch.Tensor:
        if role.kind not in ("embedding", "writer"):
            return value
        hsm = pat.hsms[role.hsm]
        factor = hsm.scale.detach().to(value.dtype) * mask.to(value.dtype)  # a = s ⊙ M
        operator = hsm.operator().detach().to(value.dtype)  # D
        if role.kind == "embedding":
            return (value @ operator.T) * factor
        rows = operator @ value
        return rows * (factor if rows.dim() == 1 else factor[:, None])

    return fold


def merged_state_dict(model: PreTrainedModel, pat: PATModule, keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """The weights of the smaller model: every HSM folded into its writer (`hsm_fold`), then everything cut
    to the channels `keep` (`sliced_state_dict`); computed in at least float32, returned in each tensor's
    dtype."""
    weights = {key: value for key, value in model.state_dict().items() if not key.startswith("pat.")}
    return sliced_state_dict(weights, model.config, keep.cpu(), hsm_fold(pat))


def merge_pat(model: nn.Module, inplace: bool = False) -> PreTrainedModel:
    """Fold LoRA/DoRA (if `model` is a peft model) and every HSM into the weights and slice out the kept
    channels; return a plain model of the original class with `hidden_size` = d'.

    `inplace=False` (default) leaves `model` untouched by working on a copy; `inplace=True` saves the copy's
    memory on big models and consumes the peft wrapper. If the trained mask does not keep exactly the
    target count (Σ 1(W_M > 0) ≠ N), the merge keeps the N channels with the largest W_M and warns — the
    same channels the attached model uses in eval mode.
    """
    pat = get_pat(model)
    target = int(pat.config.target_width)
    active = pat.mask.active_channels()
    if pat.config.mask_mode == "trainable" and active != target:
        warnings.warn(
            f"the trained mask keeps {active} channels (W_M > 0), not the target {target}; merging the "
            f"{target} channels with the largest mask weights instead",
            stacklevel=2,
        )
    keep = kept_channels(pat.mask.proxies, target)
    base = _merge_adapters(model, inplace)
    pat = get_pat(base)
    with torch.no_grad():
        state = merged_state_dict(base, pat, keep)
    merged = model_from_state_dict(base, shrunk_config(base.config, target), state)
    if inplace:
        detach_pat(base)
    return merged
