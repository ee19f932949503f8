"""The Hugging Face `Trainer` with PAT's losses, schedule and state (docs/method.md §5), on stock peft LoRA.

    loss = response-only LM loss  +  sparsity loss  +  identity loss          (§5)

- LoRA on every linear layer except lm_head (peft "all-linear"); HSMs, mask and scales in float32.
- The mask schedule follows the Trainer's global step (set before every forward, so it is right after a
  resume too); with `mask_after_milestone="fixed"` W_M is put back to its held value after every
  optimizer step from the milestone on; W_M gets its own learning rate (`mask_lr_multiplier`: 1 as in
  the released code, a number, or "auto" — the released recipe's mask travel budget, see `mask_budget`
  and §10). The chosen multiplier and the budget it gives are logged.
- Every logging step also logs the train/eval gap: the LM loss of the last batch under the soft (training)
  mask and under the exact 0/1 mask (`lm_loss_soft`, `lm_loss_exact`, `lm_loss_gap` = exact − soft), both
  without dropout or gradients, and keeps a snapshot of W_M (the mask history).
- Every checkpoint also stores `pat_state.safetensors` (peft saves only LoRA), the mask history
  `mask_history.safetensors` and the running sum of the training loss, so all three survive a resume:
  the final `train_loss` of a resumed run is the mean over every step, as in an uninterrupted run.
- `pat_state.safetensors` records the PAT settings and the fingerprint of the base weights it was made
  on; `load_pat_state` refuses, in one line, a model with other settings or another base.
- A loss that is not finite stops the run with one line naming the model and the step (the Trainer
  would otherwise average it away in the log and train on).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerState
from transformers.trainer import TRAINER_STATE_NAME

from pat_lite.core.attach import (
    attach_pat,
    force_mask,
    get_pat,
    has_pat,
    mark_pat_trainable,
    pat_losses,
    pat_parameters,
    set_pat_step,
)
from pat_lite.core.config import PATConfig
from pat_lite.core.identity import base_fingerprint, base_name
from pat_lite.data.instructions import calibration_batches, load_instruction_data
from pat_lite.models.loading import load_model_and_tokenizer
from pat_lite.training.config import TrainConfig
from pat_lite.training.mask_budget import LRSchedule, resolve_mask_lr
from pat_lite.utils.atomic import atomic_write_file, atomic_write_text, follow_umask
from pat_lite.utils.errors import CheckpointError, NumericalError

PAT_STATE = "pat_state.safetensors"
PAT_CONFIG = "pat_config.json"
MASK_HISTORY = "mask_history.safetensors"
#: The running sum of the training loss (what `train_loss` averages), in every checkpoint.
LOSS_SUM = "pat_lite_loss_sum.json"


class PATTrainer(Trainer):
    """`Trainer` + PAT: schedule from the global step, PAT losses, the train/eval gap and the mask history
    in the log, PAT state and mask history in every checkpoint."""

    def __init__(self, *args: Any, mask_lr_multiplier: float | str = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: As configured: a number or "auto"; `mask_lr` holds what it resolved to once training starts.
        self.mask_lr_multiplier = mask_lr_multiplier
        self.mask_lr: dict[str, float] = {}
        #: (global step, W_M) at every logging step, in order.
        self.mask_history: list[tuple[int, torch.Tensor]] = []
        # Detached tensors, averaged only when logged: no device sync on every micro-batch.
        self._terms: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._last_batch: dict[str, torch.Tensor] | None = None
        # compute_loss returns a per-micro-batch mean: let Trainer divide it by the accumulation steps.
        self.loss_is_scaled_for_ga = False
        # Σ of what training_step returned over the whole run (Trainer's own sum restarts at a resume, so
        # its train_loss would average the resumed part only); saved in every checkpoint (LOSS_SUM).
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=self.args.device)
        self._loss_sum_to_save: float | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training and has_pat(model):
            set_pat_step(model, self.state.global_step, self.state.max_steps)
        outputs = model(**inputs)
        loss = outputs.loss
        if model.training:
            self._terms["lm_loss"].append(loss.detach())
            self._last_batch = inputs
        extra = None
        if has_pat(model):
            extra = pat_losses(model)
            loss = loss + extra["total"]
            if model.training:
                self._terms["sparsity_loss"].append(extra["sparsity"].detach())
                self._terms["identity_loss"].append(extra["identity"].detach())
        if model.training and not torch.isfinite(loss.detach()).all():
            raise self._not_finite(outputs.loss, extra)
        return (loss, outputs) if return_outputs else loss

    def _not_finite(self, lm_loss: torch.Tensor, extra: dict[str, torch.Tensor] | None) -> NumericalError:
        terms = {"LM loss": lm_loss, **({"sparsity": extra["sparsity"], "identity": extra["identity"]}
                                         if extra else {})}  # fmt: skip
        shown = ", ".join(f"{name} {value.detach().float().item():.4g}" for name, value in terms.items())
        return NumericalError(
            f"the training loss of {base_name(self.model)} is not finite at step {self.state.global_step} "
            f"({shown}): lower learning_rate (now {self.args.learning_rate:g}) or max_grad_norm, or check "
            "the model's weights, and start the run again"
        )

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._loss_sum += loss.detach().to(self._loss_sum)
        return loss

    def run_train_loss(self) -> float:
        """The mean training loss over every step of the run (all processes), resumed or not."""
        total = self.accelerator.gather(self._loss_sum.reshape(1)).mean()
        return float(total.item()) / max(int(self.state.global_step), 1)

    def resolve_mask_lr(self) -> dict[str, float]:
        """The mask's learning-rate multiplier for this run and the travel budget it gives (`mask_budget`),
        from the run's own schedule: learning rate, warm-up, scheduler type, total steps, s0."""
        pat = get_pat(self.model)
        total = int(self.state.max_steps)
        scheduler = getattr(self.args.lr_scheduler_type, "value", self.args.lr_scheduler_type)  # an enum
        warmup = self.args.get_warmup_steps(total)
        lr = LRSchedule(self.args.learning_rate, str(scheduler), warmup, total)
        config = pat.config
        return resolve_mask_lr(
            self.mask_lr_multiplier,
            lr,
            config.milestone_for(total),
            config.schedule,
            config.mask_freeze_fraction,
        )

    def create_optimizer(self, model=None):
        """Three groups: LoRA, HSMs (both at the learning rate) and W_M (× the mask multiplier)."""
        if self.optimizer is None and has_pat(self.model):
            groups = pat_parameters(self.model)
            special = {id(p) for group in groups.values() for p in group}
            lora = [p for p in self.model.parameters() if p.requires_grad and id(p) not in special]
            lr, decay = self.args.learning_rate, self.args.weight_decay
            mask_params = [p for p in groups["mask"] if p.requires_grad]
            multiplier = 1.0
            if mask_params:  # a learned mask (not the frozen or fixed ones)
                self.mask_lr = self.resolve_mask_lr()
                multiplier = self.mask_lr["mask_lr_multiplier"]
                if self.is_world_process_zero():
                    print(
                        f"[pat_lite] mask learning rate: {multiplier:.4g} x lr "
                        f"(mask_lr_multiplier={self.mask_lr_multiplier}); mask travel budget "
                        f"{self.mask_lr['mask_travel_budget']:.4g} (released recipe: "
                        f"{self.mask_lr['released_travel_budget']:.4g})"
                    )
            param_groups = [
                {"params": lora, "lr": lr, "weight_decay": decay},
                {"params": [p for p in groups["hsm"] if p.requires_grad], "lr": lr, "weight_decay": 0.0},
                {"params": mask_params, "lr": lr * multiplier, "weight_decay": 0.0},
            ]
            optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, self.model)
            optimizer_kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(
                [g for g in param_groups if g["params"]], lr=lr, **optimizer_kwargs
            )
            # mask_after_milestone="fixed": W_M goes back to its held value after every step (momentum
            # and the sparsity loss would move it), so the merge sees the kept set of the milestone.
            mask = get_pat(self.model).mask
            self.optimizer.register_step_post_hook(lambda *_: mask.hold())
        return super().create_optimizer(model)

    def load_final_checkpoint(self, checkpoint: str | os.PathLike) -> None:
        """Take weights, PAT state and trainer state from a checkpoint saved at the last step, without
        training: `train(resume_from_checkpoint=...)` from there would run one step past max_steps."""
        self._load_from_checkpoint(str(checkpoint))
        self.state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
        if has_pat(self.model) and any(p.requires_grad for p in pat_parameters(self.model)["mask"]):
            self.mask_lr = self.resolve_mask_lr()  # what create_optimizer would have logged and summarised
        if not any("train_loss" in entry for entry in self.state.log_history):
            self.log({"train_loss": 0.0})  # the final entry training logs after this checkpoint (see log)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "train_loss" in logs:  # the end of training: the mean over the whole run, not this session
            logs["train_loss"] = self.run_train_loss()
        if "loss" in logs:  # a training log, not an evaluation one
            for name, values in self._terms.items():
                if values:
                    logs[name] = torch.stack(values).float().mean().item()
            self._terms.clear()
            if has_pat(self.model):
                pat = get_pat(self.model)
                logs.update(pat.stats())
                logs.update(self.mask_lr)
                if self._last_batch is not None:
                    logs.update(self.train_eval_gap(self._last_batch))
                snapshot = pat.mask.proxies.detach().float().cpu().clone()
                self.mask_history.append((int(self.state.global_step), snapshot))
        super().log(logs, start_time)

    def train_eval_gap(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """LM loss of `batch` under the soft (training) mask of the step last set and under the exact 0/1
        mask, with the current weights, no dropout and no gradients; and exact − soft."""
        model = self.model
        was_training = model.training
        model.eval()
        losses = {}
        try:
            with torch.no_grad(), self.compute_loss_context_manager():
                for kind in ("soft", "exact"):
                    with force_mask(model, kind):
                        losses[kind] = model(**batch).loss.float().item()
        finally:
            model.train(was_training)
        return {
            "lm_loss_soft": losses["soft"],
            "lm_loss_exact": losses["exact"],
            "lm_loss_gap": losses["exact"] - losses["soft"],
        }

    def _save_checkpoint(self, model, trial) -> None:
        # Every process takes part in the gather; `_save` (main process only) then writes the value into
        # the checkpoint before the Trainer's trainer_state.json, which marks a checkpoint complete.
        self._loss_sum_to_save = float(self.accelerator.gather(self._loss_sum.reshape(1)).mean().item())
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._loss_sum_to_save = None

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        directory = Path(output_dir or self.args.output_dir)
        if not self.args.should_save:
            return
        if has_pat(self.model):
            save_pat_state(self.model, directory)
            save_mask_history(self.mask_history, directory / MASK_HISTORY)
        if self._loss_sum_to_save is not None:
            atomic_write_text(directory / LOSS_SUM, json.dumps({"loss_sum": self._loss_sum_to_save}) + "\n")
        follow_umask(directory)  # peft and safetensors write 0600 files

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        loss_sum = Path(resume_from_checkpoint, LOSS_SUM)
        if loss_sum.exists():  # (a checkpoint of an older pat_lite has none: the sum restarts)
            value = json.loads(loss_sum.read_text())["loss_sum"]
            self._loss_sum = torch.tensor(value, dtype=torch.float64, device=self.args.device)
        if has_pat(model or self.model):
            load_pat_state(model or self.model, resume_from_checkpoint)
            history = Path(resume_from_checkpoint, MASK_HISTORY)
            if history.exists():
                steps, proxies = load_mask_history(history)
                self.mask_history = list(zip(steps.tolist(), proxies.unbind(0), strict=True))


def save_mask_history(history: list[tuple[int, torch.Tensor]], path: str | os.PathLike) -> None:
    """The W_M snapshots as safetensors: `steps` (int64, n) and `proxies` (float32, n × d); atomic."""
    if history:
        steps = torch.tensor([step for step, _ in history], dtype=torch.int64)
        proxies = torch.stack([snapshot for _, snapshot in history]).float().contiguous()
    else:
        steps, proxies = torch.zeros(0, dtype=torch.int64), torch.zeros(0, 0)
    atomic_write_file(path, lambda tmp: save_file({"steps": steps, "proxies": proxies}, str(tmp)))


def load_mask_history(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """`(steps, proxies)` of a `mask_history.safetensors`: one W_M row per logging step."""
    tensors = load_file(str(path))
    return tensors["steps"], tensors["proxies"]


def save_pat_state(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """PAT's parameters (safetensors) and its resolved config (JSON) next to a peft adapter. The
    safetensors metadata also records the config and the base model (name and `base_fingerprint`)."""
    pat = get_pat(model)
    config = pat.config.to_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in pat.state_dict().items()}
    metadata = {
        "pat_config": json.dumps(config),
        "base_model": base_name(model),
        "base_fingerprint": base_fingerprint(model),
    }
    path = Path(directory, PAT_STATE)
    save_file(state, str(path), metadata=metadata)
    follow_umask(path)
    Path(directory, PAT_CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def load_pat_state(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Load a saved PAT state into `model`'s attached PAT, after checking that it belongs there: the same
    PAT settings (`pat_config.json`, or the state's metadata), the same base weights (fingerprint) and the
    same tensor shapes. Anything else is a CheckpointError in one line saying what differs."""
    path = Path(directory, PAT_STATE)
    if not path.exists():
        raise CheckpointError(f"{path} is missing: this checkpoint was not written by a PAT run")
    pat = get_pat(model)
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} cannot be read ({' '.join(str(error).split())})") from error
    saved = _saved_pat_config(Path(directory), metadata)
    if saved is not None and (differences := _config_differences(saved, pat.config.to_dict())):
        raise CheckpointError(
            f"{directory} holds a PAT state made with other PAT settings than this model's ({differences}); "
            f"attach PAT with the saved ones: PATConfig.from_dict(<{PAT_CONFIG} of {directory}>)"
        )
    recorded = metadata.get("base_fingerprint")
    if recorded and recorded != (current := base_fingerprint(model)):
        raise CheckpointError(
            f"{directory} was tuned on another base model ({metadata.get('base_model')}, fingerprint "
            f"{recorded}) than this one ({base_name(model)}, fingerprint {current}); load the base it was "
            "made on"
        )
    expected = pat.state_dict()
    if (problem := _state_problem(state, expected)) is not None:
        raise CheckpointError(f"{path} does not fit this model's PAT: {problem}")
    device = pat.mask.proxies.device
    pat.load_state_dict({k: v.to(device) for k, v in state.items()})


def _saved_pat_config(directory: Path, metadata: dict[str, str]) -> dict[str, Any] | None:
    file = directory / PAT_CONFIG
    try:
        text = file.read_text() if file.exists() else metadata.get("pat_config")
        return json.loads(text) if text else None
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{file} is not readable JSON ({' '.join(str(error).split())})") from error


def _config_differences(saved: dict[str, Any], current: dict[str, Any], limit: int = 4) -> str:
    keys = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    shown = ", ".join(f"{k}: saved {saved.get(k)!r}, here {current.get(k)!r}" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _state_problem(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str | None:
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        return f"tensors missing {missing[:3]}, unexpected {unexpected[:3]}"
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            return f"{name} has shape {tuple(state[name].shape)} there, {tuple(tensor.shape)} here"
    return None


def add_adapters(model, method: str, pat_config: PATConfig | None, lora, calibration=None):
    """PAT (if method == "pat") and then peft LoRA/DoRA on every linear layer except lm_head.

    PAT goes on first so LoRA's update on o_proj/down_proj lands inside the block the HSM hooks (and a
    PCA basis rotates the plain base); peft then freezes everything that is not LoRA, so PAT's parameters
    are made trainable again. `calibration`: for the PAT settings that measure the residual stream."""
    from peft import get_peft_model

    if method == "pat":
        model = attach_pat(model, pat_config, calibration=calibration)
    model = get_peft_model(model, lora)
    if method == "pat":
        mark_pat_trainable(model)
    return model


def build_model(cfg: TrainConfig, data=None):
    """Base model (+ PAT) wrapped with peft LoRA/DoRA on every linear layer except lm_head.

    `data`: the tuning records (loaded from `cfg.data` if not given), whose first ones calibrate the PAT
    settings that measure the residual stream (`PATConfig.needs_calibration`)."""
    from peft import LoraConfig

    model, tokenizer = load_model_and_tokenizer(
        cfg.model, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code
    )
    calibration = None
    if cfg.method == "pat" and cfg.pat_config.needs_calibration:
        records = data if data is not None else load_instruction_data(cfg.data)
        calibration = calibration_batches(records, tokenizer)
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules="all-linear",  # peft leaves lm_head out; HSMs hold no nn.Linear
        use_dora=cfg.use_dora,
        task_type="CAUSAL_LM",
    )
    return add_adapters(model, cfg.method, cfg.pat_config, lora, calibration), tokenizer
