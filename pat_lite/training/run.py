"""One training run end to end, and the run folder it lives in (docs/method.md §7).

`train(cfg)` tunes (PAT or plain LoRA), saves the adapter state, merges into the smaller dense model and
saves it. The same entry point runs on one process, or under `torchrun` / `accelerate launch` (DDP).
Re-running an interrupted run with the same settings resumes it from its last *complete* checkpoint.
Outputs in `output_dir`: `adapter/` (LoRA + PAT state), `merged/` (the smaller dense checkpoint with its
tokenizer and `pat_kept.json`), `log_history.json`, `mask_history.safetensors` (W_M at every logging step,
PAT runs) and `train_summary.json`, written last.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import set_seed

from pat_lite.core.attach import get_pat, has_pat
from pat_lite.core.mask import kept_channels
from pat_lite.core.merge import merge_pat
from pat_lite.data.instructions import SFTCollator, build_sft_dataset, load_instruction_data
from pat_lite.training.config import TrainConfig, load_train_config, training_arguments
from pat_lite.training.trainer import (
    MASK_HISTORY,
    PAT_STATE,
    PATTrainer,
    build_model,
    save_mask_history,
    save_pat_state,
)
from pat_lite.utils.atomic import atomic_directory, atomic_write_text

SUMMARY = "train_summary.json"
RUN_CONFIG = "run_config.yaml"


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
                **trainer.mask_lr,
            )
            save_mask_history(trainer.mask_history, out / MASK_HISTORY)
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
