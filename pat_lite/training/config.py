"""A training run's settings: `TrainConfig` (the paper's recipe as defaults, docs/method.md §7), read from a
recipe in configs/ plus KEY=VALUE overrides, and turned into Hugging Face `TrainingArguments`.

Every field is converted to its declared type and checked when the config is built, whichever way the
values came (YAML, overrides, keyword arguments): YAML 1.1 reads `1e-4` as a string, and a wrong value must
fail here, in one line naming it, not deep inside the Trainer after the model has loaded.
"""

from __future__ import annotations

import math
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from transformers import TrainingArguments

from pat_lite.core.config import PATConfig
from pat_lite.resources import configs_dir, recipe_names
from pat_lite.utils.errors import ConfigError, one_line
from pat_lite.utils.typed import convert_fields, convert_value
from pat_lite.utils.yamlfile import safe_load

#: Recipe keys that document a recipe (time and memory it needs) and are not settings.
DOCUMENTATION_KEYS = ("expected",)


@dataclass
class TrainConfig:
    """One training run. Defaults are the paper's recipe (§7); `configs/*.yaml` override them.

    The annotations are the types every value is converted to (`pat_lite.utils.typed`); `VALUE_CHECKS`
    below holds the ranges. A new field needs only its line here (and a check, if it has a range)."""

    model: str = "tiny"  # "tiny" (the embedded base), "smollm2-135m", a hub name or a local checkpoint
    data: str = "toy"  # "toy", "realtext" (CPython's docs), "lamini" (hub) or a local LaMini-style file
    data_fraction: float = 0.5  # the paper's random 50 % of LaMini (seed 42)
    max_train_samples: int | None = None
    max_length: int = 256
    output_dir: str = "runs/pat-tiny"
    method: Literal["pat", "lora"] = "pat"  # "lora": the paper's baseline, same code path, no HSMs
    pat: dict[str, Any] = field(default_factory=dict)  # PATConfig fields
    lora_r: int = 20
    lora_alpha: int = 4
    lora_dropout: float = 0.05
    use_dora: bool = False
    learning_rate: float = 5e-5
    # W_M's learning rate / learning_rate. 1 as in the released code; "auto": the multiplier that gives this
    # run the released recipe's mask travel budget (Σ mask lr while the task loss moves W_M, ≈ 0.38) under
    # its own lr schedule (pat_lite.training.mask_budget, docs/method.md §10).
    mask_lr_multiplier: float | Literal["auto"] = 1.0
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
        convert_fields(self)
        for name, (allowed, wanted) in VALUE_CHECKS.items():
            value = getattr(self, name)
            if value is not None and not allowed(value):
                raise ConfigError(f"{name}={value!r}: must be {wanted}")
        self.pat = _checked_pat_section(self.pat)

    @property
    def pat_config(self) -> PATConfig:
        return PATConfig.from_dict(self.pat)


def _is_float_dtype(name: str) -> bool:
    return isinstance(getattr(torch, name, None), torch.dtype) and getattr(torch, name).is_floating_point


#: Ranges, checked after the type conversion (None passes: it means "not set" for optional fields).
VALUE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model": (bool, "a model: tiny, a hub name or a checkpoint folder"),
    "data": (bool, "instruction data: toy, lamini or a local file"),
    "output_dir": (bool, "a folder"),
    "data_fraction": (lambda v: 0 < v <= 1, "a fraction in (0, 1]"),
    "max_train_samples": (lambda v: v >= 1, "≥ 1 (or null for all)"),
    "max_length": (lambda v: v >= 2, "≥ 2 tokens"),
    "lora_r": (lambda v: v >= 1, "≥ 1"),
    "lora_alpha": (lambda v: v > 0, "> 0"),
    "lora_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "learning_rate": (lambda v: v > 0, "> 0"),
    "mask_lr_multiplier": (lambda v: v == "auto" or v > 0, "> 0, or 'auto'"),
    "num_train_epochs": (lambda v: v > 0, "> 0"),
    "max_steps": (lambda v: v == -1 or v >= 1, "≥ 1, or -1 to train num_train_epochs"),
    "per_device_train_batch_size": (lambda v: v >= 1, "≥ 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1, "≥ 1"),
    "warmup_steps": (lambda v: v >= 0, "≥ 0"),
    "weight_decay": (lambda v: v >= 0, "≥ 0"),
    "max_grad_norm": (lambda v: v >= 0, "≥ 0"),
    "dtype": (_is_float_dtype, "a floating torch dtype: float32, bfloat16 or float16"),
    "seed": (lambda v: v >= 0, "≥ 0"),
    "logging_steps": (lambda v: v >= 1, "≥ 1"),
    "save_steps": (lambda v: v >= 1, "≥ 1"),
    "save_total_limit": (lambda v: v >= 1, "≥ 1 (or null to keep every checkpoint)"),
    "dataloader_num_workers": (lambda v: v >= 0, "≥ 0"),
}


