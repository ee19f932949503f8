"""Tables and figures of notebook 04: dense vs LoRA vs PAT accuracy under both scorings, chance levels and
the answer form the paper's scoring needs, our numbers beside the paper's (docs/method.md §9), the ideal
speedups of the paper's models, and whether a benchmark run is timing-grade.

`results` below is what notebook 04 collects: {(model name, scoring): `pat_lite.evaluation.lmeval.evaluate`
output}. Accuracies are in percent. Chance and answer-form figures need `evaluate(..., log_samples=True)`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from pat_lite.bench.common import resolve_config
from pat_lite.bench.costs import naive_speedup
from pat_lite.evaluation import paper_results

Results = Mapping[tuple[str, str], dict[str, Any]]
#: An answer in the paper protocol's own form: a lone capital letter, optionally "(B)", "B." or "B: ...".
_LETTER_ANSWER = re.compile(r"^\s*\(?([A-Z])(\)|\.|:|\s|$)")
#: The paper's Llama-2-7B averages (§9) that notebook 04 sets ours beside: the row's label and model.
PAPER_ROW = ("paper, Llama2-7B (14 tasks)", "Llama2-7B")


def _models(results: Results) -> list[str]:
    return list(dict.fromkeys(model for model, _ in results))


def _scorings(results: Results) -> list[str]:
    return list(dict.fromkeys(scoring for _, scoring in results))


# ------------------------------------------------------------------------------------------------ accuracy
def accuracy_table(results: Results) -> pd.DataFrame:
    """Accuracy (%) with rows (scoring, task) — every task, then their unweighted average (§9) — and one
    column per model, in the order the results were collected."""
    rows = []
    for (model, scoring), res in results.items():
        for task in res["tasks"].values():
            rows.append({"scoring": scoring, "task": task["label"], "model": model, "acc": 100 * task["acc"]})
        rows.append({"scoring": scoring, "task": "average", "model": model, "acc": 100 * res["average"]})
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(index=["scoring", "task"], columns="model", values="acc", sort=False)
    return table[_models(results)]


def chance_levels(result: dict[str, Any]) -> dict[str, float]:
    """Accuracy (%) of a uniform guess per task label, and their average under "average", from a
    log-likelihood run's samples (one response per answer choice, so 1 / number of choices per document)."""
    if result.get("scoring") != "loglik" or "samples" not in result:
        raise ValueError("chance_levels needs a scoring='loglik' result evaluated with log_samples=True")
    chance = {}
    for name, task in result["tasks"].items():
        docs = result["samples"].get(name, [])
        if docs:
            chance[task["label"]] = 100 * sum(1 / len(doc["resps"]) for doc in docs) / len(docs)
    if chance:
        chance["average"] = sum(chance.values()) / len(chance)
    return chance


def letter_answer_rate(result: dict[str, Any]) -> float:
    """Share (%) of generations that answer in the protocol's form — a lone letter such as "B" or "(B)" —
    in a scoring='paper' result evaluated with log_samples=True. The rest are scored by whatever valid
    capital letter they happen to contain (the "B" of a name), or count as wrong."""
    answers = [_response(doc) for docs in result.get("samples", {}).values() for doc in docs]
    if not answers:
        raise ValueError("letter_answer_rate needs a scoring='paper' result evaluated with log_samples=True")
    return 100 * sum(bool(_LETTER_ANSWER.match(text)) for text in answers) / len(answers)


def _response(doc: dict[str, Any]) -> str:
    """The generated text of one sample (lm-eval nests it: resps = [[text]])."""
    response: Any = doc["resps"]
    while isinstance(response, list) and response:
        response = response[0]
    return str(response)


def paper_answer_examples(result: dict[str, Any], n: int = 3) -> pd.DataFrame:
    """The first `n` documents of each task of a scoring='paper' result: generated answer, the letter the
    protocol read from it, the gold letter, and whether it counted as correct."""
    rows = []
    for name, docs in result.get("samples", {}).items():
        label = result["tasks"].get(name, {}).get("label", name)
        for doc in docs[:n]:
            letter = doc["filtered_resps"]
            letter = letter[0] if isinstance(letter, list) else letter
            rows.append(
                {"task": label, "generated answer": _response(doc).strip(), "letter read": letter,
                 "gold": doc["target"], "correct": bool(doc["acc"])}
            )  # fmt: skip
    return pd.DataFrame(rows)


