"""Tables and figures of a `pat-lite reproduce` suite: mean ± std over seeds of the selected rows."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pat_lite.reproduce.methods import get_method


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_values(values: list[float], unit: str) -> str:
    """ "mean" or "mean ± std" (sample std), one decimal for percentages and large values, two otherwise."""
    mean, std = mean_std(values)
    digits = 1 if unit == "%" else (1 if mean >= 100 else 2)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def aggregate(rows: list[dict[str, Any]], ratio: float, steps: int) -> dict[str, dict[str, list[float]]]:
    """method → metric → values over seeds, for the selected rows at one ratio and run length."""
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        method = get_method(row["method"])
        same_ratio = row["ratio"] == ratio or not method.pruned
        same_steps = row["steps"] == steps or not method.uses_learning_rate
        if row.get("selected") and same_ratio and same_steps:
            for key, value in row["metrics"].items():
                table[row["method"]][key].append(value)
    return table


def _table(result: dict[str, Any], suite, ratio: float, steps: int, methods: list[str]) -> list[str]:
    table = aggregate(result["rows"], ratio, steps)
    metrics = list(suite.metric_units)
    labels = [f"{m} ({suite.metric_units[m]})" if suite.metric_units[m] else m for m in metrics]
    head = "| method | seeds | " + " | ".join(labels)
    lines = [head + " |", "|---|---:|" + "---:|" * len(metrics)]
    for name in methods:
        if name not in table:
            continue
        values = table[name]
        cells = [format_values(values[m], suite.metric_units[m]) if values[m] else "–" for m in metrics]
        n = len(next(iter(table[name].values())))
        lines.append(f"| `{name}` | {n} | " + " | ".join(cells) + " |")
    return lines


def suite_markdown(result: dict[str, Any], suite) -> str:
    """The committed `<suite>.md`: how to re-run, the protocol, the main table, the other axes, all rows."""
    rows = result["rows"]
    order = list(dict.fromkeys([*suite.default_methods, *(r["method"] for r in rows)]))
    lines = [
        f"# {suite.name}: {suite.description}",
        "",
        "Re-run with (the rows already present are kept; a crashed run resumes):",
        "",
        "```bash",
        *(result.get("commands") or [f"pat-lite reproduce --suite {suite.name} --out results"]),
        "```",
        "",
        f"Commit `{result['git_commit'][:12]}`, written {result['created']}. Test-split metrics (smollm2: "
        "the held-out text); mean ± std "
        "over seeds (sample std). Learning rate per method: " + result["protocol"]["selection"] + ".",
        "",
        f"## Main table: ratio {suite.main_ratio:.0%}, {suite.default_steps} steps",
        "",
        *_table(result, suite, suite.main_ratio, suite.default_steps, order),
    ]
    other_ratios = sorted({r["ratio"] for r in rows if r["ratio"] not in (0.0, suite.main_ratio)})
    for ratio in other_ratios:
        lines += ["", f"## Ratio {ratio:.0%}, {suite.default_steps} steps (first seed)", ""]
        lines += _table(result, suite, ratio, suite.default_steps, order)
    other_steps = sorted({r["steps"] for r in rows if r["steps"] not in (0, suite.default_steps)})
    for steps in other_steps:
        lines += ["", f"## {steps} steps, ratio {suite.main_ratio:.0%} (first seed)", ""]
        lines += _table(result, suite, suite.main_ratio, steps, order)
    lines += ["", "## Every row (including the learning-rate sweep)", ""]
    metrics = list(suite.metric_units)
    lines.append("| method | ratio | seed | steps | lr | selected | " + " | ".join(metrics) + " | seconds |")
    lines.append("|---|---:|---:|---:|---:|:-:|" + "---:|" * len(metrics) + "---:|")
    for r in rows:
        lr = "–" if r["learning_rate"] is None else f"{r['learning_rate']:g}"
        cells = " | ".join(f"{r['metrics'][m]:.2f}" for m in metrics)
        mark = "✓" if r.get("selected") else ""
        lines.append(
            f"| `{r['method']}` | {r['ratio']:g} | {r['seed']} | {r['steps']} | {lr} | {mark} | {cells} | "
            f"{r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot_suite(result: dict[str, Any], suite, path: str | Path) -> Path:
    """Bar chart of the main table: one panel per metric, mean ± std over seeds, PAT variants highlighted."""
    from matplotlib.figure import Figure

    table = aggregate(result["rows"], suite.main_ratio, suite.default_steps)
    names = [m for m in dict.fromkeys([*suite.default_methods, *table]) if m in table]
    metrics = list(suite.metric_units)
    fig = Figure(figsize=(4.8 * len(metrics), 0.38 * len(names) + 1.6))
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        means, stds = zip(*(mean_std(table[n][metric]) for n in names), strict=True)
        colours = ["tab:red" if n.startswith("pat") else "tab:grey" if n in ("dense", "lora") else "tab:blue"
                   for n in names]  # fmt: skip
        ax.barh(range(len(names)), means, xerr=stds, color=colours, alpha=0.85, capsize=2)
        ax.set_title(f"{metric} ({suite.metric_units[metric] or 'lower is better'})", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        if metric == "perplexity":
            ax.set_xscale("log")
    axes[0].set_yticks(range(len(names)), names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(
        f"{suite.name}: ratio {suite.main_ratio:.0%}, {suite.default_steps} steps, test split", fontsize=11
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
