"""PAT (and plain LoRA) training with the Hugging Face `Trainer` and stock `peft` (docs/method.md §5, §7).

    loss = response-only LM loss  +  sparsity loss  +  identity loss          (§5)

- LoRA on every linear layer except lm_head (peft "all-linear"); HSMs, mask and scales in float32.
- The mask schedule follows the Trainer's global step (set before every forward, so it is right after a
  resume too); W_M gets its own learning rate (`mask_lr_multiplier`, see §10).
- Every checkpoint also stores `pat_state.safetensors` (peft saves only LoRA); a restarted run with the
  same command resumes from the last *complete* checkpoint.
- The same entry point runs on one process, or under `torchrun` / `accelerate launch` (DDP).
Outputs in `output_dir`: `adapter/` (LoRA + PAT state), `merged/` (the smaller dense checkpoint with its
tokenizer and `pat_kept.json`), `log_history.json`, and `train_summary.json`, written last.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainingArguments, set_seed

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
from pat_lite.core.merge import merge_pat
from pat_lite.data.instructions import SFTCollator, build_sft_dataset, load_instruction_data
from pat_lite.models.loading import load_model_and_tokenizer
from pat_lite.resources import configs_dir, recipe_names
from pat_lite.utils.atomic import atomic_directory, atomic_write_text

PAT_STATE = "pat_state.safetensors"
PAT_CONFIG = "pat_config.json"
SUMMARY = "train_summary.json"
RUN_CONFIG = "run_config.yaml"


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
    mask_lr_multiplier: float = 10.0
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


# ------------------------------------------------------------------------------------------ the trainer
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


# ------------------------------------------------------------------------------------------ run helpers
def last_complete_checkpoint(output_dir: Path, method: str) -> Path | None:
    """The newest `checkpoint-N` that was fully written (Trainer writes trainer_state.json last)."""
    candidates = sorted(
        (p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for checkpoint in candidates:
        complete = (checkpoint / "trainer_state.json").exists()
        if method == "pat":
            complete = complete and (checkpoint / PAT_STATE).exists()
        if complete:
            return checkpoint
        print(f"[pat_lite] skipping incomplete {checkpoint.name} (interrupted while saving)")
    return None


def prepare_output_dir(cfg: TrainConfig, is_main: bool) -> Path | None:
    """Check the output folder; return the checkpoint to resume from, if any.

    - finished run there → error, unless overwrite_output_dir;
    - the same run, interrupted → resume from its last complete checkpoint;
    - a different run, or unrelated files → error (nothing is overwritten silently).
    """
    out = Path(cfg.output_dir)
    record = yaml.safe_dump(asdict(cfg), sort_keys=True)
    if out.exists() and any(out.iterdir()):
        if cfg.overwrite_output_dir:
            if is_main:
                shutil.rmtree(out)
        elif (out / SUMMARY).exists():
            raise FileExistsError(
                f"{out} already holds a finished run; choose another output_dir "
                "or pass overwrite_output_dir=true"
            )
        elif not (out / RUN_CONFIG).exists():
            raise FileExistsError(
                f"{out} exists and is not a pat_lite run folder; choose another output_dir "
                "or pass overwrite_output_dir=true to delete it"
            )
        elif (out / RUN_CONFIG).read_text() != record:
            raise FileExistsError(
                f"{out} holds an interrupted run with different settings (see {out / RUN_CONFIG}); resume it "
                "with the same command, or choose another output_dir, or pass overwrite_output_dir=true"
            )
        else:
            return last_complete_checkpoint(out, cfg.method)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / RUN_CONFIG, record)
    return None


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


@dataclass
class TrainResult:
    output_dir: Path
    merged_dir: Path | None
    adapter_dir: Path
    summary: dict[str, Any]
    model: Any = None  # the tuned (peft) model, still in memory
    merged: Any = None  # the merged, smaller model (main process only)
    tokenizer: Any = None
    log_history: list[dict[str, Any]] = field(default_factory=list)


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


def train(cfg: TrainConfig, callbacks: list | None = None) -> TrainResult:
    """Tune (PAT or LoRA), save the adapter state, merge into the smaller model and save it.

    Restarting an interrupted run with the same settings resumes it from its last complete checkpoint.
    """
    args = training_arguments(cfg)
    is_main = args.process_index == 0
    resume_from = prepare_output_dir(cfg, is_main)
    set_seed(cfg.seed)  # LoRA and HSM initialisation draw from the global RNG: same seed, same run
    model, tokenizer = build_model(cfg)
    data = load_instruction_data(cfg.data, fraction=cfg.data_fraction)
    if cfg.max_train_samples:
        data = data.select(range(min(cfg.max_train_samples, len(data))))
    with args.main_process_first(desc="tokenizing"):
        dataset = build_sft_dataset(data, tokenizer, cfg.max_length)
    trainer = PATTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=SFTCollator(tokenizer),
        processing_class=tokenizer,
        callbacks=callbacks,
        mask_lr_multiplier=cfg.mask_lr_multiplier,
    )
    if resume_from is not None and is_main:
        print(f"[pat_lite] resuming from {resume_from}")
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    return finish_run(cfg, trainer, model, tokenizer)


def finish_run(cfg: TrainConfig, trainer: PATTrainer, model, tokenizer) -> TrainResult:
    """Save adapter, merged model, logs and (last) the summary that marks the run finished."""
    out = Path(cfg.output_dir)
    adapter_dir, merged_dir = out / "adapter", out / "merged"
    merged = None
    summary: dict[str, Any] = {"method": cfg.method, "model": cfg.model, "steps": trainer.state.global_step}
    if trainer.is_world_process_zero():
        model.eval()

        def write_adapter(tmp: Path) -> None:
            model.save_pretrained(tmp)
            if has_pat(model):
                save_pat_state(model, tmp)

        atomic_directory(adapter_dir, write_adapter)
        summary["base_parameters"] = sum(
            p.numel()
            for n, p in model.get_base_model().named_parameters()
            if not n.startswith("pat.") and "lora_" not in n
        )
        if has_pat(model):
            pat = get_pat(model)
            summary.update(
                hidden_size=int(pat.mask.width),
                target_width=int(pat.config.target_width),
                active_channels=pat.mask.active_channels(),
            )
        if cfg.merge:
            merged = merge_pat(model) if has_pat(model) else _merge_lora(model)
            kept = _kept_record(model, merged)
            summary.update(merged_parameters=sum(p.numel() for p in merged.parameters()), **kept["widths"])

            def write_merged(tmp: Path) -> None:
                merged.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                (tmp / "pat_kept.json").write_text(json.dumps(kept, indent=2) + "\n")

            atomic_directory(merged_dir, write_merged)
        atomic_write_text(out / "log_history.json", json.dumps(trainer.state.log_history, indent=1) + "\n")
        atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    trainer.accelerator.wait_for_everyone()
    return TrainResult(
        output_dir=out,
        merged_dir=merged_dir if cfg.merge else None,
        adapter_dir=adapter_dir,
        summary=summary,
        model=model,
        merged=merged,
        tokenizer=tokenizer,
        log_history=list(trainer.state.log_history),
    )


def _merge_lora(model):
    """The plain-LoRA baseline's merged model: LoRA folded, full width (a copy; `model` stays usable)."""
    import copy

    return copy.deepcopy(model).merge_and_unload().eval()


