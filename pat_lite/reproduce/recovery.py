"""The toy world's recovery gate: can tuning recover what a cut took away? (docs/method.md §10)

The toy world is only useful for PAT's claim — pruning *while* tuning beats pruning before or after tuning —
if tuning can recover something after a cut. This measures it with the simplest baseline, prune→tune:

1. the shipped tiny base's 25 % norm cut, **sliced** into a 96-wide model by the norm-cut baseline
   (``pat_lite.baselines.norm_cut``: exactly the base with those channels zeroed, docs/method.md §8);
2. plain LoRA on the toy instruction data with the tiny recipe (``method: lora``, its steps) through
   ``pat_lite.training.run.train``;
3. both axes of the base, of the untuned cut and of the tuned cut, on both evaluation splits.

The gate (fixed before any PAT result was looked at): prune→tune gains at least ``MIN_SKILL_RECOVERY``
points of skill over the untuned cut, on each split. Run it with ``python -m pat_lite.reproduce.recovery``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pat_lite.baselines import norm_cut
from pat_lite.core.arch import width_for_ratio
from pat_lite.data.toyworld import EVAL_SPLITS
from pat_lite.evaluation.mc import toy_scores
from pat_lite.models.tinybase import TinyBaseRecipe, load_tiny_base
from pat_lite.training.config import load_train_config
from pat_lite.training.run import train
from pat_lite.utils.atomic import atomic_directory, atomic_write_text

__all__ = ["MIN_SKILL_RECOVERY", "check_recovery", "prune_then_tune"]

#: Points of skill (percent) prune→tune must gain over the untuned cut, on each evaluation split.
MIN_SKILL_RECOVERY = 10.0


def _scores(model, tokenizer) -> dict[str, dict[str, Any]]:
    return {split: toy_scores(model, tokenizer, split=split) for split in EVAL_SPLITS}


def prune_then_tune(
    out_dir: str | Path,
    config: str = "tiny",
    ratio: float | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Cut the tiny base by norm, slice it, LoRA-tune it; return (and write ``recovery.json``) the scores.

    ``ratio`` defaults to the tiny base's gate ratio (25 %); ``overrides`` are KEY=VALUE training settings
    on top of ``config`` (e.g. ``max_steps=50`` for a quick look — the gate is defined at the recipe's
    steps).
    """
    out = Path(out_dir)
    ratio = TinyBaseRecipe().cut_ratio if ratio is None else ratio
    base, tokenizer = load_tiny_base()
    sliced = norm_cut(base, width_for_ratio(base.config, ratio))

    def write_sliced(tmp: Path) -> None:
        sliced.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    atomic_directory(out / "sliced", write_sliced)
    settings = [
        "method=lora",
        f"model={out / 'sliced'}",
        f"output_dir={out / 'lora'}",
        "overwrite_output_dir=true",
        "report_to=[]",
        *(overrides or []),
    ]
    start = time.process_time()
    result = train(load_train_config(config, settings))
    tune_cpu_seconds = time.process_time() - start
    report = {
        "ratio": ratio,
        "hidden_size": {"base": int(base.config.hidden_size), "sliced": int(sliced.config.hidden_size)},
        "config": config,
        "overrides": settings,
        "steps": result.summary["steps"],
        "tune_cpu_seconds": round(tune_cpu_seconds, 1),
        "base": _scores(base, tokenizer),
        "cut": _scores(sliced, tokenizer),
        "prune_tune": _scores(result.merged, tokenizer),
    }
    report["skill_recovery"] = {
        split: report["prune_tune"][split]["skill"] - report["cut"][split]["skill"] for split in EVAL_SPLITS
    }
    atomic_write_text(out / "recovery.json", json.dumps(report, indent=2) + "\n")
    return report


def check_recovery(report: dict[str, Any], minimum: float = MIN_SKILL_RECOVERY) -> list[str]:
    """The failed recovery gates (empty = passed): skill gain over the untuned cut < ``minimum`` points."""
    return [
        f"{split}: prune→tune gains only {gain:.1f} points of skill over the untuned cut (< {minimum})"
        for split, gain in report["skill_recovery"].items()
        if gain < minimum
    ]


def format_report(report: dict[str, Any]) -> str:
    """A markdown table: both axes of base, untuned cut and prune→tune, per split."""
    rows = [
        ("base (dense)", "base"),
        ("25 % norm cut, untuned", "cut"),
        ("cut → LoRA (prune→tune)", "prune_tune"),
    ]
    lines = ["| model | split | retention | skill | average |", "|---|---|---:|---:|---:|"]
    for label, key in rows:
        for split in EVAL_SPLITS:
            s = report[key][split]
            lines.append(
                f"| {label} | {split} | {s['retention']:.1f} | {s['skill']:.1f} | {s['average']:.1f} |"
            )
    gains = ", ".join(f"{split} {gain:+.1f}" for split, gain in report["skill_recovery"].items())
    lines += ["", f"skill recovery over the untuned cut: {gains} points (gate: ≥ +{MIN_SKILL_RECOVERY:g})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default="artifacts/toy_recovery", help="folder for the runs and recovery.json"
    )
    parser.add_argument("--config", default="tiny", help="training recipe (default: tiny)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE training settings (e.g. max_steps=50)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a 1.2 M-parameter model: one thread beats two on 2 cores
    report = prune_then_tune(args.out, args.config, overrides=args.overrides)
    print(format_report(report))
    failed = check_recovery(report)
    if failed:
        print(f"recovery: error: toy recovery gate failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
