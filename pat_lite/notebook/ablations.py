"""The runs, tables and figures of notebook 05: the paper's Table 2 ablations (frozen mask, no identity loss;
docs/method.md §6, §9) on the embedded tiny model, plus the pruning ratio and the HIO rank; and how the
committed study's points and diagnostics are shown (`other_points`, `diagnostics_table`, `same_settings`).

Every run is an ordinary `pat_lite.training.run.train` of one recipe with one named setting changed, scored
on the held-out toy facts with the fast log-likelihood scorer (`pat_lite.evaluation.mc`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pat_lite.core.attach import get_pat
from pat_lite.evaluation.mc import multiple_choice_accuracy
from pat_lite.evaluation.paper_results import TABLE2_LLAMA2_7B
from pat_lite.notebook.plots import training_log_rows
from pat_lite.training.config import load_train_config
from pat_lite.training.run import train

#: The ablations of Table 2 as training settings (an empty dict is the full method).
VARIANTS: dict[str, dict[str, Any]] = {
    "frozen mask": {"pat.mask_mode": "frozen"},
    "no identity loss": {"pat.identity_loss": "off"},
    "full PAT": {},
}


def ablation_plan(
    ratios: Sequence[float], hio_ranks: Sequence[int], default_rank: int
) -> dict[tuple[float, str, int], dict[str, Any]]:
    """(ratio, variant, HIO rank) → extra settings: every variant at every ratio with the default rank, and
    full PAT at every rank for the first ratio (a run already planned is not repeated)."""
    plan = {(ratio, variant, default_rank): extra for ratio in ratios for variant, extra in VARIANTS.items()}
    for rank in hio_ranks:
        plan.setdefault((ratios[0], "full PAT", rank), {})
    return plan


def run_name(ratio: float, variant: str, rank: int) -> str:
    return f"r{ratio}-{variant.replace(' ', '_')}-rank{rank}"


@dataclass
class AblationRun:
    """One finished run: its row of the runs table, its training log and `TrainResult.summary`."""

    record: dict[str, Any]
    log: pd.DataFrame
    summary: dict[str, Any]


def run_ablation(
    key: tuple[float, str, int],
    extra: dict[str, Any],
    *,
    base_model: str,
    train_config: str,
    max_steps: int,
    output_dir: str | Path,
    items: list[dict[str, Any]],
) -> AblationRun:
    """Train one planned run, merge it and score the merged model on `items`."""
    ratio, variant, rank = key
    name = run_name(ratio, variant, rank)
    settings = {
        "model": base_model, "method": "pat", "output_dir": str(Path(output_dir) / name),
        "overwrite_output_dir": True, "max_steps": max_steps, "report_to": "none", "logging_steps": 5,
        "save_steps": max(max_steps, 1), "pat.pruning_ratio": ratio, "pat.hio_rank": rank, **extra,
    }  # fmt: skip
    start = time.time()
    cfg = load_train_config(train_config, [f"{k}={json.dumps(v)}" for k, v in settings.items()])
    result = train(cfg, progress=False)  # the notebook prints one line per run and plots the logs
    accuracy = multiple_choice_accuracy(result.merged, result.tokenizer, items)["accuracy"]
    log = pd.DataFrame(training_log_rows(result.log_history))
    record = {
        "ratio": ratio, "variant": variant, "rank": rank, "width": result.merged.config.hidden_size,
        "active channels": result.summary["active_channels"], "target": result.summary["target_width"],
        "final lm loss": log["lm_loss"].iloc[-1] if len(log) else math.nan,  # logged every 5 steps
        "HIO parameters": sum(p.numel() for p in get_pat(result.model).hsms.parameters()),
        "accuracy (%)": 100 * accuracy, "seconds": time.time() - start, "run": name,
    }  # fmt: skip
    return AblationRun(record, log, result.summary)


def table2_side_by_side(runs: pd.DataFrame, rank: int) -> pd.DataFrame:
    """Accuracy (%) per ratio and variant at HIO rank `rank`, ours beside the paper's Table 2, for the ratios
    that were run (the paper reports 25 % and 30 %; other ratios have no paper number)."""
    ours = runs[runs["rank"] == rank].pivot_table(index="ratio", columns="variant", values="accuracy (%)")
    ours = ours[[v for v in VARIANTS if v in ours.columns]]
    paper = pd.DataFrame(TABLE2_LLAMA2_7B).reindex(
        index=ours.index, columns=ours.columns
    )  # the ratios we ran
    return pd.concat({"ours (tiny model, toy facts)": ours, "paper (Llama-2-7B, 14 tasks)": paper}, axis=1)


def _bars(ax, frame: pd.DataFrame) -> None:
    """Grouped bars: one group per ratio (index), one bar per variant (column), value on each bar."""
    width = 0.8 / len(frame.columns)
    for k, variant in enumerate(frame.columns):
        x = [i + (k - (len(frame.columns) - 1) / 2) * width for i in range(len(frame.index))]
        ax.bar_label(ax.bar(x, frame[variant], width, label=variant), fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(range(len(frame.index)), [f"{r:.0%}" for r in frame.index])
    ax.set_xlabel("pruning ratio")
    ax.set_ylabel("accuracy (%)")


def plot_table2(side: pd.DataFrame, dense_accuracy: float | None = None):
    """Two panels, ours and the paper's, bars per ratio and variant; one legend above both."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, 2)
    for ax, (source, frame) in zip(axes, side.T.groupby(level=0, sort=False), strict=True):
        _bars(ax, frame.droplevel(0).T)
        ax.set_title(source)
        ax.set_ylim(0, 110)
    handles, labels = axes[0].get_legend_handles_labels()
    if dense_accuracy is not None:  # after the bars, so the legend lists the variants first
        handles.append(axes[0].axhline(dense_accuracy, color="grey", ls="--", lw=1))
        labels.append("dense base, untuned")
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig


