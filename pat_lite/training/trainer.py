"""The Hugging Face `Trainer` with PAT's losses, schedule and state (docs/method.md §5), on stock peft LoRA.

    loss = response-only LM loss  +  sparsity loss  +  identity loss          (§5)

- LoRA on every linear layer except lm_head (peft "all-linear"); HSMs, mask and scales in float32.
- The mask schedule follows the Trainer's global step (set before every forward, so it is right after a
  resume too); W_M gets its own learning rate (`mask_lr_multiplier`, see §10).
- Every checkpoint also stores `pat_state.safetensors` (peft saves only LoRA).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerState
from transformers.trainer import TRAINER_STATE_NAME

from pat_lite.core.attach import (
    attach_pat,
    get_pat,
    has_pat,
    mark_pat_trainable,
    pat_losses,
    pat_parameters,
    set_pat_step,
)
from pat_lite.core.config import PATConfig
from pat_lite.models.loading import load_model_and_tokenizer
from pat_lite.training.config import TrainConfig

PAT_STATE = "pat_state.safetensors"
PAT_CONFIG = "pat_config.json"


class PATTrainer(Trainer):
    """`Trainer` + PAT: schedule from the global step, PAT losses, PAT state in every checkpoint."""

    def __init__(self, *args: Any, mask_lr_multiplier: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mask_lr_multiplier = mask_lr_multiplier
        # Detached tensors, averaged only when logged: no device sync on every micro-batch.
        self._terms: dict[str, list[torch.Tensor]] = defaultdict(list)
        # compute_loss returns a per-micro-batch mean: let Trainer divide it by the accumulation steps.
        self.loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training and has_pat(model):
            set_pat_step(model, self.state.global_step, self.state.max_steps)
        outputs = model(**inputs)
        loss = outputs.loss
        if model.training:
            self._terms["lm_loss"].append(loss.detach())
        if has_pat(model):
            extra = pat_losses(model)
            loss = loss + extra["total"]
            if model.training:
                self._terms["sparsity_loss"].append(extra["sparsity"].detach())
                self._terms["identity_loss"].append(extra["identity"].detach())
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model=None):
        """Three groups: LoRA, HSMs (both at the learning rate) and W_M (× mask_lr_multiplier)."""
        if self.optimizer is None and has_pat(self.model):
            groups = pat_parameters(self.model)
            special = {id(p) for group in groups.values() for p in group}
            lora = [p for p in self.model.parameters() if p.requires_grad and id(p) not in special]
            lr, decay = self.args.learning_rate, self.args.weight_decay
            param_groups = [
                {"params": lora, "lr": lr, "weight_decay": decay},
                {"params": [p for p in groups["hsm"] if p.requires_grad], "lr": lr, "weight_decay": 0.0},
                {
                    "params": [p for p in groups["mask"] if p.requires_grad],
                    "lr": lr * self.mask_lr_multiplier,
                    "weight_decay": 0.0,
                },
            ]
            optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, self.model)
            optimizer_kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(
                [g for g in param_groups if g["params"]], lr=lr, **optimizer_kwargs
            )
        return super().create_optimizer(model)

    def load_final_checkpoint(self, checkpoint: str | os.PathLike) -> None:
        """Take weights, PAT state and trainer state from a checkpoint saved at the last step, without
        training: `train(resume_from_checkpoint=...)` from there would run one step past max_steps."""
        self._load_from_checkpoint(str(checkpoint))
        self.state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log, not an evaluation one
            for name, values in self._terms.items():
                if values:
                    logs[name] = torch.stack(values).float().mean().item()
            self._terms.clear()
            if has_pat(self.model):
                logs.update(get_pat(self.model).stats())
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        if self.args.should_save and has_pat(self.model):
            save_pat_state(self.model, output_dir or self.args.output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if has_pat(model or self.model):
            load_pat_state(model or self.model, resume_from_checkpoint)


def save_pat_state(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """PAT's parameters (safetensors) and its resolved config (JSON) next to a peft adapter."""
    pat = get_pat(model)
    state = {k: v.detach().cpu().contiguous() for k, v in pat.state_dict().items()}
    save_file(state, os.path.join(directory, PAT_STATE))
    Path(directory, PAT_CONFIG).write_text(json.dumps(pat.config.to_dict(), indent=2) + "\n")


def load_pat_state(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    path = Path(directory, PAT_STATE)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: this checkpoint was not written by a PAT run")
    pat = get_pat(model)
    device = pat.mask.proxies.device
    pat.load_state_dict({k: v.to(device) for k, v in load_file(str(path)).items()})


def add_adapters(model, method: str, pat_config: PATConfig | None, lora):
    """PAT (if method == "pat") and then peft LoRA/DoRA on every linear layer except lm_head.

    PAT goes on first so LoRA's update on o_proj/down_proj lands inside the block the HSM hooks; peft then
    freezes everything that is not LoRA, so PAT's parameters are made trainable again."""
    from peft import get_peft_model

    if method == "pat":
        attach_pat(model, pat_config)
    model = get_peft_model(model, lora)
    if method == "pat":
        mark_pat_trainable(model)
    return model


def build_model(cfg: TrainConfig):
    """Base model (+ PAT) wrapped with peft LoRA/DoRA on every linear layer except lm_head."""
    from peft import LoraConfig

    model, tokenizer = load_model_and_tokenizer(
        cfg.model, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code
    )
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules="all-linear",  # peft leaves lm_head out; HSMs hold no nn.Linear
        use_dora=cfg.use_dora,
        task_type="CAUSAL_LM",
    )
    return add_adapters(model, cfg.method, cfg.pat_config, lora), tokenizer
