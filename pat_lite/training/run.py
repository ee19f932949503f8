"""One training run end to end, and the run folder it lives in (docs/method.md §7).

`train(cfg)` tunes (PAT or plain LoRA), saves the adapter state, merges into the smaller dense model and
saves it. The same entry point runs on one process, or under `torchrun` / `accelerate launch` (DDP).

Everything is checked before the output folder is touched: settings (types, ranges, logging
integrations), the folder itself (a writable location, not in use by another command: its lock is held
for the whole run), the instruction data (every record), the model (loadable, and a width PAT can cut it
to), the run's length against the data and s0. A failed start therefore leaves nothing behind. Re-running
an interrupted run with the same command resumes it from its last complete checkpoint and ends
bit-identical to a run that was never interrupted, whichever moment it was killed at, log included (see
`pat_lite.training.run_folder` for the folder's lifecycle). Ctrl-C and a full disk end the run with one
line saying so; the same command then resumes it.

Outputs in `output_dir`: `adapter/` (LoRA + PAT state), `merged/` (the smaller dense checkpoint with its
tokenizer and `pat_kept.json`), `log_history.json`, `mask_history.safetensors` (W_M at every logging step,
PAT runs) and `train_summary.json`, written last.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import PartialState
from safetensors import SafetensorError
from transformers import set_seed
from transformers.trainer import DEFAULT_PROGRESS_CALLBACK
from transformers.trainer_callback import PrinterCallback

from pat_lite.core.attach import get_pat, has_pat
from pat_lite.core.mask import kept_channels
from pat_lite.core.merge import merge_pat
from pat_lite.data.instructions import SFTCollator, build_sft_dataset, load_instruction_data
from pat_lite.training.config import (
    TrainConfig,
    load_train_config,
    milestone_warning,
    optimizer_steps,
    training_arguments,
)
from pat_lite.training.run_folder import (
    RUN_CONFIG,
    SUMMARY,
    RunPlan,
    commit_run,
    last_complete_checkpoint,
    open_run,
    plan_run,
    run_inputs,
    training_finished,
)
from pat_lite.training.trainer import (
    MASK_HISTORY,
    PATTrainer,
    build_model,
    save_mask_history,
    save_pat_state,
)
from pat_lite.utils.atomic import atomic_directory, atomic_write_text
from pat_lite.utils.errors import ConfigError, Interrupted, PatLiteError, one_line
from pat_lite.utils.locks import hold_folder
from pat_lite.utils.output import is_no_space, no_space_error, output_location

__all__ = ["RUN_CONFIG", "SUMMARY", "TrainResult", "last_complete_checkpoint", "pat_train", "train"]


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


def train(cfg: TrainConfig, callbacks: list | None = None, progress: bool = True) -> TrainResult:
    """Tune (PAT or LoRA), save the adapter state, merge into the smaller model and save it.

    Restarting an interrupted run with the same settings resumes it from its last complete checkpoint.
    `progress=False` drops the Trainer's live progress bar (in a notebook: a growing table of losses), for
    runs whose log is shown afterwards; it changes nothing else.
    """
    args = training_arguments(cfg)  # the Trainer's own checks, and the process layout (DDP)
    folder = output_location(cfg.output_dir, "output_dir")
    # One process of a launch holds the folder: rank 0 as the launcher (torchrun) numbers them.
    holder = int(os.environ.get("RANK", args.process_index)) == 0
    with hold_folder(folder, "output_dir") if holder else nullcontext():
        return _train(cfg, args, callbacks, progress)


def _train(cfg: TrainConfig, args, callbacks: list | None, progress: bool) -> TrainResult:
    """`train` with the output folder held: check everything, open the folder, train, save."""
    is_main = args.process_index == 0
    with args.main_process_first(desc="checking the output folder"):
        plan_run(cfg)  # a folder this run may not use is refused before anything loads
    data = load_instruction_data(cfg.data, fraction=cfg.data_fraction)
    if cfg.max_train_samples:
        data = data.select(range(min(cfg.max_train_samples, len(data))))
    set_seed(cfg.seed)  # LoRA and HSM initialisation draw from the global RNG: same seed, same run
    model, tokenizer = _build_model(cfg, data)
    with args.main_process_first(desc="tokenizing"):
        dataset = build_sft_dataset(data, tokenizer, cfg.max_length, source=cfg.data)
    warning = milestone_warning(cfg, optimizer_steps(cfg, len(dataset), args.world_size))
    if warning and is_main:
        print(f"[pat_lite] warning: {warning}", file=sys.stderr)
    inputs = run_inputs(cfg, data, model)
    with args.main_process_first(desc="checking the output folder"):
        plan = plan_run(cfg, inputs)  # now that the inputs are known: resume only on the same ones
    trainer = PATTrainer(
        model=model,
        args=training_arguments(cfg, output_dir=plan.work_dir),
        train_dataset=dataset,
        data_collator=SFTCollator(tokenizer),
        processing_class=tokenizer,
        callbacks=callbacks,
        mask_lr_multiplier=cfg.mask_lr_multiplier,
    )
    if not progress:
        for live in (DEFAULT_PROGRESS_CALLBACK, PrinterCallback):
            trainer.remove_callback(live)

    # Everything is checked: from here on the run folder changes.
    PartialState().wait_for_everyone()
    if is_main:
        if plan.note:
            print(f"[pat_lite] {plan.note}")
        open_run(plan, cfg, inputs)
    PartialState().wait_for_everyone()
    try:
        if training_finished(plan.resume_from):
            # Killed while saving the results: the last checkpoint already holds the final weights. Trainer
            # would train one step past max_steps if asked to resume from it, so load it instead.
            if is_main:
                print(f"[pat_lite] training had finished at {plan.resume_from.name}; saving its results")
            trainer.load_final_checkpoint(plan.resume_from)
        else:
            trainer.train(resume_from_checkpoint=str(plan.resume_from) if plan.resume_from else None)
        return finish_run(cfg, plan, trainer, model, tokenizer)
    except KeyboardInterrupt as interrupt:
        raise Interrupted(_resume_hint(cfg, plan)) from interrupt
    except (OSError, RuntimeError, SafetensorError) as error:
        if is_no_space(error, plan.work_dir):
            then = "run the same command again: it resumes from the last complete checkpoint"
            raise no_space_error(plan.work_dir, "writing the run", then) from error
        raise


def _resume_hint(cfg: TrainConfig, plan: RunPlan) -> str:
    """What an interrupted run leaves and how to go on (one line)."""
    checkpoint = last_complete_checkpoint(plan.work_dir, cfg.method)
    if checkpoint is None:
        return f"training in {plan.work_dir} stopped before its first checkpoint: run the same command again"
    return (
        f"training in {plan.work_dir} stopped; its last complete checkpoint is {checkpoint}: run the same "
        "command again to resume from it"
    )


def _build_model(cfg: TrainConfig, data):
    """The base model with PAT and LoRA; a setting that does not fit the model becomes a ConfigError."""
    try:
        return build_model(cfg, data)
    except PatLiteError:
        raise
    except ValueError as err:  # a width PAT cannot cut this model to, an unsupported architecture, LoRA
        raise ConfigError(f"model {cfg.model}: {one_line(err)}") from err


def finish_run(cfg: TrainConfig, plan: RunPlan, trainer: PATTrainer, model, tokenizer) -> TrainResult:
    """Save adapter, merged model, logs and (last) the summary that marks the run finished; then, if this
    run replaces an older folder, put it in place."""
    work, out = plan.work_dir, plan.output_dir
    merged = None
    summary: dict[str, Any] = {
        "method": cfg.method,
        "model": cfg.model,
        "steps": trainer.state.global_step,
        "processes": trainer.args.world_size,
    }
    if trainer.is_world_process_zero():
        model.eval()

        def write_adapter(tmp: Path) -> None:
            model.save_pretrained(tmp)
            if has_pat(model):
                save_pat_state(model, tmp)

        atomic_directory(work / "adapter", write_adapter)
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
            save_mask_history(trainer.mask_history, work / MASK_HISTORY)
        if cfg.merge:
            merged = merge_pat(model) if has_pat(model) else _merge_lora(model)
            kept = _kept_record(model, merged)
            summary.update(merged_parameters=sum(p.numel() for p in merged.parameters()), **kept["widths"])

            def write_merged(tmp: Path) -> None:
                merged.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                (tmp / "pat_kept.json").write_text(json.dumps(kept, indent=2) + "\n")

            atomic_directory(work / "merged", write_merged)
        atomic_write_text(work / "log_history.json", json.dumps(trainer.state.log_history, indent=1) + "\n")
        atomic_write_text(work / SUMMARY, json.dumps(summary, indent=2) + "\n")
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        commit_run(plan)
    trainer.accelerator.wait_for_everyone()
    return TrainResult(
        output_dir=out,
        merged_dir=out / "merged" if cfg.merge else None,
        adapter_dir=out / "adapter",
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


def pat_train(config: str | os.PathLike | None = None, progress: bool = True, **settings: Any) -> TrainResult:
    """Notebook entry point: `pat_train("tiny", max_steps=50, learning_rate=5e-5, output_dir="runs/x")`;
    `pat={"hio_rank": 4}` updates the recipe's pat section; `progress=False` hides the live progress bar."""
    return train(load_train_config(config, settings=settings), progress=progress)
