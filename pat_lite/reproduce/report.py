"""Tables and figures of a `pat-lite reproduce` suite: mean ± std over seeds of the selected rows."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pat_lite.reproduce.methods import get_method, method_label
from pat_lite.utils.numbers import readable


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_values(values: list[float], unit: str) -> str:
    """ "mean" or "mean ± std" (sample std) as a reader takes them in (`utils.numbers.readable`: 1.6 × 10¹⁰,
    109,197, 242.8): two decimals below 10 for a metric that is not a percentage, one otherwise."""
    mean, std = mean_std(values)
    digits = 2 if unit != "%" and abs(mean) < 10 else 1
    text = readable(mean, digits)
    return text if len(values) == 1 else f"{text} ± {readable(std, digits)}"


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
    head = "| method | seeds | lr | " + " | ".join(labels)
    lines = [head + " |", "|---|---:|---:|" + "---:|" * len(metrics)]
    rates = _selected_rates(result["rows"])
    for name in methods:
        if name not in table:
            continue
        values = table[name]
        cells = [format_values(values[m], suite.metric_units[m]) if values[m] else "–" for m in metrics]
        n = len(next(iter(table[name].values())))
        lines.append(f"| {method_label(name)} | {n} | {rates.get(name, '–')} | " + " | ".join(cells) + " |")
    return lines


def _selected_rates(rows: list[dict[str, Any]]) -> dict[str, str]:
    """method → the learning rate its selected rows use (as text)."""
    selected = [r for r in rows if r.get("selected") and r["learning_rate"] is not None]
    return {r["method"]: _rate(r["learning_rate"]) for r in selected}


def _rate(learning_rate: float | None) -> str:
    return "–" if learning_rate is None else f"{learning_rate:g}"


def _unfinished_lines(result: dict[str, Any]) -> list[str]:
    """For a grid still running: how many of its rows are missing, and which (method and run length,
    the seeds in brackets)."""
    missing = result.get("unfinished") or []
    if not missing:
        return []
    groups: dict[tuple[str, int, float], list[int]] = {}
    for row in missing:
        groups.setdefault((row["method"], row["steps"], row["ratio"]), []).append(row["seed"])
    parts = [
        f"`{method}` {steps} steps (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))})"
        + (f" at {ratio:.0%}" if ratio else "")
        for (method, steps, ratio), seeds in groups.items()
    ]
    return [
        f"**Partial results: {len(missing)} rows of the committed grid are still to run** (the same command "
        f"resumes them): {'; '.join(parts)}. The tables below hold the finished rows only.",
        "",
    ]


def _protocol_lines(result: dict[str, Any], suite) -> list[str]:
    """How learning rates were chosen, and for each method the validation figure behind the choice."""
    protocol = result["protocol"]
    lines = [f"**Learning rates**: {protocol['selection']}."]
    sweep = [r for r in result["rows"] if r.get("validation")]
    if sweep:
        lines += [
            "",
            f"| method | lr | validation {suite.headline} | chosen |",
            "|---|---:|---:|:-:|",
        ]
        for r in sorted(sweep, key=lambda r: (r["method"], r["learning_rate"] or 0)):
            value = format_values(
                [r["validation"][suite.headline]], suite.metric_units.get(suite.headline, "")
            )
            lines.append(
                f"| {method_label(r['method'])} | {_rate(r['learning_rate'])} | {value} | "
                f"{'✓' if r.get('selected') else ''} |"
            )
    choices = {k: v for k, v in (result.get("choices") or {}).items()}
    if choices:
        lines += ["", "**Chosen by validation** (at the sweep point, the chosen learning rate):"]
        for name, chosen in choices.items():
            picked = ", ".join(f"`{m}`" for m in chosen) if chosen else "not yet (the sweep is incomplete)"
            lines.append(f"- `{name}` → {picked}")
    return lines


def run_length_values(result: dict[str, Any], suite) -> dict[str, dict[int, list[float]]]:
    """method → run length → the headline metric of its selected rows at the main ratio (one value per
    seed), for every tuned method run at two or more lengths, in the suite's method order."""
    rows = result["rows"]
    lengths = sorted({r["steps"] for r in rows if r["steps"]})
    tables = {n: aggregate(rows, suite.main_ratio, n) for n in lengths}
    methods = [m for m in dict.fromkeys([*suite.default_methods, *(r["method"] for r in rows)])
               if get_method(m).uses_learning_rate and sum(m in tables[n] for n in lengths) >= 2]  # fmt: skip
    return {m: {n: tables[n][m][suite.headline] for n in lengths if m in tables[n]} for m in methods}


