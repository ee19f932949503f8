"""The paper's numbers are typed in once (`pat_lite.evaluation.paper_results`); the tables that restate them
for a reader — docs/method.md §9 and notebook 05's introduction — must agree with that module, and every
consumer reads it rather than a copy."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pat_lite.evaluation import paper_results as paper

ROOT = Path(__file__).resolve().parents[1]
TWO_DECIMALS = re.compile(r"(?<![\d.])\d{2}\.\d{2}(?![\d.])")


def _section(number: int) -> str:
    text = (ROOT / "docs" / "method.md").read_text()
    start = text.index(f"\n## {number}. ")
    return text[start : text.index("\n## ", start + 1)]


def _rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in `text` (header and separator rows included)."""
    return [[c.strip().strip("*") for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]  # fmt: skip


def _all_values() -> set[float]:
    values = {v for row in paper.TABLE1.values() for v in row.values()}
    return values | {v for row in paper.TABLE2_LLAMA2_7B.values() for v in row.values()}


def test_the_method_docs_table_1_is_the_modules_table_1():
    rows = [r for r in _rows(_section(9)) if r[0].endswith("%") and len(r) == 2 + len(paper.MODELS)]
    found = {(float(r[0].rstrip(" %")) / 100, r[1]): [float(v) for v in r[2:]] for r in rows}
    expected = {key: [row[m] for m in paper.MODELS] for key, row in paper.TABLE1.items()}
    assert found == expected
    header = next(r for r in _rows(_section(9)) if r[:2] == ["ratio", "method"])
    assert tuple(header[2:]) == paper.MODELS


def test_the_method_docs_ablation_table_is_the_modules_table_2():
    rows = [r for r in _rows(_section(9)) if len(r) == 3 and r[0].split(" (")[0] in paper.TABLE2_LLAMA2_7B]
    found = {r[0].split(" (")[0]: {0.25: float(r[1]), 0.3: float(r[2])} for r in rows}
    assert found == paper.TABLE2_LLAMA2_7B


def _markdown_cells(notebook: str) -> str:
    source = (ROOT / "notebooks" / f"{notebook}.py").read_text()
    return "\n".join(line[2:] for line in source.splitlines() if line.startswith("# "))


def test_notebook_05_introduces_table_2_with_the_modules_numbers():
    rows = [r for r in _rows(_markdown_cells("05_ablations")) if r[0].endswith("%")]
    assert len(rows) == 2
    variants = list(paper.TABLE2_LLAMA2_7B)
    for row in rows:
        ratio = float(row[0].rstrip(" %")) / 100
        assert [float(v) for v in row[1:]] == [paper.TABLE2_LLAMA2_7B[v][ratio] for v in variants]


@pytest.mark.parametrize(
    "where, text",
    [
        ("docs/method.md §6", _section(6)),
        ("docs/method.md §9", _section(9)),
        ("notebook 03", _markdown_cells("03_llama2_7b_a100")),
        ("notebook 05", _markdown_cells("05_ablations")),
    ],
)
def test_every_paper_number_quoted_in_prose_is_one_of_the_papers(where, text):
    quoted = {float(v) for v in TWO_DECIMALS.findall(text)}
    assert quoted, f"{where}: no paper numbers found (did the text move?)"
    assert quoted <= _all_values(), (
        f"{where} quotes numbers the paper does not report: {quoted - _all_values()}"
    )


def test_the_consumers_read_the_module_instead_of_typing_the_numbers():
    """No other module of pat_lite holds one of the paper's two-decimal averages as a literal."""
    values = _all_values()
    typed = []
    for path in (ROOT / "pat_lite").rglob("*.py"):
        if path.name == "paper_results.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, float) and node.value in values:
                typed.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert not typed, f"read pat_lite.evaluation.paper_results instead: {typed}"


def test_lora_and_pat_averages_is_a_view_of_table_1():
    llama = paper.lora_and_pat_averages()["Llama2-7B"]
    assert llama == {"LoRA-64 (0 %)": 58.76, "PAT 20 %": 61.04, "PAT 25 %": 60.02, "PAT 30 %": 57.81}
    assert paper.table1(paper.LORA, 0.25) is None  # LoRA-64 is only reported at full width
