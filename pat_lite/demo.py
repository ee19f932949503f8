"""`make demo` and `make demo-real`: the offline end-to-end PAT pipeline, on a toy or on a real model.

`make demo` (`run_demo`), the embedded tiny model, ~2 minutes on 2 CPU cores:

1. load the shipped tiny base (pre-trained on the toy world, `data/tiny_base`);
2. LoRA-tune it (the paper's baseline) and PAT-tune it at 25 % with the same data and steps;
3. merge PAT into a smaller dense model, check it reproduces the tuned model's logits;
4. print kept width, parameter counts and the toy world's two axes (docs/method.md §10) for the base, its
   untuned 25 % norm cut, LoRA and PAT: **retention** (facts of people the tuning data never mention) and
   **skill** (in-context abilities asked on words never seen before), and their average — test split.

`make demo-real` (`run_real_demo`), SmolLM2-135M-Instruct (576 → 432) with the `smollm2` recipe on
CPython's documentation: the same steps, evaluated on the held-out real text (perplexity and cloze, through
lm-eval) for the dense model, a naive 25 % cut (untuned), LoRA and PAT. It does not fit the default demo's
10 minutes: measured 49 min on a shared 2-core machine with one torch thread (24.5 CPU-minutes: two
100-step tuning runs of a 135 M model at 6-7 s per step, four evaluations of ~2 CPU-minutes each).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from pat_lite.baselines import norm_cut
from pat_lite.core.arch import width_for_ratio
from pat_lite.evaluation.lmeval import evaluate
from pat_lite.evaluation.mc import toy_scores
from pat_lite.models.loading import load_model_and_tokenizer, resolve_model
from pat_lite.models.smollm2 import SMOLLM2_NAME
from pat_lite.training.config import load_train_config
from pat_lite.training.run import train
from pat_lite.utils.atomic import atomic_write_text

SPLIT = "test"
METHOD_NAMES = {"lora": "LoRA", "pat": "PAT"}  # as the tables print them


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
    from pat_lite.models.tinybase import load_tiny_base, tiny_base_dir

    start = time.time()
    # A 1.2 M-parameter model: one thread beats two on 2 cores (no contention between the threads).
    torch.set_num_threads(1)
    base_model, tokenizer = load_tiny_base()
    print(f"[demo] tiny base: {tiny_base_dir()} (shipped with pat_lite)")
    # What a naive cut keeps: the channels of largest writer norm, sliced out, no tuning.
    cut = norm_cut(base_model, width_for_ratio(base_model.config, 0.25))
    rows = [
        (name, model.config.hidden_size, _count(model), toy_scores(model.eval(), tokenizer, split=SPLIT))
        for name, model in (("base (dense)", base_model), ("base, 25 % cut by norm, untuned", cut))
    ]

    results = {}
    for method in ("lora", "pat"):
        print(f"[demo] {METHOD_NAMES[method]}-tuning ...")
        results[method] = result = _tune(method, config, output_dir, max_steps)
        merged = result.merged
        rows.append(
            (
                f"{METHOD_NAMES[method]}-tuned, merged" + (" (pruned)" if method == "pat" else ""),
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


def _tune(method: str, config: str, output_dir: str, max_steps: int | None):
    """One tuning run of the demo (`lora` or `pat`) with the recipe `config`, in `<output_dir>/<method>`."""
    overrides = [f"method={method}", f"output_dir={Path(output_dir) / method}", "overwrite_output_dir=true"]
    if max_steps:
        overrides.append(f"max_steps={max_steps}")
    return train(load_train_config(config, overrides))


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
        "Toy test split, 4-choice log-likelihood, chance 25 %: retention ="
        " facts of people tuning never mentions, skill = in-context abilities on words never seen before.",
        "",
        f"PAT mask: {summary['pat_active_channels']} active channels, target {summary['pat_target_width']}",
        f"merged vs tuned PAT model: max |logit diff| = {summary['merge_max_abs_logit_diff']:.2e}",
        f"merged checkpoint (loads with AutoModelForCausalLM): {summary['merged_checkpoint']}",
        f"total time: {summary['seconds']} s",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the real model
def _realtext_row(
    label: str, model, tokenizer, width: int | str, params: int | None, limit
) -> dict[str, Any]:
    start = time.time()
    res = evaluate(model, tokenizer, tasks="realtext", limit=limit, batch_size=8)
    ppl, cloze = res["tasks"]["realtext_perplexity"], res["tasks"]["realtext_cloze"]
    row = {
        "model": label,
        "hidden_size": width,
        "parameters": params,
        **{name: ppl["metrics"][name] for name in ("word_perplexity", "byte_perplexity", "bits_per_byte")},
        "cloze_acc": cloze["acc"],
        "cloze_acc_stderr": cloze["acc_stderr"],
        "documents": ppl["n"],
        "cloze_items": cloze["n"],
        "eval_seconds": round(time.time() - start, 1),
    }
    print(
        f"[demo] {label}: word perplexity {row['word_perplexity']:.4g}, cloze {100 * row['cloze_acc']:.1f} %"
    )
    return row


def run_real_demo(
    output_dir: str = "artifacts/demo-real",
    config: str = "smollm2",
    max_steps: int | None = None,
    limit: int | None = None,
) -> dict:
    """Dense / naive 25 % cut / LoRA / PAT on SmolLM2-135M, evaluated on held-out real text.

    Falls back to the toy demo (saying why) when SmolLM2 is not available here (see `resolve_model`).
    `limit` caps the documents and cloze items per task; `max_steps` overrides the recipe's steps.
    Writes `demo_real.json` into `output_dir` and returns the same summary.
    """
    name, reason = resolve_model(SMOLLM2_NAME)
    print(f"[demo] model: {reason}")
    if name != SMOLLM2_NAME:
        return run_demo(str(Path(output_dir) / "toy"), "tiny", max_steps)
    start = time.time()
    timings: dict[str, float] = {}
    model, tokenizer = load_model_and_tokenizer(SMOLLM2_NAME)
    model.eval()
    width, params = model.config.hidden_size, _count(model)
    rows = [_realtext_row("SmolLM2-135M, dense", model, tokenizer, width, params, limit)]
    cut = norm_cut(model, width_for_ratio(model.config, 0.25))
    del model
    rows.append(
        _realtext_row(
            "dense, 25 % cut by writer norm, untuned",
            cut,
            tokenizer,
            cut.config.hidden_size,
            _count(cut),
            limit,
        )
    )
    del cut
    timings["dense_and_cut_eval"] = round(time.time() - start, 1)

    results = {}
    for method in ("lora", "pat"):
        print(f"[demo] {METHOD_NAMES[method]}-tuning {SMOLLM2_NAME} ...")
        t0 = time.time()
        results[method] = result = _tune(method, config, output_dir, max_steps)
        timings[f"{method}_train"] = round(time.time() - t0, 1)
        merged = result.merged
        label = f"{METHOD_NAMES[method]}-tuned, merged" + (" (pruned)" if method == "pat" else "")
        rows.append(
            _realtext_row(label, merged, result.tokenizer, merged.config.hidden_size, _count(merged), limit)
        )
        if method == "lora":
            result.model = result.merged = None  # free the memory before the PAT run
    summary = {
        "rows": rows,
        "steps": results["pat"].summary["steps"],
        "pat_active_channels": results["pat"].summary.get("active_channels"),
        "pat_target_width": results["pat"].summary.get("target_width"),
        "merge_max_abs_logit_diff": _merge_check(results["pat"]),
        "timings_seconds": timings,
        "seconds": round(time.time() - start, 1),
        "load_average": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
        "merged_checkpoint": str(results["pat"].merged_dir),
    }
    atomic_write_text(Path(output_dir) / "demo_real.json", json.dumps(summary, indent=2) + "\n")
    print(format_real_table(summary))
    return summary


def format_real_table(summary: dict) -> str:
    lines = [
        "| model | hidden | params | word perplexity | byte perplexity | cloze acc (%) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        params = f"{row['parameters']:,}" if row["parameters"] else "-"
        cloze = f"{100 * row['cloze_acc']:.1f} ± {100 * row['cloze_acc_stderr']:.1f}"
        lines.append(
            f"| {row['model']} | {row['hidden_size']} | {params} | {row['word_perplexity']:.4g} | "
            f"{row['byte_perplexity']:.4g} | {cloze} |"
        )
    first = summary["rows"][0]
    lines += [
        "Held-out CPython documentation (data/realtext): rolling perplexity"
        f" over {first['documents']} documents, cloze over {first['cloze_items']} items (chance 25 %).",
        "",
        f"{summary['steps']} tuning steps per method; PAT mask: {summary['pat_active_channels']} active "
        f"channels, target {summary['pat_target_width']}",
        f"merged vs tuned PAT model: max |logit diff| = {summary['merge_max_abs_logit_diff']:.2e}",
        f"merged checkpoint (loads with AutoModelForCausalLM): {summary['merged_checkpoint']}",
        f"time per phase (s): {summary['timings_seconds']}",
        f"total time: {summary['seconds']} s (load average {summary['load_average'][0]:.1f}, "
        f"{summary['torch_threads']} torch threads)",
    ]
    return "\n".join(lines)
