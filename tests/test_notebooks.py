"""The tutorial notebooks: jupytext pairs that agree, committed clean, parameterised for papermill, and
runnable in smoke mode without warnings or progress-bar noise on the page.

Each notebook is a pair: `notebooks/NN_name.py` (percent format, the source ruff lints) and
`notebooks/NN_name.ipynb` (no outputs, what JupyterLab opens and papermill runs); `make sync` updates one
from the other. The execution tests run every notebook with the overrides of `notebooks/smoke.yaml` (tiny
model, a few steps, toy evaluation, tiny benchmark); executed copies go to `artifacts/notebooks/`.
"""

from __future__ import annotations

import ast
import re
import time
import tomllib
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
EXECUTED_DIR = ROOT / "artifacts" / "notebooks"
EXPECTED = [
    "01_masked_layer",
    "02_tinyllama_dry_run",
    "03_llama2_7b_a100",
    "04_evaluation",
    "05_ablations",
]
#: PAT's math lives in pat_lite; a notebook that re-implements it would teach code that is never tested.
FORBIDDEN = [
    r"\bdef\s+gate\w*\s*\(",
    r"\bclass\s+HSM\b",
    r"\bclass\s+\w*Mask\w*\s*[(:]",
    r"\bclass\s+StraightThrough\w*",
    r"\bdef\s+(sparsity|identity)_loss\s*\(",
    r"\bdef\s+merge\w*\s*\(",
    r"torch\.sigmoid\(",
    r"\.sigmoid\(",
    r"F\.sigmoid\(",
]
#: A code cell a reader takes in at a glance; longer logic belongs in pat_lite (pat_lite/notebook/).
MAX_CODE_CELL_LINES = 25


def _notebooks() -> dict[str, Path]:
    return {p.stem: p for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))}


def _smoke() -> dict[str, dict]:
    return yaml.safe_load((NOTEBOOK_DIR / "smoke.yaml").read_text())


def _parameter_names(nb) -> set[str]:
    (cell,) = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    tree = ast.parse(cell.source)
    assigns = [node for node in tree.body if isinstance(node, ast.Assign)]
    return {t.id for node in assigns for t in node.targets if isinstance(t, ast.Name)}


def _cells(nb) -> list[tuple[str, str, list[str]]]:
    """What a pair must agree on: each cell's type, source and tags (not outputs, ids or counts)."""
    return [(c.cell_type, c.source, list(c.get("metadata", {}).get("tags", []))) for c in nb.cells]


def test_the_five_notebooks_exist():
    assert list(_notebooks()) == EXPECTED


def test_every_notebook_is_a_jupytext_pair_declared_in_the_config():
    config = tomllib.loads((NOTEBOOK_DIR / "jupytext.toml").read_text())
    assert config["formats"] == "ipynb,py:percent"
    scripts = sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
    assert scripts == EXPECTED, "every notebook needs its .py twin and every .py its notebook (make sync)"
    assert not (NOTEBOOK_DIR / "_build.py").exists(), "the notebooks are edited as .py pairs, not generated"


@pytest.mark.parametrize("name", EXPECTED)
def test_the_py_and_the_ipynb_of_a_pair_hold_the_same_cells(name):
    script = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
    notebook = nbformat.read(_notebooks()[name], as_version=4)
    expected, found = _cells(script), _cells(notebook)
    drifted = [i for i, (a, b) in enumerate(zip(expected, found, strict=False)) if a != b]
    assert len(expected) == len(found) and not drifted, (
        f"{name}.py and {name}.ipynb differ ({len(expected)} vs {len(found)} cells; first different cell: "
        f"{drifted[:1]}); run `make sync` after editing either one"
    )


