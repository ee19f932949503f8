"""Which base model a PAT state belongs to: a fingerprint of the base weights.

A tuned PAT state (mask, HSMs) and its LoRA adapter only mean something on the exact weights they were
tuned on: another base of the same shapes loads them without a complaint and merges into a different
model. `base_fingerprint(model)` hashes, for every base weight (PAT's own and LoRA's parameters left
out, peft's wrapping undone), its name, its shape and a fixed sample of at most 4,096 of its values
rounded to bfloat16. So the fingerprint is the same whether the base was loaded in float32 or bfloat16,
plain or wrapped by peft, and costs a few thousand values per tensor even on a 7B model; two different
checkpoints of one architecture differ in nearly every value and so in the fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch import nn

from pat_lite.core.attach import unwrap_model

#: Values sampled per tensor (evenly spaced over its flattened elements).
SAMPLES_PER_TENSOR = 4096


def base_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name as in the plain model, tensor) of every base weight of `model`, plain or peft-wrapped."""
    for name, param in unwrap_model(model).named_parameters():
        if name.startswith("pat.") or "lora_" in name:
            continue
        yield name.replace(".base_layer.", "."), param


def base_fingerprint(model: nn.Module) -> str:
    """A short hex digest that identifies the base weights of `model` (see the module docstring)."""
    digest = hashlib.sha256()
    for name, param in sorted(base_weights(model), key=lambda item: item[0]):
        flat = param.detach().reshape(-1)
        stride = max(1, flat.numel() // SAMPLES_PER_TENSOR)
        sample = flat[::stride][:SAMPLES_PER_TENSOR].to(torch.bfloat16).float().cpu()
        digest.update(f"{name}:{tuple(param.shape)};".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def base_name(model: nn.Module) -> str:
    """The name or path the base model was loaded from (for messages), or its class name."""
    base = unwrap_model(model)
    return str(getattr(base.config, "name_or_path", "") or type(base).__name__)