def plot_ablation_curves(runs: pd.DataFrame, logs: dict[str, pd.DataFrame], ratio: float, rank: int):
    """Active channels and instruction loss over the steps of each variant at one ratio and rank."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6))
    channels, loss = fig.subplots(1, 2)
    chosen = runs[(runs["ratio"] == ratio) & (runs["rank"] == rank)]
    for _, row in chosen.iterrows():
        log = logs[row["run"]]
        channels.plot(log["step"], log["active_channels"], marker=".", label=row["variant"])
        loss.plot(log["step"], log["lm_loss"], marker=".", label=row["variant"])
    if len(chosen):
        channels.axhline(chosen["target"].iloc[0], color="grey", ls="--", lw=1, label="target")
    channels.set_title(f"active channels (W_M > 0), ratio {ratio:.0%}")
    loss.set_title("instruction loss (response tokens)")
    values = [float(v) for name in chosen["run"] for v in logs[name]["lm_loss"]]
    if values and max(values) > 10 * min(values):  # a log axis only where the loss spans decades
        loss.set_yscale("log")
    for ax in (channels, loss):
        ax.set_xlabel("training step")
        ax.legend()
    fig.tight_layout()
    return fig


def plot_ratio_and_rank(runs: pd.DataFrame, ratio: float, rank: int, dense_accuracy: float | None = None):
    """Full PAT's accuracy against the pruning ratio (at `rank`) and against the HIO rank (at `ratio`);
    ticks sit at the values that were run."""
    from matplotlib.figure import Figure

    full = runs[runs["variant"] == "full PAT"]
    by_ratio = full[full["rank"] == rank].sort_values("ratio")
    by_rank = full[full["ratio"] == ratio].sort_values("rank")
    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 2)
    panels = ((by_ratio, "ratio", "pruning ratio", f"full PAT, HIO rank {rank}"),
              (by_rank, "rank", "HIO rank r", f"full PAT, ratio {ratio:.0%}"))  # fmt: skip
    for ax, (frame, column, xlabel, title) in zip(axes, panels, strict=True):
        ax.plot(range(len(frame)), frame["accuracy (%)"], marker="o", label="accuracy")
        labels = [f"{v:.0%}" if column == "ratio" else str(v) for v in frame[column]]
        ax.set_xticks(range(len(frame)), labels)
        ax.set_xlim(-0.5, len(frame) - 0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 105)
        ax.set_title(title)
        if dense_accuracy is not None:
            ax.axhline(dense_accuracy, color="grey", ls="--", lw=1, label="dense base, untuned")
        ax.legend()
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ the committed study
def other_points(result: dict[str, Any]) -> list[tuple[float, int]]:
    """The (ratio, steps) points of a committed study beside its main one, read from its rows: the other
    ratios at the main run length, then the other run lengths at the main ratio."""
    from pat_lite.reproduce.methods import get_method
    from pat_lite.reproduce.suites import get_suite

    main = (get_suite(result["suite"]).main_ratio, result["protocol"]["default_steps"])
    points = {(row["ratio"], row["steps"]) for row in result["rows"] if get_method(row["method"]).pruned}
    ratios = sorted(p for p in points if p[1] == main[1] and p != main)
    lengths = sorted((p for p in points if p[0] == main[0] and p != main), key=lambda p: p[1])
    return ratios + lengths


def same_settings(methods: Sequence[str]) -> dict[str, str]:
    """Method → another method in `methods` that trains with exactly the same settings, once settings equal
    to PATConfig's defaults are left out (e.g. `pat-schedule-paper` is `pat`: the paper's schedule is the
    default). Such rows repeat each other's numbers by construction."""
    from pat_lite.core.config import PATConfig
    from pat_lite.reproduce.methods import get_method

    defaults = dataclasses.asdict(PATConfig())

    def effective(name: str) -> tuple:
        method = get_method(name)
        train = {k: v for k, v in (method.train or {}).items()
                 if not (k.startswith("pat.") and defaults.get(k[4:]) == v)}  # fmt: skip
        return (tuple(sorted(train.items())), method.prune_before, method.prune_after, method.tuned_from)

    # The method that names fewest settings stands for its group (`pat` rather than `pat-schedule-paper`).
    ordered = sorted(methods, key=lambda name: len(get_method(name).train or {}))
    first: dict[tuple, str] = {}
    for name in ordered:
        first.setdefault(effective(name), name)
    return {name: first[effective(name)] for name in methods if first[effective(name)] != name}


