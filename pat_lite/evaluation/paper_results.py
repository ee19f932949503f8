"""The paper's reported numbers (Liu et al., AAAI 2025; docs/method.md §9), typed in once.

Every table that sets our numbers beside the paper's reads them from here: the lm-eval report
(`pat_lite.evaluation.lmeval.to_markdown`), notebook 04 (`pat_lite.notebook.evaluation`), notebook 05
(`pat_lite.notebook.ablations`) and the committed study beside the paper (`pat_lite.reproduce.results_view`).
tests/test_paper_results.py checks the tables of docs/method.md §9 and notebook 05's introduction against
them, so a typo in either place fails a test.

All values are 14-task average accuracies in percent, scored by the first valid capital letter of a
generated answer (OpenCompass style, §9).
"""

from __future__ import annotations

#: The models of the paper's Table 1, in its column order.
MODELS: tuple[str, ...] = ("Gemma-2B", "Gemma-7B", "Llama2-7B", "Llama2-13B", "Yi-1.5-34B")
#: Table 1's methods: the full-width baseline, the two prune→tune baselines and PAT.
LORA, LLM_PRUNER, SLICEGPT, PAT = "LoRA-64", "LLM-Pruner prune→tune", "SliceGPT prune→tune", "PAT"


def _row(*values: float) -> dict[str, float]:
    return dict(zip(MODELS, values, strict=True))


#: Table 1: (pruning ratio, method) → model → average (%), in the paper's row order.
TABLE1: dict[tuple[float, str], dict[str, float]] = {
    (0.0, LORA): _row(53.82, 71.59, 58.76, 66.74, 81.21),
    (0.2, LLM_PRUNER): _row(48.87, 65.45, 58.53, 65.28, 73.86),
    (0.2, SLICEGPT): _row(48.21, 66.60, 57.81, 65.86, 76.81),
    (0.2, PAT): _row(53.95, 68.68, 61.04, 69.37, 81.02),
    (0.25, LLM_PRUNER): _row(42.32, 60.50, 52.50, 58.64, 70.10),
    (0.25, SLICEGPT): _row(45.23, 62.22, 52.98, 60.69, 73.88),
    (0.25, PAT): _row(52.98, 66.68, 60.02, 66.58, 78.90),
    (0.3, LLM_PRUNER): _row(39.71, 50.28, 50.60, 51.28, 66.85),
    (0.3, SLICEGPT): _row(40.07, 53.14, 50.91, 56.12, 71.81),
    (0.3, PAT): _row(45.33, 64.58, 57.81, 65.15, 77.89),
}

#: Table 2, the ablation on Llama2-7B: variant → pruning ratio → average (%).
TABLE2_LLAMA2_7B: dict[str, dict[float, float]] = {
    "frozen mask": {0.25: 54.97, 0.3: 52.72},
    "no identity loss": {0.25: 58.62, 0.3: 56.59},
    "full PAT": {0.25: 60.02, 0.3: 57.81},
}

#: The paper's speed claim (§9): time to first token of the pruned Llama-2 models, 128-token context, A100.
TTFT_SPEEDUP = 1.33


def table1(method: str, ratio: float, model: str = "Llama2-7B") -> float | None:
    """One cell of Table 1 (None where the paper has no such row: LoRA-64 is only reported at 0 %)."""
    return TABLE1.get((ratio, method), {}).get(model)


def lora_and_pat_averages() -> dict[str, dict[str, float]]:
    """Table 1's LoRA-64 and PAT rows by model: {model: {"LoRA-64 (0 %)": .., "PAT 20 %": .., ...}}."""
    columns = {f"{LORA} (0 %)": (0.0, LORA)} | {
        f"PAT {r:.0%}".replace("%", " %"): (r, PAT) for r in (0.2, 0.25, 0.3)
    }
    return {model: {name: TABLE1[key][model] for name, key in columns.items()} for model in MODELS}
