"""Cut hidden channels out of a plain model, and the norm criterion that picks them (docs/method.md §2, §8).

The residual stream of the supported decoders (see `arch`) is written by the embedding, every o_proj and
every down_proj, and read — always through an RMSNorm — by q/k/v, gate/up and lm_head. If the stream is
zero outside a channel set K (|K| = d'), every one of those matrices can be cut to K (§2, §8):

    embedding E (vocab × d):             E' = E[:, K]   (× sqrt(d/d') for Gemma's sqrt(hidden) scaling)
    writers o_proj, down_proj:           W' = W[K, :],  b' = b[K]
    readers q, k, v, gate, up, lm_head:  W' = W[:, K]   (their biases live in attention/FFN space: kept)
    RMSNorm:  g' = g[K] · sqrt(d/d'),  eps' = eps · d/d'   (Gemma's (1 + w): 1 + g' = (1 + g[K]) · sqrt(d/d'))

Why the norms are exact: with the stream zero outside K, the mean of squares over the d' kept channels is
d/d' times the mean over all d, so with eps' = eps · d/d' the new rms is exactly sqrt(d/d') times the old
one — which g' multiplies back. Gemma multiplies the embedding by sqrt(hidden_size) at run time, sqrt(d')
after the cut, so E' carries the missing factor sqrt(d/d'). Embeddings are untied: once anything is folded
into E or lm_head (HSMs, norms, a rotation) the two cut matrices differ.

`slice_hidden(model, K)` is therefore exact for a model whose stream is zero outside K — e.g. after
`zero_hidden_channels(model, complement of K)`. It accepts a `fold` that transforms each full-width tensor
before the cut: `merge_pat` folds the HSMs that way (§8), the PCA baseline its rotation.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from transformers import PretrainedConfig, PreTrainedModel

from pat_lite.core.arch import arch_spec, shrunk_config
from pat_lite.core.mask import top_channels

_EMBEDDING = "model.embed_tokens.weight"
_WRITER = re.compile(r"^model\.layers\.(\d+)\.(self_attn\.o_proj|mlp\.down_proj)\.(weight|bias)$")
_READER = re.compile(
    r"^(?:model\.layers\.(\d+)\.(self_attn\.[qkv]_proj|mlp\.(?:gate|up)_proj)|lm_head)\.weight$"
)
_READER_BIAS = re.compile(r"^model\.layers\.\d+\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)\.bias$")
_NORM = re.compile(r"^model\.(layers\.\d+\.(input|post_attention)_layernorm|norm)\.weight$")


@dataclass(frozen=True)
class ResidualRole:
    """What one state-dict tensor is to the residual stream."""

    #: "embedding", "writer" (o_proj / down_proj weight or bias), "reader" (q/k/v/gate/up/lm_head weight),
    #: "reader_bias", "norm" (an RMSNorm weight) or "other" (nothing of width d).
    kind: str
    #: Embedding and writers: the name of the PAT HSM that sits after them ("embed", "attn_3", "mlp_3").
    hsm: str | None = None
    #: Readers: the state-dict key of the RMSNorm weight their input passes through.
    norm: str | None = None


def residual_role(key: str) -> ResidualRole:
    """Classify a state-dict key of a supported decoder (see `arch`)."""
    if key == _EMBEDDING:
        return ResidualRole("embedding", hsm="embed")
    if match := _WRITER.match(key):
        block = "attn" if match.group(2).startswith("self_attn") else "mlp"
        return ResidualRole("writer", hsm=f"{block}_{match.group(1)}")
    if match := _READER.match(key):
        layer, module = match.group(1), match.group(2)
        if layer is None:
            return ResidualRole("reader", norm="model.norm.weight")
        norm = "input_layernorm" if module.startswith("self_attn") else "post_attention_layernorm"
        return ResidualRole("reader", norm=f"model.layers.{layer}.{norm}.weight")
    if _READER_BIAS.match(key):
        return ResidualRole("reader_bias")
    if _NORM.match(key):
        return ResidualRole("norm")
    return ResidualRole("other")


#: fold(key, role, full-width float32 tensor) → the tensor to cut instead (same shape).
Fold = Callable[[str, ResidualRole, torch.Tensor], torch.Tensor]


def sliced_state_dict(
    state: Mapping[str, torch.Tensor],
    config: PretrainedConfig,
    keep: torch.Tensor,
    fold: Fold | None = None,
) -> dict[str, torch.Tensor]:
    """The state dict of the model cut to the channels `keep` (module docstring), each tensor computed in
    at least float32 (after `fold`, if given) and returned in its own dtype."""
    spec = arch_spec(config)
    width = int(config.hidden_size)
    ratio = width / keep.numel()
    sliced: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        role = residual_role(key)
        if role.kind in ("other", "reader_bias"):
            if role.kind == "other" and width in tensor.shape:
                raise RuntimeError(f"cannot cut hidden channels out of {key} {tuple(tensor.shape)}")
            sliced[key] = tensor
            continue
        value = tensor.to(torch.promote_types(tensor.dtype, torch.float32))
        if fold is not None:
            value = fold(key, role, value)
        index = keep.to(value.device)
        if role.kind == "embedding":
            value = value[:, index]
            if spec.scaled_embedding:  # the cut model multiplies by sqrt(d') instead of sqrt(d)
                value = value * math.sqrt(ratio)
        elif role.kind == "writer":
            value = value[index]
        elif role.kind == "reader":
            value = value[:, index]
        else:  # norm
            offset = spec.norm_weight_offset
            value = (value[index] + offset) * math.sqrt(ratio) - offset
        sliced[key] = value.to(tensor.dtype).contiguous()
    return sliced


def model_from_state_dict(
    like: PreTrainedModel, config: PretrainedConfig, state: Mapping[str, torch.Tensor]
) -> PreTrainedModel:
    """A model of `like`'s class, dtype and device for `config`, holding exactly `state`, in eval mode.

    Skips the random initialisation the weights would overwrite anyway."""
    dtype = next(like.parameters()).dtype
    device = next(like.parameters()).device
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older/newer transformers: fall back to a normal (slower) initialisation
        from contextlib import nullcontext as no_init_weights
    with no_init_weights(), torch.device(device):
        model = type(like)._from_config(config, dtype=dtype)
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def untied_config(config: PretrainedConfig) -> PretrainedConfig:
    """A copy of `config` with separate input and output embeddings."""
    new = copy.deepcopy(config)
    new.tie_word_embeddings = False
    return new


def _check_not_peft(model: torch.nn.Module) -> None:
    if hasattr(model, "merge_and_unload"):
        raise ValueError(
            "this is a peft model: fold its adapters first (model = model.merge_and_unload()), then cut it"
        )


def check_plain_model(model: torch.nn.Module) -> None:
    """ValueError unless `model` is a plain supported transformers model: no peft wrapper, no PAT."""
    _check_not_peft(model)
    if isinstance(getattr(model, "pat", None), torch.nn.Module):
        raise ValueError("this model has PAT attached: merge it with merge_pat(model) instead of cutting it")
    arch_spec(model.config)


def _keep_indices(keep: Iterable[int] | torch.Tensor, width: int) -> torch.Tensor:
    keep = torch.as_tensor(keep, dtype=torch.long).flatten().cpu()
    if keep.numel() == 0 or keep.unique().numel() != keep.numel():
        raise ValueError(f"kept channels must be distinct and non-empty, got {keep.tolist()}")
    if keep.min() < 0 or keep.max() >= width:
        raise ValueError(f"kept channels must lie in [0, {width}), got {keep.min()}..{keep.max()}")
    return keep.sort().values


def slice_hidden(
    model: PreTrainedModel, keep: Iterable[int] | torch.Tensor, fold: Fold | None = None
) -> PreTrainedModel:
    """A plain model of the same class with hidden size |keep|, cut as the module docstring says.

    Exact (same logits) when the model's residual stream is zero outside `keep`. `fold` transforms each
    full-width embedding / writer / reader / norm tensor first. Keeping every channel cuts nothing: the
    result is the (folded) model itself with untied embeddings. The input model is not changed.
    """
    _check_not_peft(model)
    hidden = int(model.config.hidden_size)
    keep = _keep_indices(keep, hidden)
    if keep.numel() == hidden:
        new_config = untied_config(model.config)
    else:
        new_config = shrunk_config(model.config, keep.numel())  # checks the width against the architecture
    with torch.no_grad():
        sliced = sliced_state_dict(model.state_dict(), model.config, keep, fold)
    return model_from_state_dict(model, new_config, sliced)


# ------------------------------------------------------------------------------------ the norm criterion
def writer_norms(model: PreTrainedModel) -> torch.Tensor:
    """Per hidden channel i, the L2 norm of everything that writes into it: column i of the embedding and
    row i (and bias entry i) of every o_proj and down_proj, taken together. float32, on the CPU."""
    squares: torch.Tensor | None = None
    for key, tensor in model.state_dict().items():
        role = residual_role(key)
        value = tensor.detach().float()
        if role.kind == "embedding":
            part = value.pow(2).sum(0)
        elif role.kind == "writer":
            part = value.pow(2) if value.dim() == 1 else value.pow(2).sum(1)
        else:
            continue
        squares = part if squares is None else squares + part
    if squares is None:
        raise ValueError(f"{type(model).__name__} has no residual writers that pat_lite knows")
    return squares.sqrt().cpu()


def norm_channels(model: PreTrainedModel, width: int) -> torch.Tensor:
    """The norm criterion: sorted indices of the `width` channels of largest `writer_norms`."""
    arch_spec(model.config)
    return top_channels(writer_norms(model), width)


def zero_hidden_channels(model: PreTrainedModel, channels: Iterable[int] | torch.Tensor) -> None:
    """Make the residual stream zero on `channels`, in place: zero the embedding columns and the writers'
    rows and bias entries there (§2: RMSNorm keeps zero channels at zero). Pruning without any tuning;
    `slice_hidden` of the complement then gives the same logits."""
    check_plain_model(model)
    index = torch.as_tensor(channels, dtype=torch.long).flatten()
    with torch.no_grad():
        for key, tensor in model.state_dict(keep_vars=True).items():
            role = residual_role(key)
            if role.kind == "embedding":
                tensor[:, index.to(tensor.device)] = 0
            elif role.kind == "writer":
                tensor[index.to(tensor.device)] = 0