def same_settings_note(methods: Sequence[str]) -> str:
    """One sentence per pair of methods that are the same run (`same_settings`), or "" if there is none."""
    return " ".join(
        f"`{name}` trains with the same settings as `{twin}` (the setting it names is pat_lite's default), "
        "so its row repeats that one."
        for name, twin in same_settings(methods).items()
    )


#: The diagnostics' summary columns (`pat_lite.reproduce.diagnostics.summary_row`) under short plain names;
#: notebook 05 says what each means beside the table.
DIAGNOSTIC_COLUMNS = {
    "overlap_norm": "∩ norm set",
    "overlap_energy": "∩ energy set",
    "chance_overlap": "chance",
    "spearman_wm_vs_writer_norm": "ρ(W_M, norm)",
    "largest_activation_channels_cut": "top-8 cut",
    "median_lock_in_step": "decided by step",
    "milestone": "s0",
}


def diagnostics_table(diagnostics: dict[str, dict]) -> pd.DataFrame:
    """One row per diagnosed run with plain column names, the overlaps in %, the LM loss of one batch under
    the soft and the exact mask in one column ("3.08 → 19.13"), and a note where two methods are the same
    run (`same_settings`)."""
    from pat_lite.reproduce.diagnostics import summary_row

    same = same_settings(list(diagnostics))
    rows = {}
    for method, diag in diagnostics.items():
        summary = summary_row(diag)
        row: dict[str, Any] = {}
        for key, label in DIAGNOSTIC_COLUMNS.items():
            value = summary[key]
            if key.startswith(("overlap", "chance")):
                row[label] = f"{100 * value:.0f} %"
            elif key == "spearman_wm_vs_writer_norm":
                row[label] = f"{value:+.2f}"
            else:
                row[label] = "–" if value is None or value != value else f"{value:.0f}"
        soft, exact = summary["final_loss_soft"], summary["final_loss_exact"]
        row["LM loss, soft → exact"] = "–" if soft is None else f"{soft:.2f} → {exact:.2f}"
        row["note"] = f"same settings as {same[method]}" if method in same else ""
        rows[method] = row
    return pd.DataFrame(rows).T.rename_axis("method")


