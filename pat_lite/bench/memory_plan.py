"""How much GPU memory one PAT training step needs, planned from the model's shape and the recipe before
anything runs (notebook 03, `pat-lite gpu-check`).

The peak of a training step is, to a good approximation, the sum of four parts:

- **weights**: every base parameter, in the dtype the model is loaded in: 2 bytes each in bf16;
- **trainable state**: LoRA, HSM and mask parameters, kept in float32, their gradients (which live through
  all gradient-accumulation micro-steps) and AdamW's two moments: 16 bytes per trainable parameter;
- **activations**: what autograd keeps for the backward pass of one micro-step (below);
- **loss workspace**: the logits' gradient, float32 and bf16, while the loss backpropagates: 6 bytes per
  token and vocabulary entry.

Activations, per token and decoder layer, under the recipes' bf16 mixed precision (bf16 weights, autocast;
LoRA and PAT parameters in float32). Widths: d (hidden), a (attention: heads × head_dim), k (keys/values:
key-value heads × head_dim), f (MLP), r (LoRA rank), h (HIO rank):

- both RMSNorms keep their float32 input: 8·d;
- both HSMs keep the writer's output (bf16) and the float32 product they scale: 12·d, and L0·y: 4·h;
- every LoRA'd linear keeps the bf16 copy of its input that autocast makes, 2 bytes per input feature
  (q, k, v, gate and up read d, o reads a, down reads f), its dropout output in float32 when
  `lora_dropout` > 0, 4 bytes per input feature, and the rank-r hidden: 2·r;
- attention keeps q and its output (4·a) and the keys and values (4·k);
- the MLP keeps gate, up and silu(gate) in bf16: 6·f.

Outside the layers: the embedding's HSM (6·d), the final norm (4·d) and the float32 log-probabilities the
cross-entropy keeps (4 per vocabulary entry) per token, and autocast's bf16 copies of the trainable
weights while they are in use (2 per trainable parameter). With gradient checkpointing each layer keeps
only its bf16 input, 2·d per token, and one layer's full set exists again while it is recomputed.

These coefficients were read off the tensors autograd saves (`saved_activation_bytes`, on CPU);
tests/test_gpu_check.py measures them again on a small model. Not counted: the CUDA context (outside
PyTorch's allocator), allocator fragmentation, whatever the data loader pins: `headroom` adds a rule of
thumb for those (1 GiB + 10 %) where the plan is set against a GPU's free memory. `pat-lite gpu-check`
compares the plan with `torch.cuda.max_memory_allocated` on a real GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PretrainedConfig

from pat_lite.core.arch import head_dim
from pat_lite.core.config import PATConfig
from pat_lite.utils.errors import ConfigError

GIB = 2**30
#: float32 parameter + gradient + AdamW's two moments, per trainable parameter.
TRAINABLE_STATE_BYTES = 16
#: Per token and vocabulary entry: the logits' gradient in float32 and bf16 during the loss's backward.
LOSS_WORKSPACE_BYTES = 6
#: Per token and vocabulary entry: the float32 log-probabilities the cross-entropy keeps.
LOG_PROB_BYTES = 4


@dataclass(frozen=True)
class Shape:
    """The widths the plan needs, read from a model config."""

    hidden: int
    attention: int
    kv: int
    ffn: int
    layers: int
    vocab: int

    @classmethod
    def of(cls, config: PretrainedConfig) -> Shape:
        dim = head_dim(config)
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        return cls(
            hidden=int(config.hidden_size), attention=int(config.num_attention_heads) * dim,
            kv=int(kv_heads) * dim, ffn=int(config.intermediate_size), layers=int(config.num_hidden_layers),
            vocab=int(config.vocab_size),
        )  # fmt: skip


def activations_per_layer(shape: Shape, lora_r: int, lora_dropout: float, hio_rank: int | None) -> int:
    """Bytes autograd keeps per token in one decoder layer (module docstring); `hio_rank` None: no PAT."""
    d, a, k, f = shape.hidden, shape.attention, shape.kv, shape.ffn
    lora_inputs = 5 * d + a + f  # q, k, v, gate, up read d; o reads a; down reads f
    total = 8 * d + 4 * a + 4 * k + 6 * f  # norms, attention, MLP
    if lora_r:
        total += 2 * lora_inputs + 7 * 2 * lora_r + (4 * lora_inputs if lora_dropout > 0 else 0)
    if hio_rank is not None:
        total += 12 * d + 2 * 2 * hio_rank
    return total


def base_parameters(config: PretrainedConfig) -> tuple[int, int]:
    """(every base parameter, the LoRA parameters of rank 1 on every linear layer but lm_head), counted on
    a model built on the meta device (no memory, no weights)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())  # a tied embedding is one Parameter, counted once
    per_rank = sum(m.in_features + m.out_features for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head"))  # fmt: skip
    return total, per_rank


def pat_parameters(shape: Shape, hio_rank: int) -> int:
    """HSMs (1 + 2L of them, each L0, L1 and the scale: 2·h·d + d) and the mask (d)."""
    return (1 + 2 * shape.layers) * (2 * hio_rank * shape.hidden + shape.hidden) + shape.hidden


@dataclass
class MemoryPlan:
    """The planned peak of one training step: named parts in bytes (and what they were computed from)."""

    parts: dict[str, int]
    tokens: int
    gradient_checkpointing: bool
    trainable: int
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def headroom(self) -> int:
        """Rule of thumb for what the plan leaves out (CUDA context, fragmentation): 1 GiB + 10 %."""
        return GIB + self.total // 10

    def gib(self) -> dict[str, float]:
        """The parts, their total and the total with headroom, in GiB (3 decimals)."""
        values = {**self.parts, "total": self.total, "total with headroom": self.total + self.headroom}
        return {name: round(value / GIB, 3) for name, value in values.items()}


def plan_memory(
    config: PretrainedConfig, *, batch_size: int, seq_len: int, method: str = "pat", lora_r: int = 20,
    lora_dropout: float = 0.05, hio_rank: int | None = None, gradient_checkpointing: bool = True,
) -> MemoryPlan:  # fmt: skip
    """The memory plan of one micro-step of `batch_size` × `seq_len` tokens under bf16 mixed precision.

    `method`: "pat" (LoRA + HSMs + mask) or "lora"; `hio_rank` None: PATConfig's default (d // 20)."""
    if method not in ("pat", "lora"):
        raise ConfigError(f"method must be 'pat' or 'lora', got {method!r}")
    shape = Shape.of(config)
    tokens = int(batch_size) * int(seq_len)
    base, lora_per_rank = base_parameters(config)
    rank = None
    if method == "pat":
        rank = PATConfig(hio_rank=hio_rank).resolve(config).hio_rank
    trainable = lora_r * lora_per_rank + (pat_parameters(shape, rank) if rank is not None else 0)
    layer = activations_per_layer(shape, lora_r, lora_dropout, rank)
    outside = (6 * shape.hidden if rank is not None else 0) + 4 * shape.hidden + LOG_PROB_BYTES * shape.vocab
    if gradient_checkpointing:
        copies = 2 * trainable // max(1, shape.layers)  # one layer's bf16 copies at a time
        kept = tokens * (shape.layers * 2 * shape.hidden + layer + outside)
    else:
        copies = 2 * trainable
        kept = tokens * (shape.layers * layer + outside)
    parts = {
        "weights": 2 * base,
        "trainable state": TRAINABLE_STATE_BYTES * trainable,
        "activations": kept + copies,
        "loss workspace": LOSS_WORKSPACE_BYTES * tokens * shape.vocab,
    }
    inputs = {"batch_size": batch_size, "seq_len": seq_len, "method": method, "lora_r": lora_r,
              "lora_dropout": lora_dropout, "hio_rank": rank, "base_parameters": base}  # fmt: skip
    return MemoryPlan(parts, tokens, gradient_checkpointing, trainable, inputs)


def plan_for_recipe(
    cfg: Any, config: PretrainedConfig, gradient_checkpointing: bool | None = None
) -> MemoryPlan:
    """The plan of a `TrainConfig` (its micro-batch, sequence length, LoRA and PAT settings) on `config`;
    `gradient_checkpointing` None: the recipe's own setting. Only bf16 recipes are modelled."""
    if cfg.dtype != "bfloat16" or not cfg.bf16:
        raise ConfigError(
            f"the memory plan models bf16 mixed precision (dtype=bfloat16, bf16=true, the GPU recipes); "
            f"this recipe has dtype={cfg.dtype}, bf16={cfg.bf16}"
        )
    return plan_memory(
        config, batch_size=cfg.per_device_train_batch_size, seq_len=cfg.max_length, method=cfg.method,
        lora_r=cfg.lora_r, lora_dropout=cfg.lora_dropout, hio_rank=cfg.pat_config.hio_rank,
        gradient_checkpointing=cfg.gradient_checkpointing if gradient_checkpointing is None
        else gradient_checkpointing,
    )  # fmt: skip


#: NVIDIA A100's dense bf16 peak (TFLOP/s), the GPU the recipe is sized for.
A100_BF16_TFLOPS = 312.0


def flop_hours(config: PretrainedConfig, tokens: int, tflops: float, utilisation: float,
               gradient_checkpointing: bool = True) -> float:  # fmt: skip
    """Hours to train on `tokens` tokens at `utilisation` of a `tflops` peak, from the matrix products alone:
    2·N FLOPs per token forward (N: the parameters of every matrix product, the embedding lookup left out),
    as much again for the backward's input gradients (frozen weights get no weight gradient; LoRA's and
    the HSMs' are small), and one more forward when checkpointing recomputes the layers. An estimate for
    planning, not a measurement: `pat-lite gpu-check` measures the step time."""
    base, _ = base_parameters(config)
    matmul = base - int(config.vocab_size) * int(config.hidden_size)
    flops = (6 if gradient_checkpointing else 4) * matmul * tokens
    return flops / (tflops * 1e12 * utilisation) / 3600


def saved_activation_bytes(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], autocast: bool = True
) -> int:
    """Bytes of the tensors autograd saves for the backward pass of one forward of `model` on `batch`
    (each storage counted once, parameters left out): what `activations_per_layer` models. The forward's
    loss is returned to no one; call it on a copy of a batch, outside a training step."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    device = next(model.parameters()).device.type
    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
        torch.autocast(device, dtype=torch.bfloat16, enabled=autocast),
    ):
        model(**batch)
    return sum(seen.values())
