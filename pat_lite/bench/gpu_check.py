"""`pat-lite gpu-check`: does this GPU run the paper's recipe, how fast, in how much memory? One command,
a few minutes, a JSON file a user can attach to a bug report.

On CUDA, in bf16 mixed precision as the recipe trains (`configs/llama2-7b-a100.yaml`):

1. the machine: torch and its CUDA, the GPU, its free memory, bf16 support;
2. tens of PAT + LoRA training steps (forward, backward, AdamW) on the embedded real model, SmolLM2-135M
   (offline), and on randomly initialised models with Llama-2-7B's width and 1 and 2 layers, at the
   recipe's micro-batch and sequence length, with its gradient checkpointing: step time, tokens/s, peak
   memory (`torch.cuda.max_memory_allocated`) beside the memory plan (`pat_lite.bench.memory_plan`);
3. a projection to the full recipe: the per-layer and fixed costs from the 1- and 2-layer runs, scaled to
   Llama-2-7B's 32 layers, times the recipe's micro-steps: hours and GPU-hours, and the peak memory;
4. the merge's exactness: the tuned model (exact 0/1 mask) against the merged one, in bf16 and in float32.

Random weights time like real ones; the 7B-width runs need neither the Llama-2 licence nor a download.
`cpu_dry_run=True` runs every step of this on the CPU with small models (the embedded `tiny` base and a
narrow model of Llama-2's proportions, a couple of steps): it checks the logic, and the report says in its
first field that it measured no GPU. tests/test_gpu_check.py runs it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import statistics
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, PretrainedConfig

from pat_lite.bench.common import build_random_model, resolve_config, sync
from pat_lite.bench.memory_plan import GIB, plan_for_recipe, plan_memory, saved_activation_bytes
from pat_lite.utils.errors import PatLiteError

SCHEMA = "pat-lite-gpu-check/1"
#: The milestone s0 the timed runs use: the released recipe's, so the gate is in its soft phase (as for
#: most of a real run), where it costs the most.
TIMING_MILESTONE = 10_000
#: The dry run's stand-in for Llama-2-7B: the same proportions (MHA, MLP 2.69 × d), a few hundred wide.
DRY_RUN_SHAPE = dict(
    hidden_size=256,
    intermediate_size=688,
    num_attention_heads=4,
    num_key_value_heads=4,
    vocab_size=1000,
    max_position_embeddings=512,
)
#: Top-level keys every report has, and the type of their values.
REPORT_KEYS: dict[str, type] = {
    "schema": str,
    "dry_run": bool,
    "created": str,
    "command": str,
    "environment": dict,
    "recipe": dict,
    "plan": dict,
    "runs": list,
    "projection": dict,
    "merge": list,
    "verdicts": list,
    "ok": bool,
}
RUN_KEYS = (
    "name",
    "layers",
    "hidden_size",
    "batch_size",
    "seq_len",
    "steps",
    "step_ms",
    "optimizer_ms",
    "tokens_per_s",
    "peak_gib",
    "plan_gib",
    "saved_activations_gib",
    "plan_activations_gib",
    "loss_first",
    "loss_last",
    "finite",
)


class GpuUnavailableError(PatLiteError, RuntimeError):
    """No CUDA device here: the GPU self-check has nothing to measure."""


@dataclass(frozen=True)
class CheckSettings:
    """What the check runs: the GPU run or its CPU dry run."""

    device: str
    dry_run: bool
    recipe: str = "llama2-7b-a100"
    real_model: str = "smollm2-135m"
    steps: int = 20
    warmup: int = 3
    batch_size: int | None = None  # None: the recipe's micro-batch
    seq_len: int | None = None  # None: the recipe's max_length
    full_layers: int = 32  # Llama-2-7B

    @classmethod
    def for_device(cls, cpu_dry_run: bool, steps: int | None = None) -> CheckSettings:
        if cpu_dry_run:
            return cls("cpu", True, real_model="tiny", steps=steps or 2, warmup=1, batch_size=2, seq_len=32)
        if not torch.cuda.is_available():
            build = (
                f"torch {torch.__version__}"
                if torch.version.cuda
                else f"torch {torch.__version__} is a CPU build; `make venv TORCH_CONSTRAINTS=` gets CUDA's"
            )
            raise GpuUnavailableError(
                f"no CUDA device is visible ({build}); the GPU self-check needs one, and "
                "`pat-lite gpu-check --cpu-dry-run` runs its logic on the CPU without measuring a GPU"
            )
        return cls("cuda", False, steps=steps or 20)


# ---------------------------------------------------------------------------------------------- the machine
def environment(device: str) -> dict[str, Any]:
    """Versions, the device and its memory."""
    import peft
    import transformers

    env: dict[str, Any] = {
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "cpu_count": os.cpu_count(),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        env.update(
            gpu=props.name,
            gpu_count=torch.cuda.device_count(),
            capability=f"{props.major}.{props.minor}",
            total_gib=round(total / GIB, 2),
            free_gib=round(free / GIB, 2),
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
        )
    return env


# ------------------------------------------------------------------------------------------- one model
def attach_adapters(model: torch.nn.Module, cfg: Any, pruning: dict[str, Any]) -> torch.nn.Module:
    """PAT (`pruning`: PATConfig fields) and the recipe's LoRA on every linear layer but lm_head, exactly
    as training attaches them (`pat_lite.training.trainer.add_adapters`)."""
    from peft import LoraConfig

    from pat_lite import PATConfig
    from pat_lite.training.trainer import add_adapters

    pat = PATConfig(milestone_step=TIMING_MILESTONE, **pruning)
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return add_adapters(model, "pat", pat, lora)


def time_training(
    model: torch.nn.Module,
    *,
    name: str,
    steps: int,
    warmup: int,
    batch_size: int,
    seq_len: int,
    device: str,
    gradient_checkpointing: bool,
    learning_rate: float = 5e-5,
) -> dict[str, Any]:
    """`warmup` + `steps` training steps on random tokens under bf16 autocast; medians of the timed ones.
    Then, outside the timed steps and without checkpointing, the bytes one forward keeps for backward."""
    from pat_lite import pat_losses, set_pat_step

    model.train()
    if gradient_checkpointing:
        _checkpointing(model, True)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch_size, seq_len), generator=generator).to(device)
    batch = {"input_ids": ids, "labels": ids}
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=0.0
    )
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    forward_backward, optimizer_times, losses = [], [], []
    for step in range(warmup + steps):
        set_pat_step(model, step)
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = model(**batch).loss + pat_losses(model)["total"]
        loss.backward()
        sync(device)
        t1 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if step >= warmup:
            forward_backward.append(t1 - t0)
            optimizer_times.append(time.perf_counter() - t1)
        losses.append(float(loss.detach()))
    peak = torch.cuda.max_memory_allocated() / GIB if device == "cuda" else None
    if gradient_checkpointing:
        _checkpointing(model, False)
    saved = saved_activation_bytes(model, batch)
    model.zero_grad(set_to_none=True)
    step_s = statistics.median(forward_backward)
    return {
        "name": name,
        "layers": model.config.num_hidden_layers,
        "hidden_size": model.config.hidden_size,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "steps": steps,
        "step_ms": 1e3 * step_s,
        "optimizer_ms": 1e3 * statistics.median(optimizer_times),
        "tokens_per_s": batch_size * seq_len / step_s,
        "peak_gib": peak,
        "saved_activations_gib": saved / GIB,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "finite": all(math.isfinite(v) for v in losses),
    }


def _checkpointing(model: torch.nn.Module, enable: bool) -> None:
    """Switch gradient checkpointing on (non-reentrant, as the recipe's Trainer does) or off; transformers
    ≥ 5.2x calls it activation checkpointing."""
    prefix = "activation" if hasattr(model, "activation_checkpointing_enable") else "gradient"
    if enable:
        getattr(model, f"{prefix}_checkpointing_enable")(
            **{f"{prefix}_checkpointing_kwargs": {"use_reentrant": False}}
        )
    else:
        getattr(model, f"{prefix}_checkpointing_disable")()


def merge_exactness(model: torch.nn.Module, ids: torch.Tensor, dtype: torch.dtype) -> dict[str, Any]:
    """Max |logit difference| between the tuned model in eval mode (the exact 0/1 mask) and its merge, both
    in `dtype` (a float32 check works on a float32 copy of the tuned model)."""
    from pat_lite import merge_pat

    tuned = model if next(model.parameters()).dtype == dtype else copy.deepcopy(model).to(dtype)
    tuned.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the trained mask keeps", category=UserWarning)
        expected = tuned(input_ids=ids).logits.float()
        merged = merge_pat(tuned)
        found = merged(input_ids=ids).logits.float()
    difference = (expected - found).abs().max().item()
    scale = expected.abs().max().item()
    del merged
    if tuned is not model:
        del tuned
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "max_abs_logit_diff": difference,
        "logit_scale": scale,
        "relative": difference / max(scale, 1e-12),
    }


# -------------------------------------------------------------------------------------------- projection
def project(
    one: dict[str, Any],
    two: dict[str, Any],
    full_layers: int,
    micro_steps: int,
    accumulation: int,
    plan_full_gib: float,
) -> dict[str, Any]:
    """The full model from its 1- and 2-layer runs: cost(L) = fixed + L · per_layer, for step time,
    optimizer time and peak memory; then the recipe's hours = micro-steps · step + optimizer steps · opt."""

    def line(key: str) -> tuple[float, float]:
        per_layer = two[key] - one[key]
        return one[key] - per_layer, per_layer

    fixed_ms, layer_ms = line("step_ms")
    opt_fixed, opt_layer = line("optimizer_ms")
    step_ms = fixed_ms + full_layers * layer_ms
    optimizer_ms = opt_fixed + full_layers * opt_layer
    seconds = micro_steps * step_ms / 1e3 + micro_steps / accumulation * optimizer_ms / 1e3
    peak = None
    if one["peak_gib"] is not None:
        peak_fixed, peak_layer = line("peak_gib")
        peak = peak_fixed + full_layers * peak_layer
    return {
        "layers": full_layers,
        "per_layer_ms": layer_ms,
        "fixed_ms": fixed_ms,
        "micro_step_ms": step_ms,
        "optimizer_step_ms": optimizer_ms,
        "micro_steps": micro_steps,
        "hours": seconds / 3600,
        "gpu_hours": seconds / 3600,
        "hours_on_8_gpus_ideal": seconds / 3600 / 8,
        "tokens_per_s": one["batch_size"] * one["seq_len"] / (step_ms / 1e3),
        "peak_gib": peak,
        "plan_gib": plan_full_gib,
    }


def recipe_summary(cfg: Any, rows: int) -> dict[str, Any]:
    """The recipe's optimizer and micro-steps on one GPU (sequences counted at full length: an upper bound,
    since batches are padded only to their longest example)."""
    global_batch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    used = int(rows * cfg.data_fraction)
    steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(used * cfg.num_train_epochs / global_batch)
    return {
        "micro_batch": cfg.per_device_train_batch_size,
        "seq_len": cfg.max_length,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "global_batch": global_batch,
        "rows": used,
        "epochs": cfg.num_train_epochs,
        "optimizer_steps": steps,
        "micro_steps": steps * cfg.gradient_accumulation_steps,
        "gradient_checkpointing": cfg.gradient_checkpointing,
    }


# ----------------------------------------------------------------------------------------------- the check
def run_gpu_check(
    out: str | os.PathLike | None = None,
    *,
    cpu_dry_run: bool = False,
    steps: int | None = None,
    command: str = "pat-lite gpu-check",
    progress: bool = True,
) -> dict[str, Any]:
    """Run the check (module docstring), write the report to `out` as JSON if given, and return it.
    Without CUDA and without `cpu_dry_run`: GpuUnavailableError, one line."""
    from pat_lite.core.attach import get_pat
    from pat_lite.data.instructions import LAMINI_ROWS
    from pat_lite.models.loading import load_model_and_tokenizer
    from pat_lite.training.config import load_train_config

    settings = CheckSettings.for_device(cpu_dry_run, steps)
    say = print if progress else (lambda *args, **kwargs: None)
    device = settings.device
    cfg = load_train_config(settings.recipe)
    batch = settings.batch_size or cfg.per_device_train_batch_size
    seq = settings.seq_len or cfg.max_length
    timing = dict(
        steps=settings.steps,
        warmup=settings.warmup,
        batch_size=batch,
        seq_len=seq,
        device=device,
        gradient_checkpointing=cfg.gradient_checkpointing,
        learning_rate=cfg.learning_rate,
    )
    shape = LlamaConfig(**DRY_RUN_SHAPE) if settings.dry_run else resolve_config("llama2-7b")
    pruning = {"pruning_ratio": 0.25} if settings.dry_run else dict(cfg.pat)
    full = resolve_config(shape, settings.full_layers)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "dry_run": settings.dry_run,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "environment": environment(device),
        "recipe": {"name": settings.recipe, **recipe_summary(cfg, LAMINI_ROWS)},
        "plan": {
            f"{'with' if ckpt else 'without'} gradient checkpointing": plan_for_recipe(
                cfg, resolve_config("llama2-7b"), ckpt
            ).gib()
            for ckpt in (True, False)
        },
        "runs": [],
        "merge": [],
    }

    def plan_of(config: PretrainedConfig, hio_rank: int | None, checkpointing: bool) -> Any:
        return plan_memory(
            config,
            batch_size=batch,
            seq_len=seq,
            lora_r=cfg.lora_r,
            lora_dropout=cfg.lora_dropout,
            hio_rank=hio_rank,
            gradient_checkpointing=checkpointing,
        )

    def add_run(model: torch.nn.Module, name: str) -> dict[str, Any]:
        say(f"[gpu-check] {name}: {settings.warmup} + {settings.steps} steps of {batch} x {seq} tokens")
        row = time_training(model, name=name, **timing)
        hio_rank = get_pat(model).config.hio_rank
        row["plan_gib"] = plan_of(model.config, hio_rank, cfg.gradient_checkpointing).total / GIB
        row["plan_activations_gib"] = plan_of(model.config, hio_rank, False).parts["activations"] / GIB
        report["runs"].append(row)
        return row

    # 1. the real model, real weights
    real, _ = load_model_and_tokenizer(settings.real_model, dtype="bfloat16")
    real = attach_adapters(real.to(device), cfg, {"pruning_ratio": 0.25})
    add_run(real, settings.real_model)
    ids = torch.randint(0, real.config.vocab_size, (1, seq), generator=torch.Generator().manual_seed(1))
    for dtype in (torch.bfloat16, torch.float32):
        report["merge"].append({"model": settings.real_model, **merge_exactness(real, ids.to(device), dtype)})
    del real
    # 2. Llama-2-7B's width with 1 and 2 layers, random weights
    rows = []
    for layers in (1, 2):
        model = build_random_model(resolve_config(shape, layers), torch.bfloat16, device, seed=0)
        model = attach_adapters(model, cfg, pruning)
        rows.append(
            add_run(model, f"{'dry-run shape' if settings.dry_run else 'llama2-7b width'}, {layers} layer(s)")
        )
        if layers == 2:
            ids = torch.randint(
                0, model.config.vocab_size, (1, seq), generator=torch.Generator().manual_seed(2)
            )
            for dtype in (torch.bfloat16, torch.float32):
                report["merge"].append(
                    {"model": rows[-1]["name"], **merge_exactness(model, ids.to(device), dtype)}
                )
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    recipe = report["recipe"]
    full_plan = plan_of(full, pruning.get("hio_rank"), cfg.gradient_checkpointing).total / GIB
    report["projection"] = project(
        rows[0],
        rows[1],
        settings.full_layers,
        recipe["micro_steps"],
        recipe["gradient_accumulation_steps"],
        full_plan,
    )
    report["verdicts"], report["ok"] = verdicts(report)
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


