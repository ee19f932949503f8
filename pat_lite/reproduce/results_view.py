"""The committed study results (`results/<suite>.json`, written by `pat-lite reproduce`) as tables beside
the paper's Tables 1-2 (docs/method.md §9), for notebooks 04 and 05 and the README.

Our rows map onto the paper's by what the method does, not by name: `lora` is the paper's LoRA-64 at full
width, `prune-ft-pca` its SliceGPT prune→tune, `prune-ft-norm` stands where LLM-Pruner's prune→tune stands
(a structured cut chosen from the weights, then LoRA), `pat` is PAT. The paper's numbers are Llama2-7B's
14-task averages; ours are other models and tasks, so only the *order* of the methods can be compared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from pat_lite.core.config import PATConfig
from pat_lite.evaluation import paper_results as paper
from pat_lite.reproduce.methods import OUR_VARIANTS
from pat_lite.reproduce.report import aggregate, cut_quality_cells, format_values
from pat_lite.reproduce.suites import get_suite

#: Our method → the paper's Table 1 row it stands beside (`pat_lite.evaluation.paper_results`).
TABLE1_ROWS = {
    "lora": paper.LORA,
    "prune-ft-norm": paper.LLM_PRUNER,
    "prune-ft-pca": paper.SLICEGPT,
    "pat": paper.PAT,
}
#: Our method → the paper's Table 2 variant.
TABLE2_ROWS = {"pat-frozen": "frozen mask", "pat-no-identity": "no identity loss", "pat": "full PAT"}


def paper_llama2_7b(method: str, table: str, ratio: float) -> tuple[str, float | None]:
    """The paper's row name and Llama2-7B average (%) beside our `method` (LoRA-64 is reported at 0 %)."""
    if table != "1":
        name = TABLE2_ROWS[method]
        return name, paper.TABLE2_LLAMA2_7B[name].get(ratio)
    name = TABLE1_ROWS[method]
    if name == paper.LORA:
        return f"{name} (full width)", paper.table1(name, 0.0)
    return name, paper.table1(name, ratio)


def load_results(suite: str, results_dir: str | Path) -> dict[str, Any]:
    """`<results_dir>/<suite>.json` (raises FileNotFoundError naming the command that writes it)."""
    path = Path(results_dir) / f"{suite}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: `pat-lite reproduce --suite {suite}` writes it")
    return json.loads(path.read_text())


def load_diagnostics(suite: str, results_dir: str | Path) -> dict[str, dict]:
    """`<results_dir>/<suite>-diagnostics.json`: method → diagnostics of its first-seed run ({} if absent)."""
    path = Path(results_dir) / f"{suite}-diagnostics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def main_table(result: dict[str, Any], ratio: float | None = None, steps: int | None = None) -> pd.DataFrame:
    """One row per method at `ratio` and `steps` (default: the suite's main point): whose method it is
    (our variants of PAT marked), the selected learning rate, seeds and each metric as mean ± std over the
    seeds."""
    suite = get_suite(result["suite"])
    ratio = suite.main_ratio if ratio is None else ratio
    steps = result["protocol"]["default_steps"] if steps is None else steps
    table = aggregate(result["rows"], ratio, steps)
    order = [m for m in dict.fromkeys([*suite.default_methods, *table]) if m in table]
    rates = {r["method"]: r.get("learning_rate") for r in result["rows"] if r.get("selected")}
    rows = {}
    for method in order:
        metrics = table[method]
        cells = {
            "ours": "(ours)" if method in OUR_VARIANTS else "",
            "lr": f"{rates[method]:g}" if rates.get(method) else "–",
            "seeds": len(next(iter(metrics.values()))),
        }
        for name, unit in suite.metric_units.items():
            values = metrics.get(name)
            cells[f"{name} ({unit})" if unit else name] = format_values(values, unit) if values else "–"
        rows[method] = cells
    return pd.DataFrame(rows).T.rename_axis("method")


def _mean(result: dict[str, Any], method: str, metric: str, ratio: float) -> float | None:
    """Mean over seeds of the selected rows; `pat` falls back to its default schedule's named row (the
    smollm2 suite runs both schedules by name and no separate `pat`)."""
    table = aggregate(result["rows"], ratio, result["protocol"]["default_steps"])
    if method == "pat" and "pat" not in table:
        method = f"pat-schedule-{PATConfig().schedule}"
    values = table.get(method, {}).get(metric)
    return sum(values) / len(values) if values else None


def beside_paper(results: dict[str, dict[str, Any]], table: str = "1", ratio: float = 0.25) -> pd.DataFrame:
    """The paper's Llama2-7B row of each method beside our suites' headline means at `ratio` (`table`:
    "1" for the method comparison, "2" for the ablations). `results`: suite name → its JSON."""
    rows = {}
    for method in TABLE1_ROWS if table == "1" else TABLE2_ROWS:
        paper_name, value = paper_llama2_7b(method, table, ratio)
        row: dict[str, Any] = {"paper's row": paper_name, "paper, Llama2-7B (%)": value}
        for suite, result in results.items():
            for metric, unit in get_suite(suite).metric_units.items():
                column = f"{suite}: {metric}" + (f" ({unit})" if unit else "")
                row[column] = _mean(result, method, metric, ratio)
        rows[method] = row
    frame = pd.DataFrame(rows).T.rename_axis("our method")
    numeric = [c for c in frame.columns if c != "paper's row"]
    frame[numeric] = frame[numeric].apply(pd.to_numeric)  # None → NaN, so that .round() applies
    return frame


def cut_quality(suite: str, results_dir: str | Path) -> dict[str, Any]:
    """The committed cut-quality table of `suite` (`pat_lite.reproduce.cut_table`), rebuilt from
    `<suite>.json` and `<suite>-cut-quality.json` alone: nothing is trained or scored."""
    from pat_lite.reproduce.cut_table import cut_quality_table

    result = load_results(suite, results_dir)
    return cut_quality_table(Path(results_dir), get_suite(suite), result["rows"], compute=False)


def cut_quality_frame(table: dict[str, Any]) -> pd.DataFrame:
    """`cut_quality`'s rows as a table (`report.cut_quality_cells`): untuned score with the cut, energy
    kept, tuned, recovered (mean ± std over seeds or random draws), and the set kept at s0 where known."""
    cells = {label.replace("`", ""): row for label, row in cut_quality_cells(table).items()}
    return pd.DataFrame(cells).T.rename_axis("cut")