def _checked_pat_section(section: dict[str, Any]) -> dict[str, Any]:
    """The `pat` section with every value converted to its PATConfig type and checked by PATConfig."""
    hints = typing.get_type_hints(PATConfig)
    unknown = sorted(set(section) - set(hints))
    if unknown:
        raise ConfigError(f"unknown pat settings {unknown}; known (PATConfig fields): {sorted(hints)}")
    converted = {key: convert_value(f"pat.{key}", value, hints[key]) for key, value in section.items()}
    try:
        PATConfig.from_dict(converted)
    except ValueError as err:
        raise ConfigError(f"pat: {one_line(err)}") from err
    return converted


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not KEY=VALUE (e.g. max_steps=100 or pat.hio_rank=8)")
    key, value = text.split("=", 1)
    try:
        return key.strip(), safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({one_line(err)})") from None


def _set_setting(values: dict[str, Any], dotted_key: str, value: Any) -> None:
    """values[a][b] = value for "a.b"; a mapping given for a section is merged into it."""
    *sections, last = dotted_key.split(".")
    target = values
    for depth, key in enumerate(sections):
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{dotted_key}: {'.'.join(sections[: depth + 1])} is not a section")
    if isinstance(value, Mapping) and isinstance(target.get(last), dict):
        target[last] = {**target[last], **value}
    else:
        target[last] = value


def _recipe_file(path: str | os.PathLike) -> Path:
    file = Path(path)
    if not file.exists() and (configs_dir() / f"{path}.yaml").exists():
        return configs_dir() / f"{path}.yaml"
    if not file.exists():
        raise ConfigError(f"no config {str(path)!r}: give a YAML file or one of the recipes {recipe_names()}")
    if file.is_dir():
        raise ConfigError(f"{file} is a folder: --config takes a YAML file or one of {recipe_names()}")
    return file


def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """The settings of a YAML recipe (a file path, or a name in configs/ such as "tiny")."""
    file = _recipe_file(path)
    try:
        values = safe_load(file.read_text(encoding="utf-8"))  # a key given twice is an error
    except UnicodeDecodeError as err:
        raise ConfigError(f"{file}: not a UTF-8 text file ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{file}, line {mark.line + 1}" if mark is not None else str(file)
        problem = getattr(err, "problem", None) or one_line(err)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"{file}: the top level must be a mapping of settings (key: value lines), "
            f"not a {type(values).__name__}"
        )
    for key in DOCUMENTATION_KEYS:
        values.pop(key, None)
    return values


def load_train_config(
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """A `TrainConfig` from a YAML file (a path, or a name in `configs/` like "tiny"), then KEY=VALUE
    `overrides` (strings, values read as YAML), then `settings` (Python values, e.g. keyword arguments).
    Dotted keys reach into the `pat` section. Raises ConfigError naming the first wrong setting."""
    values: dict[str, Any] = read_recipe(path) if path is not None else {}
    for text in overrides or []:
        _set_setting(values, *_parse_override(text))
    for key, value in (settings or {}).items():
        _set_setting(values, key, value)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown training settings {unknown}; known: {sorted(known)}")
    return TrainConfig(**values)


def optimizer_steps(cfg: TrainConfig, n_examples: int, world_size: int = 1) -> int:
    """How many optimizer steps a run of `n_examples` takes, as the Trainer counts them; ConfigError for a
    gradient_accumulation_steps that one epoch cannot fill (the Trainer would silently accumulate fewer
    batches than asked)."""
    per_step = cfg.per_device_train_batch_size * world_size
    batches = math.ceil(n_examples / per_step)
    accumulation = cfg.gradient_accumulation_steps
    if accumulation > batches:
        processes = f" on {world_size} processes" if world_size > 1 else ""
        raise ConfigError(
            f"gradient_accumulation_steps={accumulation} is more than the {batches} batches of one epoch "
            f"({n_examples} examples, per_device_train_batch_size={cfg.per_device_train_batch_size}"
            f"{processes}): every step would accumulate only {batches}; use at most {batches}, or a "
            "smaller batch"
        )
    per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1)
    return cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.num_train_epochs * per_epoch)


