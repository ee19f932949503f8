"""Fold PAT into the weights and slice out a smaller, ordinary dense model (docs/method.md §8).

Let K be the kept channels (|K| = d'), a = s ⊙ M the per-channel factor (M ∈ {0, 1}) and D = I + L1·L0:

    writers   o_proj, down_proj:   W' = (diag(a) · D · W)[K, :]        b' = (diag(a) · D · b)[K]
    embedding E (vocab × d):       E' = (E · Dᵀ · diag(a))[:, K]        (× sqrt(d/d') for Gemma's scaling)
    readers   q, k, v, gate, up, lm_head:   W' = W[:, K]
    RMSNorm:  g' = g[K] · sqrt(d/d')     (Gemma: 1 + g' = (1 + g[K]) · sqrt(d/d')),   eps' = eps · d/d'

Why the norms: the residual stream is exactly zero outside K, so mean over d' channels = (d/d') · mean over
d, and with eps' = eps · d/d' the kept channels are normalised by sqrt(d/d') · rms — which g' undoes.
The result is exact: the tuned model in eval mode (0/1 mask) and the merged model give the same logits.
"""

from __future__ import annotations

import copy
import math
import re
import warnings

import torch
from torch import nn
from transformers import PreTrainedModel

from pat_lite.core.arch import arch_spec, shrunk_config
from pat_lite.core.attach import PATModule, detach_pat, get_pat
from pat_lite.core.mask import kept_channels

_WRITER = re.compile(r"^model\.layers\.(\d+)\.(self_attn\.o_proj|mlp\.down_proj)\.(weight|bias)$")
_READER = re.compile(r"^(model\.layers\.\d+\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)|lm_head)\.weight$")
#: Outputs of readers live in attention/FFN space, which PAT does not change.
_READER_BIAS = re.compile(r"^model\.layers\.\d+\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)\.bias$")
_NORM = re.compile(r"^model\.(layers\.\d+\.(input|post_attention)_layernorm|norm)\.weight$")


def _merge_adapters(model: nn.Module, inplace: bool) -> PreTrainedModel:
    """Merge LoRA/DoRA into the base weights if `model` is a peft model; return the plain model.

    A plain model is only read, never changed, so it needs no copy."""
    if not hasattr(model, "merge_and_unload"):
        return model
    return (model if inplace else copy.deepcopy(model)).merge_and_unload()


def merged_state_dict(model: PreTrainedModel, pat: PATModule, keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """The weights of the smaller model, computed in float32 and returned in each tensor's dtype."""
    spec = arch_spec(model.config)
    width = int(model.config.hidden_size)
    ratio = width / keep.numel()
    device = next(model.parameters()).device
    keep = keep.to(device)
    mask = pat.mask.inference_mask()

    def kept_factor(name: str) -> torch.Tensor:
        """a[K] = (s ⊙ M)[K] of one HSM."""
        return (pat.hsms[name].scale.detach().float() * mask)[keep]

    def folded_rows(name: str, tensor: torch.Tensor) -> torch.Tensor:
        # (diag(a) · D · W)[K]  ==  a[K] ⊙ (D[K] · W)
        rows = pat.hsms[name].operator().detach()[keep] @ tensor.float()
        a = kept_factor(name)
        return rows * (a if rows.dim() == 1 else a[:, None])

    merged: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("pat."):
            continue
        if key == "model.embed_tokens.weight":
            new = (tensor.float() @ pat.hsms["embed"].operator().detach().T)[:, keep] * kept_factor("embed")
            if spec.scaled_embedding:  # the merged model multiplies by sqrt(d') instead of sqrt(d)
                new = new * math.sqrt(ratio)
        elif match := _WRITER.match(key):
            layer, block = match.group(1), "attn" if "self_attn" in match.group(2) else "mlp"
            new = folded_rows(f"{block}_{layer}", tensor)
        elif _READER.match(key):
            new = tensor.float()[:, keep]
        elif _NORM.match(key):
            offset = spec.norm_weight_offset
            new = (tensor.float()[keep] + offset) * math.sqrt(ratio) - offset
        elif _READER_BIAS.match(key):
            new = tensor
        else:
            if width in tensor.shape:
                raise RuntimeError(f"merge does not know how to slice {key} {tuple(tensor.shape)}")
            new = tensor
        merged[key] = new.to(tensor.dtype).contiguous()
    return merged


def _empty_model(model: PreTrainedModel, config) -> PreTrainedModel:
    """A model of the same class for `config`, without spending time on random initialisation."""
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older/newer transformers: fall back to a normal (slower) initialisation
        from contextlib import nullcontext as no_init_weights
    with no_init_weights(), torch.device(device):
        return type(model)._from_config(config, dtype=dtype)


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
    new_config = shrunk_config(base.config, target)
    merged = _empty_model(base, new_config)
    merged.load_state_dict(state, strict=True)
    merged.eval()
    if inplace:
        detach_pat(base)
    return merged
