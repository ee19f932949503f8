"""Which models PAT can prune, and what a narrower one looks like.

PAT cuts channels of the residual stream (docs/method.md §2), which is only exact for models whose every
residual reader starts with an RMSNorm. The decoder-only families below share one module layout:

    model.model.embed_tokens                         writer  (HSM after it)
    model.model.layers[i].self_attn.{q,k,v}_proj     readers (after input_layernorm)
    model.model.layers[i].self_attn.o_proj           writer  (HSM after self_attn)
    model.model.layers[i].mlp.{gate,up}_proj         readers (after post_attention_layernorm)
    model.model.layers[i].mlp.down_proj              writer  (HSM after mlp)
    model.model.norm, model.lm_head                  final norm and reader

and differ only in the details recorded in `ArchSpec` (Gemma's scaled embedding and (1 + w) norms).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from transformers import PretrainedConfig


@dataclass(frozen=True)
class ArchSpec:
    """What the merge must know about one model family (docs/method.md §8, "Architecture notes")."""

    model_type: str
    #: RMSNorm computes x/rms · (1 + w) instead of x/rms · w (Gemma).
    norm_weight_offset: float = 0.0
    #: The embedding output is multiplied by sqrt(hidden_size) (Gemma).
    scaled_embedding: bool = False


SUPPORTED_ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": ArchSpec("llama"),  # Llama-2/3, TinyLlama, Yi
    "mistral": ArchSpec("mistral"),
    "qwen2": ArchSpec("qwen2"),
    "gemma": ArchSpec("gemma", norm_weight_offset=1.0, scaled_embedding=True),
}

_WHY_NOT = {
    "gpt2": "it uses LayerNorm (needs a SliceGPT-style conversion first)",
    "gpt_neox": "it uses LayerNorm and parallel residual blocks",
    "opt": "it uses LayerNorm",
    "gemma2": "its extra post-attention/post-feedforward norms sit between the writers and the residual",
    "gemma3": "its extra post-attention/post-feedforward norms sit between the writers and the residual",
    "mixtral": "mixture-of-experts blocks are not supported",
    "qwen2_moe": "mixture-of-experts blocks are not supported",
}


class UnsupportedArchitectureError(ValueError):
    """The model is not one of `SUPPORTED_ARCHITECTURES`."""


def arch_spec(config: PretrainedConfig) -> ArchSpec:
    """Return the `ArchSpec` for a model config, or raise a message naming what is supported."""
    model_type = getattr(config, "model_type", None)
    if model_type in SUPPORTED_ARCHITECTURES:
        return SUPPORTED_ARCHITECTURES[model_type]
    reason = _WHY_NOT.get(model_type or "", "it is not one of the RMSNorm decoder layouts pat_lite knows")
    supported = ", ".join(
        f"{t} ({c})"
        for t, c in [
            ("llama", "LlamaForCausalLM: Llama-2, TinyLlama, Yi"),
            ("mistral", "MistralForCausalLM"),
            ("qwen2", "Qwen2ForCausalLM"),
            ("gemma", "GemmaForCausalLM"),
        ]
    )
    raise UnsupportedArchitectureError(
        f"pat_lite cannot prune model_type={model_type!r}: {reason}. Supported: {supported}."
    )


def check_ratio(ratio: float) -> float:
    """Return `ratio` (the fraction of hidden channels to remove) if it lies in (0, 1); else ValueError."""
    if not 0.0 < float(ratio) < 1.0:
        raise ValueError(
            f"pruning ratio must be in (0, 1), got {ratio}; the paper uses 0.2, 0.25 and 0.3 "
            "(0.25 turns Llama-2-7B's 4096 channels into 3072)"
        )
    return float(ratio)


def width_multiple(config: PretrainedConfig, alignment: int | None = None) -> int:
    """The step between valid pruned widths.

    transformers 5 refuses a config whose hidden size is not a multiple of `num_attention_heads` (even with
    `head_dim` set), so every width must be one; `alignment` (e.g. 64 or 128 for fast GPU kernels) adds a
    second divisor.
    """
    multiple = int(config.num_attention_heads)
    if alignment:
        multiple = math.lcm(multiple, int(alignment))
    return multiple


def nearest_valid_widths(config: PretrainedConfig, width: float, alignment: int | None = None) -> list[int]:
    """The valid widths just below and above `width` (at most two, both in [multiple, hidden_size))."""
    step = width_multiple(config, alignment)
    below = int(width // step) * step
    candidates = [w for w in (below, below + step) if step <= w < config.hidden_size]
    return sorted(set(candidates))


def check_width(config: PretrainedConfig, width: int, alignment: int | None = None) -> int:
    """Return `width` if the architecture can hold it, else raise ValueError saying what would work."""
    hidden = int(config.hidden_size)
    step = width_multiple(config, alignment)
    if width >= hidden:
        raise ValueError(
            f"target width {width} is not smaller than the model's hidden size {hidden}; "
            f"choose a width below {hidden}, e.g. {nearest_valid_widths(config, hidden * 0.75, alignment)}"
        )
    if width < step or width % step:
        why = f"a multiple of num_attention_heads={config.num_attention_heads}"
        if step != config.num_attention_heads:
            why += f" and of the alignment {alignment} (so of {step})"
        raise ValueError(
            f"target width {width} cannot be held by a {config.model_type} config: it must be {why}. "
            f"Nearest valid widths: {nearest_valid_widths(config, width, alignment)}"
        )
    return width


def width_for_ratio(config: PretrainedConfig, ratio: float, alignment: int | None = None) -> int:
    """The valid width nearest to hidden_size · (1 − ratio) (ties go to the wider one)."""
    ideal = config.hidden_size * (1.0 - ratio)
    step = width_multiple(config, alignment)
    if ideal < step / 2:  # rounding up to the narrowest valid width would cut far less than asked
        raise ValueError(
            f"pruning ratio {ratio} keeps {ideal:.3g} of {config.hidden_size} channels, fewer than the "
            f"narrowest width this model can hold ({step}, a multiple of num_attention_heads"
            + (f" and the alignment {alignment}" if alignment else "")
            + f"): use a ratio of at most {1 - step / config.hidden_size:.4g}, or target_width={step}"
        )
    candidates = nearest_valid_widths(config, ideal, alignment)
    if not candidates:
        raise ValueError(
            f"pruning ratio {ratio} leaves no valid width for hidden size {config.hidden_size} "
            f"(widths must be multiples of {width_multiple(config, alignment)})"
        )
    return min(candidates, key=lambda w: (abs(w - ideal), -w))


def head_dim(config: PretrainedConfig) -> int:
    """Attention head size; PAT leaves it (and heads × head_dim) unchanged."""
    explicit = getattr(config, "head_dim", None)
    return int(explicit) if explicit else config.hidden_size // config.num_attention_heads


def shrunk_config(config: PretrainedConfig, width: int) -> PretrainedConfig:
    """A copy of `config` for the merged model with hidden size `width` (docs/method.md §8, step 4-5).

    - `head_dim` is written explicitly: attention width stays num_heads · head_dim.
    - `rms_norm_eps` is scaled by d/d' so that RMSNorm over the kept channels is exactly the old one.
    - embeddings are untied: the folded embedding E' differs from lm_head[:, K].
    """
    check_width(config, width)
    arch_spec(config)
    new = copy.deepcopy(config)
    ratio = config.hidden_size / width
    new.head_dim = head_dim(config)
    new.hidden_size = width
    new.rms_norm_eps = config.rms_norm_eps * ratio
    new.tie_word_embeddings = False
    return new