def plot_cut_quality(table: dict[str, Any], title: str = ""):
    """One line per cut: the untuned base with it (open circle: how good the choice was) and, for a method's
    own cut, the tuned model (filled: where tuning took it), joined by an arrow; a cross where a PAT run's
    set kept at s0 was; means over seeds or draws. The random cuts' range is a band, the dense base a
    dotted line. Returns a matplotlib Figure."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter

    rows = table["rows"]
    fig = Figure(figsize=(8, 0.32 * len(rows) + 1.4))
    ax = fig.subplots()
    randoms = next(row for row in rows if row["label"].startswith("random"))
    ax.axvspan(min(randoms["untuned"]), max(randoms["untuned"]), color="lightgrey", alpha=0.6,
               label="range of the random cuts")  # fmt: skip
    ax.axvline(table["dense"], color="black", ls=":", lw=1, label="dense base, uncut")
    marked_s0 = False
    for y, row in enumerate(rows):
        name = row["label"].replace("`", "")
        colour = (
            "tab:red"
            if name.startswith("pat")
            else "tab:grey"
            if row["chooser"] == "reference"
            else "tab:blue"
        )
        untuned = sum(row["untuned"]) / len(row["untuned"])
        ax.plot(untuned, y, "o", mfc="white", color=colour)
        if row.get("untuned_at_s0"):  # the set the paper fixes at s0, before the sparsity loss moved it
            at_s0 = sum(row["untuned_at_s0"]) / len(row["untuned_at_s0"])
            ax.plot(at_s0, y, "x", color=colour, label=None if marked_s0 else "× untuned, set kept at s0")
            marked_s0 = True
        if row.get("tuned"):
            tuned = sum(row["tuned"]) / len(row["tuned"])
            ax.annotate("", (tuned, y), (untuned, y), arrowprops={"arrowstyle": "->", "color": colour})
            ax.plot(tuned, y, "o", color=colour)
    ax.set_yticks(range(len(rows)), [row["label"].replace("`", "") for row in rows], fontsize=8)
    ax.invert_yaxis()
    if table["lower_is_better"]:
        ax.set_xscale("log")
        # Plain numbers (3, 4, 6, 10, 20) rather than matplotlib's 3 × 10⁰ on a log axis of a few nats.
        ax.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    better = "lower" if table["lower_is_better"] else "higher"
    ax.set(xlabel=f"{table['unit']} ({better} is better): ○ untuned base with the cut, ● after tuning",
           title=title or "how good was the cut, and what did tuning add")  # fmt: skip
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_run_length(result: dict[str, Any], title: str = ""):
    """The headline metric of each tuned method against the number of tuning steps, at the main ratio: one
    line per method run at two or more lengths, mean over seeds with the seeds' spread (sample std) as bars;
    our variants of PAT dashed, the paper's PAT drawn thicker, the untuned dense model dotted. Returns a
    matplotlib Figure."""
    from matplotlib.figure import Figure

    from pat_lite.reproduce.methods import OUR_VARIANTS, method_label
    from pat_lite.reproduce.report import mean_std, run_length_values
    from pat_lite.reproduce.suites import get_suite

    suite = get_suite(result["suite"])
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    every_length: set[int] = set()
    for index, (method, by_length) in enumerate(run_length_values(result, suite).items()):
        lengths = sorted(by_length)
        every_length |= set(lengths)
        means, stds = zip(*(mean_std(by_length[n]) for n in lengths), strict=True)
        ax.errorbar(lengths, means, yerr=stds, color=f"C{index % 10}", marker="o", capsize=3,
                    ls="--" if method in OUR_VARIANTS else "-", lw=2.8 if method == "pat" else 1.5,
                    label=method_label(method).replace("`", ""))  # fmt: skip
    unit = suite.metric_units.get(suite.headline, "")
    ax.set_xscale("log")
    ax.set_xlabel("tuning steps")
    ax.set_ylabel(f"{suite.headline} ({unit})" if unit else suite.headline)
    ax.set_title(title or f"{suite.name}: {suite.headline} by run length, ratio {suite.main_ratio:.0%}")
    dense = [
        r["metrics"][suite.headline] for r in result["rows"] if r["method"] == "dense" and r.get("selected")
    ]
    if dense:
        ax.axhline(mean_std(dense)[0], color="black", ls=":", lw=1, label="dense, untuned")
    ax.set_xticks(sorted(every_length), [f"{n:,}" for n in sorted(every_length)])
    ax.minorticks_off()
    if suite.headline == "perplexity":
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
