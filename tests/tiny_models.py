"""Small random models of every supported architecture, for tests (no hub, no download)."""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    GemmaConfig,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    Qwen2Config,
)

COMMON = dict(
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    vocab_size=97,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)

#: name → config; together they cover GQA and not, tied and untied embeddings, biases, Gemma's quirks.
TINY_CONFIGS: dict[str, PretrainedConfig] = {
    "llama-gqa": LlamaConfig(**COMMON, num_key_value_heads=2, tie_word_embeddings=False),
    "llama-mha-bias": LlamaConfig(
        **COMMON, num_key_value_heads=4, attention_bias=True, mlp_bias=True, tie_word_embeddings=False
    ),
    "mistral-gqa": MistralConfig(**COMMON, num_key_value_heads=2, tie_word_embeddings=False),
    "qwen2-tied": Qwen2Config(**COMMON, num_key_value_heads=4, tie_word_embeddings=True),
    "gemma-gqa-tied": GemmaConfig(**COMMON, num_key_value_heads=1, head_dim=16, tie_word_embeddings=True),
}


def tiny_model(name: str, seed: int = 0) -> torch.nn.Module:
    """A random fp32 model; norm weights randomised too so the merge's norm rescaling is exercised."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(TINY_CONFIGS[name], dtype=torch.float32)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "norm" in param_name:  # Llama-style weights sit near 1, Gemma's (1 + w) ones near 0
                centre = 1.0 if param.mean() > 0.5 else 0.0
                param.copy_(centre + 0.25 * torch.randn_like(param))
    return model.eval()


def token_batch(vocab_size: int = 97, batch: int = 2, length: int = 12, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab_size, (batch, length), generator=generator)