# --------------------------------------------------------------------------------------------- reading it
#: A merge is exact when the logits agree to this share of their scale (bf16: its ~3 significant digits).
MERGE_TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2}


def verdicts(report: dict[str, Any]) -> tuple[list[str], bool]:
    """One line per finding, and whether everything passed."""
    env, lines, ok = report["environment"], [], True
    if report["dry_run"]:
        lines.append("CPU DRY RUN: no GPU was measured; the numbers below only show that the check runs.")
    else:
        lines.append(
            f"GPU: {env['gpu']}, {env['free_gib']:.1f} of {env['total_gib']:.1f} GiB free, "
            f"CUDA {env['torch_cuda']}, torch {env['torch']}"
        )
        if not env["bf16_supported"]:
            ok = False
            lines.append("FAIL bf16: this GPU does not support bfloat16, which the recipe trains in")
    for run in report["runs"]:
        good = run["finite"]
        ok &= good
        memory = f", peak {run['peak_gib']:.2f} GiB (plan {run['plan_gib']:.2f})" if run["peak_gib"] else ""
        lines.append(
            f"{'ok  ' if good else 'FAIL'} {run['name']}: {run['step_ms']:.0f} ms per micro-step, "
            f"{run['tokens_per_s']:,.0f} tokens/s{memory}, loss {run['loss_first']:.2f} -> "
            f"{run['loss_last']:.2f}"
        )
    for merge in report["merge"]:
        good = merge["relative"] <= MERGE_TOLERANCE[merge["dtype"]]
        ok &= good
        lines.append(
            f"{'ok  ' if good else 'FAIL'} merge {merge['model']}, {merge['dtype']}: max |logit "
            f"difference| {merge['max_abs_logit_diff']:.2e} ({merge['relative']:.1e} of the logits' "
            f"scale; tolerance {MERGE_TOLERANCE[merge['dtype']]:.0e})"
        )
    projection = report["projection"]
    lines.append(
        f"projection ({projection['layers']} layers, {projection['micro_steps']:,} micro-steps): "
        f"{projection['hours']:,.1f} h on this device ({projection['gpu_hours']:,.1f} GPU-hours), "
        f"planned peak {projection['plan_gib']:.1f} GiB"
        + (f", projected from the runs {projection['peak_gib']:.1f} GiB" if projection["peak_gib"] else "")
    )
    if not report["dry_run"]:
        need = report["plan"]["with gradient checkpointing"]["total with headroom"]
        fits = env["free_gib"] >= need
        ok &= fits
        lines.append(
            f"{'ok  ' if fits else 'FAIL'} memory: the recipe needs ~{need:.1f} GiB with headroom "
            f"(gradient checkpointing), {env['free_gib']:.1f} GiB are free"
        )
    return lines, ok


