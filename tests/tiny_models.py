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


WORDS = (
    "below is an instruction that describes a task . write a response appropriately completes the request "
    "### instruction : response where does live lives in what colour pet has cat dog fish red blue green "
    "alba korin veldra mornhal answer with letter A B C D"
).split()


def word_tokenizer():
    """A word-level fast tokenizer over `WORDS` (+ special tokens) that adds BOS like Llama's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit()])
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_checkpoint(path, arch: str = "llama-gqa", seed: int = 0):
    """Save a random tiny model + word tokenizer as a local checkpoint folder; return its path."""
    model = tiny_model(arch, seed=seed)
    model.save_pretrained(path)
    word_tokenizer().save_pretrained(path)
    return path


def write_instruction_file(path, n: int = 64, seed: int = 0):
    """A LaMini-style JSONL file (instruction, response) in the tiny vocabulary."""
    import json
    import random

    rng = random.Random(seed)
    names, places = ["alba", "korin"], ["veldra", "mornhal"]
    with open(path, "w") as handle:
        for _ in range(n):
            name, place = rng.choice(names), rng.choice(places)
            row = {"instruction": f"where does {name} live", "response": f"{name} lives in {place} ."}
            handle.write(json.dumps(row) + "\n")
    return path
