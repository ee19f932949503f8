"""`make demo`: the offline, CPU-sized end-to-end PAT pipeline on the embedded tiny model.

1. build (or reuse) the tiny base and its toy world;
2. LoRA-tune it (the paper's baseline) and PAT-tune it at 25 % with the same data and steps;
3. merge PAT into a smaller dense model, check it reproduces the tuned model's logits;
4. print kept width, parameter counts and the toy world's two axes (docs/method.md §10) for the base, its
   untuned 25 % norm cut, LoRA and PAT: **retention** (facts of people the tuning data never mention) and
   **skill** (in-context abilities asked on words never seen before), and their average — test split.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pat_lite.evaluation.mc import toy_scores
from pat_lite.training.config import load_train_config
from pat_lite.training.run import train

SPLIT = "test"


def _merge_check(result) -> float:
    """Max |logit difference| between the tuned PAT model (eval mode, 0/1 mask) and the merged model."""
    ids = result.tokenizer(["Below is an instruction that describes a task."], return_tensors="pt")[
        "input_ids"
    ]
    with torch.no_grad():
        tuned = result.model(input_ids=ids).logits
        merged = result.merged(ids).logits
    return (tuned - merged).abs().max().item()


def run_demo(output_dir: str = "artifacts/demo", config: str = "tiny", max_steps: int | None = None) -> dict:
    """Run the whole pipeline; return (and print) the comparison table."""
    from pat_lite.models.tinybase import build_tiny_base, load_tiny_base, read_build_report

    start = time.time()
    # A 1.2 M-parameter model: one thread beats two on 2 cores (no contention between the threads).
    torch.set_num_threads(1)
    base_dir = build_tiny_base()
    report = read_build_report(base_dir)
    print(f"[demo] tiny base at {base_dir} (built in {report.get('build_seconds', '?')} s)")
    base_model, tokenizer = load_tiny_base()
    rows = [
        (
            "base (dense)",
            base_model.config.hidden_size,
            _count(base_model),
            toy_scores(base_model.eval(), tokenizer, split=SPLIT),
        )
    ]
    # Context from the build report: what a naive cut (smallest writer-norm channels, no tuning) keeps.
    rows.append(
        ("base, 25 % cut by norm, untuned", f"{base_model.config.hidden_size}*", None, report["cut"][SPLIT])
    )

    results = {}
    for method in ("lora", "pat"):
        overrides = [
            f"method={method}",
            f"output_dir={Path(output_dir) / method}",
            "overwrite_output_dir=true",
        ]
        if max_steps:
            overrides.append(f"max_steps={max_steps}")
        print(f"[demo] {method.upper()}-tuning ...")
        results[method] = result = train(load_train_config(config, overrides))
        merged = result.merged
        rows.append(
            (
                f"{method.upper()}-tuned, merged" + (" (pruned)" if method == "pat" else ""),
                merged.config.hidden_size,
                _count(merged),
                toy_scores(merged.eval(), result.tokenizer, split=SPLIT),
            )
        )
    merge_error = _merge_check(results["pat"])
    summary = {
        "rows": [
            {"model": name, "hidden_size": width, "parameters": params, **scores}
            for name, width, params, scores in rows
        ],
        "pat_active_channels": results["pat"].summary.get("active_channels"),
        "pat_target_width": results["pat"].summary.get("target_width"),
        "merge_max_abs_logit_diff": merge_error,
        "seconds": round(time.time() - start, 1),
        "merged_checkpoint": str(results["pat"].merged_dir),
    }
    print(format_table(summary))
    return summary


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def format_table(summary: dict) -> str:
    """The demo's table: per row hidden size, parameters, retention, skill and their average (%)."""
    lines = ["| model | hidden | params | retention | skill | average |", "|---|---|---|---:|---:|---:|"]
    for row in summary["rows"]:
        params = f"{row['parameters']:,}" if row["parameters"] else "-"
        lines.append(
            f"| {row['model']} | {row['hidden_size']} | {params} | {row['retention']:.1f} "
            f"| {row['skill']:.1f} | {row['average']:.1f} |"
        )
    lines += [
        "(* channels zeroed, not removed.) Toy test split, 4-choice log-likelihood, chance 25 %: retention ="
        " facts of people tuning never mentions, skill = in-context abilities on words never seen before.",
        "",
        f"PAT mask: {summary['pat_active_channels']} active channels, target {summary['pat_target_width']}",
        f"merged vs tuned PAT model: max |logit diff| = {summary['merge_max_abs_logit_diff']:.2e}",
        f"merged checkpoint (loads with AutoModelForCausalLM): {summary['merged_checkpoint']}",
        f"total time: {summary['seconds']} s",
    ]
    return "\n".join(lines)