def run_length_lines(result: dict[str, Any], suite) -> list[str]:
    """The headline metric of every method across run lengths at the main ratio: the trend, not only the
    end point (mean ± std over the seeds each length has)."""
    values = run_length_values(result, suite)
    lengths = sorted({n for by_length in values.values() for n in by_length})
    if len(lengths) < 2:
        return []
    unit = suite.metric_units.get(suite.headline, "")
    lines = [
        "| method | " + " | ".join(f"{n} steps" for n in lengths) + " |",
        "|---|" + "---:|" * len(lengths),
    ]
    for m, by_length in values.items():
        cells = [f"{format_values(by_length[n], unit)} ({len(by_length[n])})" if n in by_length else "–"
                 for n in lengths]  # fmt: skip
        lines.append(f"| {method_label(m)} | " + " | ".join(cells) + " |")
    return lines


def cut_quality_cells(quality: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The cut-quality table's cells, row label → column → text: each cut's untuned score and energy kept,
    then (for a method's own cut) the tuned score in the same unit and what tuning recovered, mean ± std
    over seeds or random draws. Where PAT runs kept their mask history, two more columns: the untuned score
    of the set kept at s0 (what the paper fixes) and how many keep/cut decisions changed after it."""
    unit, sign = quality["unit"], -1.0 if quality["lower_is_better"] else 1.0
    with_s0 = any("untuned_at_s0" in row for row in quality["rows"])
    cells = {}
    for row in quality["rows"]:
        tuned = row.get("tuned")
        gains = [sign * (t - u) for t, u in zip(tuned, row["untuned"], strict=True)] if tuned else None
        cells[row["label"]] = {
            "chosen by": row["chooser"],
            f"untuned ({unit})": format_values(row["untuned"], unit),
            "energy kept (%)": format_values([100 * e for e in row["energy_kept"]], "%"),
            f"tuned ({unit})": format_values(tuned, unit) if tuned else "–",
            f"recovered ({unit})": format_values(gains, unit) if gains else "–",
        }
        if with_s0:
            at_s0, changed = row.get("untuned_at_s0"), row.get("changed_after_s0")
            cells[row["label"]] |= {
                f"untuned, set kept at s0 ({unit})": format_values(at_s0, unit) if at_s0 else "–",
                "decisions changed after s0": " / ".join(map(str, changed)) if changed else "–",  # per seed
            }
    return cells


def cut_quality_lines(quality: dict[str, Any], suite, result: dict[str, Any]) -> list[str]:
    """The cut-quality table (`cut_quality_cells`) as markdown, with what its columns mean."""
    if not quality:
        return []
    unit = quality["unit"]
    better = "lower" if quality["lower_is_better"] else "higher"
    cells = cut_quality_cells(quality)
    columns = list(next(iter(cells.values())))
    lines = [
        f"Untuned base with exactly the cut, scored by {quality['measure']} ({better} is better); dense, "
        f"uncut: {format_values([quality['dense']], unit)} {unit}. *Energy kept*: share of the residual "
        "stream's energy (calibration text) in the kept directions. For a method's cut, *tuned* is the same "
        "measure after tuning and *recovered* the improvement tuning made over that seed's untuned cut "
        "(mean ± std over seeds).",
    ]
    if any("s0" in column for column in columns):
        lines[0] += (
            " *Set kept at s0*: a PAT run's kept set at its first logged step at or after s0, which the "
            "paper's schedule treats as final, scored the same way; *decisions changed after s0*: channels "
            "that left the kept set between that step and the end (runs whose mask history was on the "
            "machine that wrote this table; – otherwise)."
        )
    lines += ["", "| cut | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * (len(columns) - 1)]
    lines += [f"| {label} | " + " | ".join(row.values()) + " |" for label, row in cells.items()]
    return lines


def time_lines(result: dict[str, Any]) -> list[str]:
    """Where the CPU time of the rows went: tuning (or cutting) vs evaluation, in total."""
    rows = [r for r in result["rows"] if "build_cpu_seconds" in r]
    if not rows:
        return []
    build = sum(r["build_cpu_seconds"] for r in rows)
    evaluation = sum(r["eval_cpu_seconds"] for r in rows)
    wall = sum(r["seconds"] for r in rows)
    return [
        f"{len(rows)} rows with timings: {build / 3600:.2f} CPU-hours of tuning or cutting, "
        f"{evaluation / 3600:.2f} of evaluation ({evaluation / max(build + evaluation, 1e-9):.0%}); "
        f"{wall / 3600:.2f} hours of wall-clock in the workers, one torch thread each, two at a time."
    ]


def cheaper_measure_lines(result: dict[str, Any], suite) -> list[str]:
    """Would the suite's cheaper measure (its cut-quality metric, e.g. the loss on a fixed token budget)
    change the conclusion drawn from its headline metric? Counted over every pair of rows, and as the order
    of the methods' means at each run length of the main ratio. Empty where the two are the same metric."""
    cheap, headline = suite.cut_metric, suite.headline
    if cheap == headline or cheap not in suite.metric_units:
        return []
    rows = [r for r in result["rows"] if cheap in r["metrics"] and headline in r["metrics"]]
    # `alike`: both measures call the same member of a pair better (each in its own direction).
    sign = (1 if suite.higher_is_better else -1) * (-1 if suite.cut_lower_is_better else 1)

    def alike(first: tuple[float, float], second: tuple[float, float]) -> bool:
        return sign * (first[0] - first[1]) * (second[0] - second[1]) >= 0

    pairs = [(a["metrics"], b["metrics"]) for i, a in enumerate(rows) for b in rows[i + 1 :]]
    if not pairs:
        return []
    kept = sum(alike((a[headline], b[headline]), (a[cheap], b[cheap])) for a, b in pairs)
    unit = suite.metric_units.get(headline, "")
    same_order, swaps = [], []
    for steps in sorted({r["steps"] for r in rows if r["steps"]}):
        table = aggregate(rows, suite.main_ratio, steps)
        means = {n: (mean_std(v[headline])[0], mean_std(v[cheap])[0]) for n, v in table.items()}
        names = list(means)
        swapped = [
            (a, b) for i, a in enumerate(names) for b in names[i + 1 :]
            if not alike((means[a][0], means[b][0]), (means[a][1], means[b][1]))
        ]  # fmt: skip
        if not swapped:
            same_order.append(f"{steps} steps ({len(names)} methods)")
        swaps += [
            f"at {steps} steps {method_label(a)} and {method_label(b)} swap places ({headline} "
            f"{format_values(table[a][headline], unit)} and {format_values(table[b][headline], unit)})"
            for a, b in swapped
        ]
    ordered = f"keep their order at {' and '.join(same_order)}" if same_order else ""
    return [
        f"Would a cheaper evaluation change the conclusion? Scored by {suite.cut_measure} instead of "
        f"{headline}, {kept:,} of {len(pairs):,} pairs of rows keep their order; the methods, by their "
        f"means at the main ratio, " + "; ".join(filter(None, [ordered, *swaps])) + "."
    ]


def winner_lines(result: dict[str, Any], suite) -> list[str]:
    """Who wins at each run length of the main ratio, computed from the selected rows: the best pruned
    method, the paper's PAT and the best other PAT setting with their distance from it, and full-width
    LoRA (mean ± std over the seeds each has)."""
    rows = result["rows"]
    lengths = sorted({r["steps"] for r in rows if r["steps"]})
    lines = [_winners_at(aggregate(rows, suite.main_ratio, steps), suite) for steps in lengths]
    return [f"- **{steps} steps**: {line}." for steps, line in zip(lengths, lines, strict=True) if line]


def _winners_at(table: dict[str, dict[str, list[float]]], suite) -> str:
    metric, unit = suite.headline, suite.metric_units.get(suite.headline, "")
    means = {m: mean_std(v[metric])[0] for m, v in table.items() if v.get(metric)}
    pruned = [m for m in means if get_method(m).pruned]
    if not pruned:
        return ""
    better = max if suite.higher_is_better else min

    def cite(name: str) -> str:
        values = table[name][metric]
        seeds = f"{len(values)} seed{'s' if len(values) > 1 else ''}"
        return f"{method_label(name)} {format_values(values, unit)}{' %' if unit == '%' else ''} ({seeds})"

    def behind(name: str) -> str:
        if unit == "%":
            return f"{abs(means[best] - means[name]):.1f} points behind"
        return f"{readable(means[name] / means[best], 2)}× its {metric}"

    best = better(pruned, key=means.__getitem__)
    parts = [f"best pruned method {cite(best)}"]
    if "pat" in means and best != "pat":
        parts.append(f"the paper's PAT {cite('pat')}, {behind('pat')}")
    rivals = [("best other PAT setting", [m for m in pruned if m.startswith("pat-") and m != best])]
    if best.startswith("pat"):
        rivals.append(("best method that is not PAT", [m for m in pruned if not m.startswith("pat")]))
    for title, names in rivals:
        if names:
            rival = better(names, key=means.__getitem__)
            parts.append(f"{title} {cite(rival)}, {behind(rival)}")
    if "lora" in means:
        parts.append(f"full-width {cite('lora')}")
    return "; ".join(parts)


def suite_markdown(result: dict[str, Any], suite, quality: dict[str, Any] | None = None) -> str:
    """The committed `<suite>.md`: how to re-run, the protocol, the main table, the other axes, the cut
    quality, all rows."""
    rows = result["rows"]
    order = list(dict.fromkeys([*suite.default_methods, *(r["method"] for r in rows)]))
    test = "the toy world's test split" if suite.name == "toy" else "the held-out text (test units)"
    lines = [
        f"# {suite.name}: {suite.description}",
        "",
        "Re-run with (the rows already present are kept; a crashed run resumes):",
        "",
        "```bash",
        *(result.get("commands") or [f"pat-lite reproduce --suite {suite.name} --out results"]),
        "```",
        "",
        f"Commit `{result['git_commit'][:12]}`, written {result['created']}. Metrics on {test}; mean ± std "
        "over seeds (sample std); `lr` is the learning rate of the selected rows. Methods marked *(ours)* "
        "are this project's variants of PAT (docs/method.md §12), not the paper's.",
        "",
        *_unfinished_lines(result),
        *_protocol_lines(result, suite),
        "",
        f"## Main table: ratio {suite.main_ratio:.0%}, {suite.default_steps} steps",
        "",
        *_table(result, suite, suite.main_ratio, suite.default_steps, order),
    ]
    other_ratios = sorted({r["ratio"] for r in rows if r["ratio"] not in (0.0, suite.main_ratio)})
    for ratio in other_ratios:
        lines += ["", f"## Ratio {ratio:.0%}, {suite.default_steps} steps", ""]
        lines += _table(result, suite, ratio, suite.default_steps, order)
    other_steps = sorted({r["steps"] for r in rows if r["steps"] not in (0, suite.default_steps)})
    for steps in other_steps:
        lines += ["", f"## {steps} steps, ratio {suite.main_ratio:.0%}", ""]
        lines += _table(result, suite, suite.main_ratio, steps, order)
    winners = winner_lines(result, suite)
    if winners:
        title = f"## Who wins at ratio {suite.main_ratio:.0%} ({suite.headline}, computed from the rows)"
        lines += ["", title, ""]
        lines += winners
    trend = run_length_lines(result, suite)
    if trend:
        lines += ["", f"## Run length: {suite.headline} by steps (seeds in brackets)", "", *trend]
    quality = cut_quality_lines(quality or {}, suite, result)
    if quality:
        lines += ["", "## Cut quality: how good was the choice, how much did tuning recover", "", *quality]
    lines += ["", "## Every row (including the learning-rate sweep)", ""]
    metrics = list(suite.metric_units)
    lines.append(
        "| method | ratio | seed | steps | lr | selected | validation | "
        + " | ".join(metrics)
        + " | tune CPU s | eval CPU s |"
    )
    lines.append("|---|---:|---:|---:|---:|:-:|---:|" + "---:|" * len(metrics) + "---:|---:|")
    for r in rows:
        lr = "–" if r["learning_rate"] is None else f"{r['learning_rate']:g}"
        cells = " | ".join(f"{r['metrics'][m]:.4g}" for m in metrics)
        mark = "✓" if r.get("selected") else ""
        validation = f"{r['validation'][suite.headline]:.4g}" if r.get("validation") else ""
        build = f"{r['build_cpu_seconds']:.0f}" if "build_cpu_seconds" in r else "–"
        evaluation = f"{r['eval_cpu_seconds']:.0f}" if "eval_cpu_seconds" in r else "–"
        lines.append(
            f"| {method_label(r['method'])} | {r['ratio']:g} | {r['seed']} | {r['steps']} | {lr} | {mark} | "
            f"{validation} | {cells} | {build} | {evaluation} |"
        )
    timing = time_lines(result)
    if timing:
        lines += ["", *timing]
    cheaper = cheaper_measure_lines(result, suite)
    if cheaper:
        lines += ["", *cheaper]
    return "\n".join(lines) + "\n"


def plot_suite(result: dict[str, Any], suite, path: str | Path) -> Path:
    """Bar chart of the main table: one panel per metric, mean ± std over seeds, PAT variants highlighted."""
    from matplotlib.figure import Figure

    table = aggregate(result["rows"], suite.main_ratio, suite.default_steps)
    names = [m for m in dict.fromkeys([*suite.default_methods, *table]) if m in table]
    metrics = list(suite.metric_units)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not names:
        fig = Figure(figsize=(6, 1.5))
        fig.text(
            0.5, 0.5, f"{suite.name}: no finished rows at the main ratio and run length yet", ha="center"
        )
        fig.savefig(path, dpi=110)
        return path
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
    axes[0].set_yticks(range(len(names)), [method_label(n).replace("`", "") for n in names], fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(
        f"{suite.name}: ratio {suite.main_ratio:.0%}, {suite.default_steps} steps, test split", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