def plot_accuracy(table: pd.DataFrame, chance: Mapping[str, float] | None = None, title: str = ""):
    """One panel per scoring: grouped bars per task (value on each bar, so a 0 is visible too), a dashed
    mark at chance level where known, and one legend above the panels, clear of the bars."""
    from matplotlib.figure import Figure

    scorings = list(dict.fromkeys(table.index.get_level_values("scoring")))
    fig = Figure(figsize=(6.5 * len(scorings), 4.2))
    axes = fig.subplots(1, len(scorings), squeeze=False)[0]
    width = 0.8 / len(table.columns)
    for ax, scoring in zip(axes, scorings, strict=True):
        part = table.loc[scoring]
        x = range(len(part.index))
        for k, model in enumerate(table.columns):
            bars = ax.bar([i + (k - (len(table.columns) - 1) / 2) * width for i in x], part[model], width,
                          label=model)  # fmt: skip
            ax.bar_label(bars, fmt=_percent, fontsize=7, padding=2, rotation=90)  # upright: no "100100"
        if chance:
            marks = [(i, chance[task]) for i, task in enumerate(part.index) if task in chance]
            for n, (i, level) in enumerate(marks):
                ax.hlines(level, i - 0.45, i + 0.45, colors="black", linestyles="--", lw=1,
                          label="chance (uniform guess)" if n == 0 else None)  # fmt: skip
        ax.set_xticks(list(x), list(part.index), rotation=20)
        ax.set_ylim(0, 118)  # room for an upright "100" above a full bar
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"scoring: {scoring}")
    handles, labels = axes[0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("chance"))  # the models first
    if title:
        fig.suptitle(title, y=0.99)
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper center", ncol=len(labels),
               bbox_to_anchor=(0.5, 0.94 if title else 1.0))  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.86 if title else 0.92))
    return fig


def _percent(value: float) -> str:
    """A bar's label: 100, 75, 12.5 (no trailing .0, and 12.5 not rounded to 12)."""
    return f"{value:.0f}" if value == round(value) else f"{value:.1f}"


# ------------------------------------------------------------------------------------------- paper table
def paper_reported_table() -> pd.DataFrame:
    """The paper's 14-task averages (%, §9): one row per model, one column per method and ratio."""
    return pd.DataFrame(paper_results.lora_and_pat_averages()).T


def paper_comparison(results: Results, label: str, chance: float | None = None) -> pd.DataFrame:
    """The paper's Llama-2-7B LoRA-64 and PAT 25 % averages beside ours (one row per scoring), with the
    ratio PAT / LoRA — left empty, with the reason in `note`, where LoRA does not beat `chance` (%): a
    ratio of two guesses measures nothing."""
    source, model = PAPER_ROW
    lora, pat = (
        paper_results.table1(paper_results.LORA, 0.0, model),
        paper_results.table1(paper_results.PAT, 0.25, model),
    )
    rows = [{"source": source, "LoRA (%)": lora, "PAT 25 % (%)": pat, "note": ""}]
    for scoring in _scorings(results):
        lora, pat = 100 * results["LoRA", scoring]["average"], 100 * results["PAT", scoring]["average"]
        source = f"ours, {label}, {scoring}"
        rows.append({"source": source, "LoRA (%)": lora, "PAT 25 % (%)": pat, "note": ""})
    frame = pd.DataFrame(rows).set_index("source")
    frame["PAT / LoRA"] = frame["PAT 25 % (%)"] / frame["LoRA (%)"]
    floor = 0.0 if chance is None else chance
    meaningless = frame["LoRA (%)"] <= floor
    frame.loc[meaningless, "PAT / LoRA"] = math.nan
    frame.loc[meaningless, "note"] = "no ratio: LoRA is not above chance" + (
        "" if chance is None else f" ({chance:.0f} %)"
    )
    return frame[["LoRA (%)", "PAT 25 % (%)", "PAT / LoRA", "note"]]


