"""A training run's settings: `TrainConfig` (the paper's recipe as defaults, docs/method.md §7), read from a
recipe in configs/ plus KEY=VALUE overrides, and turned into Hugging Face `TrainingArguments`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments

from pat_lite.core.config import PATConfig
from pat_lite.resources import configs_dir, recipe_names


@dataclass
class TrainConfig:
    """One training run. Defaults are the paper's recipe (§7); `configs/*.yaml` override them."""

    model: str = "tiny"  # "tiny" (the embedded base), a hub name or a local checkpoint
    data: str = "toy"  # "toy", "lamini" (hub) or a local LaMini-style file
    data_fraction: float = 0.5  # the paper's random 50 % of LaMini (seed 42)
    max_train_samples: int | None = None
    max_length: int = 256
    output_dir: str = "runs/pat-tiny"
    method: str = "pat"  # "pat" or "lora" (the paper's baseline: same code path, no HSMs)
    pat: dict[str, Any] = field(default_factory=dict)  # PATConfig fields
    lora_r: int = 20
    lora_alpha: int = 4
    lora_dropout: float = 0.05
    use_dora: bool = False
    learning_rate: float = 5e-5
    # W_M's learning rate / learning_rate. 1 as in the released code; "auto": the multiplier that gives this
    # run the released recipe's mask travel budget (Σ mask lr while the task loss moves W_M, ≈ 0.38) under
    # its own lr schedule (pat_lite.training.mask_budget, docs/method.md §10).
    mask_lr_multiplier: float | str = 1.0
    num_train_epochs: float = 3.0
    max_steps: int = -1
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 2
    warmup_steps: int = 100
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 0.3
    optim: str = "adamw_torch"  # the paper: paged_adamw_32bit (needs bitsandbytes on CUDA)
    bf16: bool = False
    dtype: str = "float32"  # dtype the base weights are loaded in (bfloat16 on GPUs)
    gradient_checkpointing: bool = False
    seed: int = 42
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int | None = 2
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    overwrite_output_dir: bool = False
    trust_remote_code: bool = False
    merge: bool = True
    dataloader_num_workers: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("pat", "lora"):
            raise ValueError(f"method must be 'pat' or 'lora', got {self.method!r}")
        PATConfig.from_dict(self.pat)  # fail early on a bad PAT section
        if self.mask_lr_multiplier != "auto":
            given = self.mask_lr_multiplier
            try:
                self.mask_lr_multiplier = float(given)
            except (TypeError, ValueError):
                self.mask_lr_multiplier = -1.0
            if not self.mask_lr_multiplier > 0:
                raise ValueError(f"mask_lr_multiplier must be a positive number or 'auto', got {given!r}")

    @property
    def pat_config(self) -> PATConfig:
        return PATConfig.from_dict(self.pat)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ValueError(f"override {text!r} is not KEY=VALUE (e.g. max_steps=100 or pat.hio_rank=8)")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def load_train_config(
    path: str | os.PathLike | None = None, overrides: list[str] | None = None
) -> TrainConfig:
    """A `TrainConfig` from a YAML file (a path, or a name in `configs/` like "tiny") plus KEY=VALUE
    overrides (dotted keys reach into the `pat` section)."""
    values: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.exists() and (configs_dir() / f"{path}.yaml").exists():
            file = configs_dir() / f"{path}.yaml"
        if not file.exists():
            raise FileNotFoundError(f"no config {path!r}: give a YAML path or one of {recipe_names()}")
        values = yaml.safe_load(file.read_text()) or {}
        values.pop("expected", None)  # documentation only: time and memory the recipe needs
    for text in overrides or []:
        keys, value = _parse_override(text)
        target = values
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown training settings {sorted(unknown)}; known: {sorted(known)}")
    return TrainConfig(**values)


def _checkpointing_arguments(enabled: bool) -> dict[str, Any]:
    """transformers ≥ 5.2x calls it activation checkpointing; older 5.x gradient checkpointing."""
    renamed = "activation_checkpointing" in TrainingArguments.__dataclass_fields__
    prefix = "activation" if renamed else "gradient"
    return {
        f"{prefix}_checkpointing": enabled,
        # Non-reentrant checkpointing works with frozen inputs (peft) and replays hooks (HSMs) exactly.
        f"{prefix}_checkpointing_kwargs": {"use_reentrant": False} if enabled else None,
    }


def training_arguments(cfg: TrainConfig) -> TrainingArguments:
    return TrainingArguments(
        output_dir=cfg.output_dir,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optim,
        bf16=cfg.bf16,
        **_checkpointing_arguments(cfg.gradient_checkpointing),
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=cfg.report_to,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=cfg.dataloader_num_workers,
    )
