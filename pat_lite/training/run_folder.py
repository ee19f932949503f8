"""The run folder's lifecycle: nothing a user had is lost, and a re-run of the same command resumes.

`plan_run(cfg)` only reads; it decides where this run trains and from which checkpoint it resumes, or
refuses with a one-line `RunFolderError`. `train()` validates everything else (data, model, widths) and
only then calls `open_run(plan)`, the first write. So a failed start leaves nothing behind.

    output_dir                            what happens
    missing or empty                      a fresh run, in place
    the same run, unfinished              resume from its last complete checkpoint (whatever the flags)
    another run that never checkpointed   start over in place (it holds nothing to resume)
    a finished run, another unfinished    refused; with overwrite_output_dir=true the new run trains in
    run, or someone else's files          `<output_dir>.new` and replaces the old folder only once it has
                                          finished (`commit_run`: move aside, move in, then delete)

A run is "the same" when its `run_config.yaml` records the same settings (overwrite_output_dir and
report_to aside: a crashed run resumes whether or not its command had that flag, and whichever loggers
watch it) and its `run_inputs.json` the same inputs: the fingerprints of the instruction records and of
the base model's weights. A resume after the data file or the base changed would continue on other inputs
than it started with, and end matching neither: it is refused like a run with other settings.
`train_summary.json`, written last, marks a finished run. A crash during the final swap is undone by the
next `plan_run` (see `recover_interrupted_swap`), so the old folder is never lost and the same command
then completes it.

`output_dir` is checked first (`pat_lite.utils.output`): one line for a location that cannot be a folder
or cannot be written. A symlink stands for its target: the run is written there and the link is kept.
`train()` holds the folder's lock (`pat_lite.utils.locks`) from before `plan_run` to the end, so two
commands never plan, write or replace the same folder at once.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from transformers.trainer import TRAINER_STATE_NAME

from pat_lite.core.identity import base_fingerprint
from pat_lite.data.instructions import records_fingerprint
from pat_lite.training.config import TrainConfig
from pat_lite.training.trainer import PAT_STATE
from pat_lite.utils.atomic import aside_path, atomic_write_text, leftovers, replace_directory
from pat_lite.utils.errors import RunFolderError
from pat_lite.utils.output import output_location

SUMMARY = "train_summary.json"
RUN_CONFIG = "run_config.yaml"
RUN_INPUTS = "run_inputs.json"
#: Settings that do not change what a run computes; a run that differs only in these is the same run.
NOT_RECORDED = ("overwrite_output_dir", "report_to")


@dataclass(frozen=True)
class RunPlan:
    output_dir: Path  # where the finished run will be
    work_dir: Path  # where this run trains: output_dir, or `<output_dir>.new` when it replaces a folder
    resume_from: Path | None  # the last complete checkpoint of this same run
    start_over: bool  # work_dir holds nothing to keep (stale or empty): clear it before the run starts
    note: str | None = None  # what the plan decided, for the user

    @property
    def replaces(self) -> bool:
        return self.work_dir != self.output_dir


def run_record(cfg: TrainConfig) -> dict[str, Any]:
    """The settings that identify a run (what `run_config.yaml` holds)."""
    record = asdict(cfg)
    for key in NOT_RECORDED:
        record.pop(key, None)
    return record


def run_inputs(cfg: TrainConfig, data: Any, model: Any) -> dict[str, Any]:
    """What a run is tuned from (`run_inputs.json`): the instruction records and the base weights, each
    with its fingerprint."""
    return {
        "data": {"source": cfg.data, "records": len(data), "fingerprint": records_fingerprint(data)},
        "base_model": {"name": cfg.model, "fingerprint": base_fingerprint(model)},
    }


def _input_differences(folder: Path, inputs: dict[str, Any] | None) -> str:
    """What differs between the inputs recorded in `folder` and `inputs` ("" if nothing, or if either is
    unknown: a folder of an older pat_lite, or a check made before the inputs were loaded)."""
    if inputs is None:
        return ""
    try:
        recorded = json.loads((folder / RUN_INPUTS).read_text())
    except (OSError, ValueError):
        return ""
    changed = []
    for key, what in (("data", "the instruction data"), ("base_model", "the base model")):
        old, new = recorded.get(key, {}), inputs[key]
        if old.get("fingerprint") not in (None, new["fingerprint"]):
            size = f", {old.get('records')} → {new['records']} records" if key == "data" else ""
            changed.append(
                f"{what} {new.get('source') or new.get('name')} changed since the run started (fingerprint "
                f"{old['fingerprint']} → {new['fingerprint']}{size})"
            )
    return "; ".join(changed)


def staging_dir(output_dir: Path) -> Path:
    return output_dir.with_name(f"{output_dir.name}.new")


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[-1])


def read_trainer_state(checkpoint: Path) -> dict[str, Any] | None:
    """The checkpoint's trainer_state.json (written last by the Trainer), or None if it is incomplete."""
    try:
        state = json.loads((checkpoint / TRAINER_STATE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "global_step" in state else None


def last_complete_checkpoint(output_dir: Path, method: str) -> Path | None:
    """The newest `checkpoint-N` that was fully written (Trainer writes trainer_state.json last)."""
    candidates = sorted(
        (p for p in Path(output_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=checkpoint_step,
        reverse=True,
    )
    for checkpoint in candidates:
        complete = read_trainer_state(checkpoint) is not None
        if method == "pat":
            complete = complete and (checkpoint / PAT_STATE).exists()
        if complete:
            return checkpoint
        print(f"[pat_lite] skipping incomplete {checkpoint.name} (interrupted while saving)")
    return None


def training_finished(checkpoint: Path | None) -> bool:
    """True if `checkpoint` was saved at the last optimizer step: nothing is left to train."""
    state = read_trainer_state(checkpoint) if checkpoint is not None else None
    return bool(state) and state.get("max_steps", 0) > 0 and state["global_step"] >= state["max_steps"]


def _recorded_settings(folder: Path) -> dict[str, Any] | None:
    try:
        record = yaml.safe_load((folder / RUN_CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(record, dict):
        return None
    for key in NOT_RECORDED:
        record.pop(key, None)
    return record


def _differences(old: dict[str, Any], new: dict[str, Any], limit: int = 4) -> str:
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    shown = ", ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _is_empty(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def recover_interrupted_swap(output_dir: Path) -> None:
    """Undo a replacement that a crash interrupted after "move the old folder aside" and before "move the
    new run in": the old folder goes back, the finished new run stays in `<output_dir>.new`, where the
    same command finds it again (and only saves and commits it). An aside folder left next to a complete
    output_dir (the crash came after the move-in) is deleted."""
    aside = aside_path(output_dir)
    if not aside.exists():
        return
    if output_dir.exists():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        print(f"[pat_lite] putting {output_dir} back: its replacement was interrupted")
        os.replace(aside, output_dir)


def plan_run(cfg: TrainConfig, inputs: dict[str, Any] | None = None) -> RunPlan:
    """Decide where this run trains and from which checkpoint; refuse (RunFolderError) rather than risk a
    folder. `inputs` (`run_inputs`), once loaded, must match what the folder's run started from for it to
    be resumed. Reads only (apart from undoing an interrupted swap, see `recover_interrupted_swap`)."""
    out = output_location(cfg.output_dir, "output_dir")
    recover_interrupted_swap(out)
    wanted = run_record(cfg)
    if _is_empty(out):
        return RunPlan(out, out, None, start_over=False)
    recorded = _recorded_settings(out)
    finished = (out / SUMMARY).exists()
    other_inputs = _input_differences(out, inputs) if recorded == wanted else ""
    if recorded == wanted and not finished and not other_inputs:
        checkpoint = last_complete_checkpoint(out, cfg.method)
        note = f"resuming from {checkpoint}" if checkpoint else f"restarting the unfinished run in {out}"
        return RunPlan(out, out, checkpoint, start_over=checkpoint is None, note=note)
    if recorded is not None and not finished and last_complete_checkpoint(out, cfg.method) is None:
        note = f"{out} holds a run that stopped before its first checkpoint: starting over with this one"
        return RunPlan(out, out, None, start_over=True, note=note)
    if not cfg.overwrite_output_dir:
        raise RunFolderError(_refusal(out, recorded, wanted, finished, other_inputs))
    return _replacement_plan(cfg, out, wanted, inputs)


def _refusal(
    out: Path, recorded: dict[str, Any] | None, wanted: dict[str, Any], finished: bool, other_inputs: str
) -> str:
    safe = "pass overwrite_output_dir=true (the old folder is replaced only once the new run has finished)"
    if finished:
        return f"{out} already holds a finished run; choose another output_dir or {safe}"
    if recorded is None:
        return f"{out} exists and is not a pat_lite run folder; choose another output_dir or {safe}"
    if other_inputs:
        return (
            f"{out} holds an interrupted run of these settings on other inputs: {other_inputs}; resuming "
            f"would continue on inputs it did not start with. Restore them to resume, choose another "
            f"output_dir, or {safe}"
        )
    return (
        f"{out} holds an interrupted run with other settings ({_differences(recorded, wanted)}); resume it "
        f"with its own command, choose another output_dir, or {safe}"
    )


def _replacement_plan(
    cfg: TrainConfig, out: Path, wanted: dict[str, Any], inputs: dict[str, Any] | None
) -> RunPlan:
    """Train in `<out>.new`, resuming what an earlier attempt of this same command (same settings, same
    inputs) left there."""
    staged = staging_dir(out)
    note = f"{out} is kept until the new run, training in {staged}, has finished and replaces it"
    if _is_empty(staged):
        return RunPlan(out, staged, None, start_over=False, note=note)
    recorded = _recorded_settings(staged)
    if recorded is None:
        raise RunFolderError(
            f"{staged} (where a replacement of {out} trains) holds files that are not a pat_lite run; "
            "move them away"
        )
    if recorded == wanted and not _input_differences(staged, inputs):
        checkpoint = last_complete_checkpoint(staged, cfg.method)
        if checkpoint is not None:
            note = f"{note}; resuming from {checkpoint}"
            return RunPlan(out, staged, checkpoint, start_over=False, note=note)
    return RunPlan(out, staged, None, start_over=True, note=note)


def open_run(plan: RunPlan, cfg: TrainConfig, inputs: dict[str, Any] | None = None) -> None:
    """The first write of a run (main process only): (re)create the work folder, record the inputs and
    the settings, and clear what a killed process left half-written (temporary files and folders)."""
    work = plan.work_dir
    if plan.start_over and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for debris in leftovers(work):
        if debris.is_dir():
            shutil.rmtree(debris, ignore_errors=True)
        else:
            debris.unlink(missing_ok=True)
    if inputs is not None:  # before the settings: a folder with run_config.yaml has both
        atomic_write_text(work / RUN_INPUTS, json.dumps(inputs, indent=2) + "\n")
    atomic_write_text(work / RUN_CONFIG, yaml.safe_dump(asdict(cfg), sort_keys=True))


def commit_run(plan: RunPlan) -> None:
    """Put a finished replacement run in place of the old folder (main process only)."""
    if plan.replaces:
        replace_directory(plan.work_dir, plan.output_dir)