def plot_paper_comparison(frame: pd.DataFrame):
    """Horizontal bars of PAT / LoRA with the value written beside each bar; a row without a ratio says
    why instead of showing an empty bar."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.55 * len(frame) + 1.3))
    ax = fig.subplots()
    labels = list(frame.index)[::-1]
    ratios = frame["PAT / LoRA"].tolist()[::-1]
    notes = frame["note"].tolist()[::-1]
    for y, (ratio, note) in enumerate(zip(ratios, notes, strict=True)):
        if math.isnan(ratio):
            ax.text(0.02, y, note, va="center", fontsize=8, color="dimgrey", bbox={"color": "white"})
        else:
            ax.barh(y, ratio, color="tab:blue")
            ax.text(ratio + 0.02, y, f"{ratio:.2f}", va="center", fontsize=8)
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(-0.6, len(labels) - 0.4)  # room for a row without a bar at either end
    finite = [r for r in ratios if not math.isnan(r)]
    ax.set_xlim(0, max([1.25, *[r + 0.2 for r in finite]]))
    ax.set_xlabel("PAT 25 % accuracy / LoRA accuracy (1 = no loss from pruning)")
    ax.set_title("pruned and tuned vs tuned at full width")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- speed
#: The paper's models at 25 % (and TinyLlama, this project's GPU dry run): preset name, pruned width.
PAPER_WIDTHS = (("llama2-7b", 3072), ("llama2-13b", 3840), ("tinyllama", 1536))


def ideal_speedup_table(models: Sequence[tuple[str, int]] = PAPER_WIDTHS, context: int = 128) -> pd.DataFrame:
    """Upper bounds of the pruned models' speedup from their shapes (`naive_speedup`: prefill FLOP ratio,
    decode byte ratio) and their parameter counts in billions."""
    rows = []
    for preset, width in models:
        config = resolve_config(preset)
        speed = naive_speedup(config, width, context=context)
        rows.append(
            {"model": preset, "d": config.hidden_size, "d'": width, "ideal prefill speedup": speed["prefill"],
             "ideal decode speedup": speed["decode"], "parameters (B)": speed["dense_params"] / 1e9,
             "pruned parameters (B)": speed["pruned_params"] / 1e9}
        )  # fmt: skip
    return pd.DataFrame(rows).set_index("model")


#: The benchmark's columns in plain words: (column, header, format). "Ideal" speed-ups are upper bounds from
#: the shapes alone: "FLOPs / bytes only" counts the matrix products and weight reads that shrink, "all
#: costs" adds what does not shrink (attention's inner width, the KV cache, fixed per-step overhead).
BENCH_COLUMNS = (
    ("batch_size", "batch", "{:d}"),
    ("ttft_ms", "time to first token (ms)", "{:.1f}"),
    ("prefill_speedup_cpu", "prefill speed-up, measured", "{:.2f}×"),
    ("prefill_speedup_ideal", "prefill, ideal (FLOPs only)", "{:.2f}×"),
    ("prefill_speedup_ideal_honest", "prefill, ideal (all costs)", "{:.2f}×"),
    ("prefill_efficiency_honest_cpu", "prefill, share of ideal", "{:.0%}"),
    ("decode_ms_per_step", "ms per generated token", "{:.2f}"),
    ("decode_speedup_cpu", "decode speed-up, measured", "{:.2f}×"),
    ("decode_speedup_ideal_honest", "decode, ideal (all costs)", "{:.2f}×"),
    ("decode_efficiency_honest_cpu", "decode, share of ideal", "{:.0%}"),
)


def benchmark_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """`run_benchmark`'s rows as a table with plain column names, one row per model and batch size; the
    speed-ups are ratios of CPU time against the dense model (steady when other jobs share the CPU), and the
    last column is memory: measured peak where it was measured, otherwise weights + KV cache estimated."""
    table = []
    several_runtimes = len({r.get("runtime") for r in rows}) > 1
    for r in rows:
        runtime = f", {r['runtime']}" if several_runtimes else ""
        cells = {"model": f"{r['variant']}, d = {r['width']}{runtime}"}
        cells |= {header: fmt.format(r[key]) for key, header, fmt in BENCH_COLUMNS}
        peak = next(
            (r[c] for c in ("peak_cuda_alloc_mib", "peak_rss_mib") if r.get(c) not in ("", None)), None
        )
        if peak is None:
            cells["memory, estimated (MiB)"] = f"{r['est_weights_kv_mib']:,.1f}"
        else:
            cells["peak memory (MiB)"] = f"{peak:,.0f}"
        table.append(cells)
    return pd.DataFrame(table).set_index("model")


#: Below this many parameters a forward pass is mostly per-call overhead, not the matmuls PAT shrinks.
TIMING_GRADE_MIN_PARAMS = 20e6


def timing_grade_note(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown sentence saying whether these benchmark rows can test a speedup claim, and if not, why:
    too few repeats, a model too small to time its matmuls, or a machine busier than it has cores."""
    dense = next(r for r in rows if r["variant"] == "dense")
    reasons = []
    if dense["repeats"] < 3:
        reasons.append(f"{dense['repeats']} timed repeat(s), so no median to speak of")
    if dense["params"] < TIMING_GRADE_MIN_PARAMS:
        reasons.append(
            f"a {dense['params'] / 1e6:.1f} M-parameter model spends its time on per-call overhead, not on "
            "the matrix multiplications the width cut shrinks"
        )
    cores = os.cpu_count() or 1
    if dense["loadavg_1m"] > cores:
        reasons.append(f"the machine was busy (load average {dense['loadavg_1m']:.1f} on {cores} cores)")
    if reasons:
        return (
            "**Not timing-grade:** " + "; ".join(reasons) + ". These rows show that the benchmark runs, not "
            "what the narrower width buys: for that, run with the notebook's default parameters on an idle "
            "machine."
        )
    return (
        f"Timing: median of {dense['repeats']} interleaved repeats per model after warm-up, "
        f"{dense['threads']} thread(s), load average {dense['loadavg_1m']:.1f} on {cores} cores."
    )