@pytest.mark.parametrize("name", EXPECTED)
def test_code_cells_are_short_and_start_with_the_shared_setup(name):
    nb = nbformat.read(_notebooks()[name], as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    long = {
        i: len(src.splitlines()) for i, src in enumerate(code) if len(src.splitlines()) > MAX_CODE_CELL_LINES
    }
    assert not long, f"{name}: code cells over {MAX_CODE_CELL_LINES} lines (cell: lines): {long}"
    assert "OUT = setup(output_dir)" in code[1], f"{name}: the cell after the parameters calls setup()"


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_notebook_is_clean(name):
    nb = nbformat.read(_notebooks()[name], as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name}: exactly one cell must be tagged 'parameters', found {len(tagged)}"
    assert tagged[0].cell_type == "code"
    for line in tagged[0].source.splitlines():  # papermill's parameter parser skips lines with two "="
        assert line.count("=") <= 1, f"{name}: papermill cannot parse the parameter line {line!r}"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"{name}: cell {i} has outputs (clear them before committing)"
        assert cell.execution_count is None, f"{name}: cell {i} has an execution count"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "start with a title"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_does_not_reimplement_pat(name):
    nb = nbformat.read(_notebooks()[name], as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    found = [pattern for pattern in FORBIDDEN if re.search(pattern, source)]
    assert not found, f"{name} defines PAT math itself ({found}); call pat_lite instead"
    assert "pat_lite" in source


def test_smoke_parameters_exist_in_the_notebooks():
    smoke = _smoke()
    assert sorted(smoke) == EXPECTED
    for name, overrides in smoke.items():
        names = _parameter_names(nbformat.read(_notebooks()[name], as_version=4))
        unknown = set(overrides or {}) - names
        assert not unknown, f"smoke.yaml sets {sorted(unknown)} that {name}'s parameters cell does not define"
        assert str((overrides or {}).get("output_dir", "artifacts/")).startswith("artifacts/")


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_in_smoke_mode(name, monkeypatch):
    import papermill  # a dev dependency: missing, the test fails rather than skips

    # The kernel inherits this: as in conftest, one torch thread for tiny models on a shared 2-core machine
    # (measured: a 20-step tiny PAT run takes 13 s with one thread, 117 s with two on a busy machine).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    EXECUTED_DIR.mkdir(parents=True, exist_ok=True)
    out = EXECUTED_DIR / f"{name}.ipynb"
    start = time.time()
    papermill.execute_notebook(
        str(_notebooks()[name]),
        str(out),
        parameters=_smoke()[name] or {},
        kernel_name="python3",
        cwd=str(ROOT),
        progress_bar=False,
        execution_timeout=600,
    )
    print(f"{name}: {time.time() - start:.0f} s (executed copy: {out.relative_to(ROOT)})")
    executed = nbformat.read(out, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]  # fmt: skip
    assert not errors
    assert not _noise(executed), f"{name}: warnings or progress bars on the page: {_noise(executed)}"


#: What a progress bar looks like in an HTML output: the Trainer's notebook bar (a <progress> element above
#: a growing table of losses) and tqdm's notebook bar.
HTML_PROGRESS = re.compile(r"<progress\b|\bTraining Loss\b|tqdm", re.IGNORECASE)


def _noise(nb) -> list[str]:
    """stderr text (warnings, progress bars), progress bars drawn as HTML, and progress widgets in an
    executed notebook; a widget is expected only in a cell that builds one on purpose (01's slider)."""
    found = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                found.append(f"cell {i} stderr: {output['text'][:200]!r}")
            html = "".join(output.get("data", {}).get("text/html", ""))
            if HTML_PROGRESS.search(html):
                found.append(f"cell {i} HTML progress bar: {HTML_PROGRESS.search(html).group(0)!r}")
            widget = "application/vnd.jupyter.widget-view+json" in output.get("data", {})
            if widget and "widgets." not in cell.source:
                found.append(f"cell {i} widget: {output['data'].get('text/plain', '')[:100]!r}")
    return found


def test_the_noise_check_sees_the_trainers_html_progress_bar():
    """02's Trainer drew its live progress bar and loss table as HTML, which the stderr check missed."""
    before = nbformat.read(ROOT / "tests" / "fixtures" / "trainer_progress_output.json", as_version=4)
    assert _noise(before) and "HTML progress bar" in _noise(before)[0]