def validate_report(report: dict[str, Any]) -> list[str]:
    """What is missing or mistyped in a report (empty: it has the schema's shape)."""
    problems = [f"{key}: missing" for key in REPORT_KEYS if key not in report]
    problems += [
        f"{key}: {type(report[key]).__name__}, expected {kind.__name__}"
        for key, kind in REPORT_KEYS.items()
        if key in report and not isinstance(report[key], kind)
    ]
    if report.get("schema") != SCHEMA:
        problems.append(f"schema: {report.get('schema')!r}, expected {SCHEMA!r}")
    for i, run in enumerate(report.get("runs", [])):
        problems += [f"runs[{i}].{key}: missing" for key in RUN_KEYS if key not in run]
    if len(report.get("runs", [])) != 3:
        problems.append(f"runs: {len(report.get('runs', []))} runs, expected 3 (real model, 1 and 2 layers)")
    if sorted(m.get("dtype") for m in report.get("merge", [])) != [
        "bfloat16",
        "bfloat16",
        "float32",
        "float32",
    ]:
        problems.append("merge: expected a bfloat16 and a float32 check for two models")
    return problems


def summary_table(report: dict[str, Any]) -> list[dict[str, str]]:
    """The runs as rows of formatted cells with plain column names (three significant digits, so that the
    dry run's kilobytes do not print as 0.0)."""

    def cell(value: Any) -> str:
        return "–" if value is None else f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"

    return [
        {
            "model": r["name"],
            "layers": str(r["layers"]),
            "ms per micro-step": cell(r["step_ms"]),
            "tokens/s": cell(r["tokens_per_s"]),
            "peak GiB": cell(r["peak_gib"]),
            "planned GiB": cell(r["plan_gib"]),
            "activations kept, GiB": cell(r["saved_activations_gib"]),
            "planned activations, GiB": cell(r["plan_activations_gib"]),
        }
        for r in report["runs"]
    ]