def _kept_record(model, merged) -> dict[str, Any]:
    """What `merged/pat_kept.json` records: widths and, for PAT, the kept channel indices."""
    from pat_lite.core.mask import kept_channels

    record: dict[str, Any] = {"widths": {"merged_hidden_size": int(merged.config.hidden_size)}}
    if has_pat(model):
        pat = get_pat(model)
        record["kept_channels"] = kept_channels(pat.mask.proxies, int(pat.config.target_width)).tolist()
        record["widths"]["original_hidden_size"] = int(pat.mask.width)
        record["pat_config"] = pat.config.to_dict()
    return record


def pat_train(config: str | os.PathLike | None = None, **overrides: Any) -> TrainResult:
    """Notebook entry point: `pat_train("tiny", max_steps=50, output_dir="runs/x")`."""
    texts = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    return train(load_train_config(config, texts))


def register_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="PAT- or LoRA-tune a model, then merge it (resumes an interrupted run with the same command)",
        description="Example: pat-lite train --config tiny max_steps=100 pat.hio_rank=8",
    )
    parser.add_argument(
        "--config", default="tiny", help="YAML path or a name in configs/ (tiny, tinyllama, ...)"
    )
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE settings, dotted keys for the pat section")
    parser.set_defaults(handler=lambda a: train(load_train_config(a.config, a.overrides)).summary)