def milestone_warning(cfg: TrainConfig, total_steps: int) -> str | None:
    """One line when the milestone step s0 lies beyond the run: the gate then never reaches its exact 0/1
    mask, so the merged model is not the one trained. A warning, not an error: a short trial run of a long
    recipe may mean it."""
    pat = cfg.pat_config
    if cfg.method != "pat" or pat.mask_mode == "fixed" or (pat.milestone_step or 0) <= total_steps:
        return None
    return (
        f"pat.milestone_step={pat.milestone_step} is beyond the run's {total_steps} optimizer steps: the "
        f"gate never reaches its exact 0/1 mask, so the merged model is not the model trained (give s0 ≤ "
        f"{total_steps}, or leave it unset for milestone_fraction × steps)"
    )


def _checkpointing_arguments(enabled: bool) -> dict[str, Any]:
    """transformers ≥ 5.2x calls it activation checkpointing; older 5.x gradient checkpointing."""
    renamed = "activation_checkpointing" in TrainingArguments.__dataclass_fields__
    prefix = "activation" if renamed else "gradient"
    return {
        f"{prefix}_checkpointing": enabled,
        # Non-reentrant checkpointing works with frozen inputs (peft) and replays hooks (HSMs) exactly.
        f"{prefix}_checkpointing_kwargs": {"use_reentrant": False} if enabled else None,
    }


def training_arguments(cfg: TrainConfig, output_dir: str | os.PathLike | None = None) -> TrainingArguments:
    """The Trainer's arguments (checkpoints go to `output_dir`, default `cfg.output_dir`); ConfigError for
    values the Trainer refuses (an unknown optimizer or scheduler, bf16 where it is unsupported...)."""
    try:
        args = _training_arguments(cfg, str(output_dir or cfg.output_dir))
    except ValueError as err:
        if cfg.bf16 and "bf16" in str(err):  # the Trainer's own hint ("assign use_cpu") misleads here
            message = "bf16=true: this machine cannot train in bfloat16 (no such GPU); pass bf16=false"
            raise ConfigError(message) from err
        raise ConfigError(f"the Trainer refuses these settings: {one_line(err)}") from err
    check_reporting(args.report_to)
    return args


def check_reporting(report_to: list[str]) -> None:
    """Every logging integration in `report_to` is known and installed; else ConfigError. The Trainer
    would only find out when it is built, after the run folder has been prepared."""
    from transformers.integrations import get_available_reporting_integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    unknown = [name for name in report_to if name not in INTEGRATION_TO_CALLBACK]
    if unknown:
        raise ConfigError(
            f"report_to: unknown logging integration(s) {unknown}; known: {sorted(INTEGRATION_TO_CALLBACK)} "
            "(or report_to=[] for none)"
        )
    available = get_available_reporting_integrations()
    missing = [name for name in report_to if name not in available]
    if missing:
        raise ConfigError(
            f"report_to: {', '.join(missing)} is not installed here (pip install {' '.join(missing)}), or "
            f"leave it out: report_to={[n for n in report_to if n not in missing]}"
        )


def _training_arguments(cfg: TrainConfig, output_dir: str) -> TrainingArguments:
    return TrainingArguments(
        output_dir=output_dir,
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
        # Pinned host memory only helps copies to a CUDA device; without one torch warns on every run.
        dataloader_pin_memory=torch.cuda.is_available(),
        # Without use_cpu the Trainer does not see a CPU launch (torchrun, gloo): every process would
        # train alone on all the data and each would write the results as if it were rank 0.
        use_cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1,
        # Live progress is `train(progress=...)`'s choice; left unset, a quiet transformers logger would
        # swap the progress bar for a line of printed log dicts per logging step.
        disable_tqdm=False,
    )
