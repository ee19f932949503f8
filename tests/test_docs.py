"""docs/method.md is the repository's one description of the method: every `docs/method.md §N` citation
resolves to a section, every code pointer in it names real code, its formulas survive GitHub's Markdown,
and nothing points at a document users do not have."""

from __future__ import annotations

import importlib
import json
import os
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHOD_DOC = ROOT / "docs" / "method.md"
#: Folders and top-level files whose text may cite the method document.
SCANNED = ("pat_lite", "tests", "notebooks", "configs", "data", "docs")
SCANNED_FILES = ("README.md", "Makefile", "pyproject.toml")
#: Ignored build outputs and environments (as in .gitignore): never part of the repository's text.
SKIPPED_DIRS = {".venv", ".git", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".ruff_cache"}
SKIPPED_DIRS |= {".cache", "runs", "artifacts", "build", "dist"}

SECTION_HEADING = re.compile(r"^## (\d+)\. \S", re.MULTILINE)
SECTION_SIGN = re.compile(r"§(\d+)")
#: `pat_lite/core/mask.py: gate_temperature` — a module path and a (possibly dotted) attribute.
CODE_POINTER = re.compile(r"`(pat_lite/[\w/]+)\.py: ([A-Za-z_][\w.]*)`")
MODULE_PATH = re.compile(r"pat_lite/[\w/]+\.py")


def _text_of(path: Path) -> str | None:
    """A file's text (a notebook's cell sources), or None for binary files."""
    raw = path.read_bytes()
    if b"\0" in raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    if path.suffix == ".ipynb":
        cells = json.loads(text).get("cells", [])
        return "\n".join("".join(cell.get("source", [])) for cell in cells)
    return text


@cache
def repository_texts() -> dict[str, str]:
    """Relative path → text of every repository file that may cite docs/method.md."""
    texts: dict[str, str] = {}
    paths = [ROOT / name for name in SCANNED_FILES]
    for name in SCANNED:
        for folder, dirs, files in os.walk(ROOT / name):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
            paths += [Path(folder, f) for f in files]
    for path in paths:
        text = _text_of(path)
        if text is not None:
            texts[path.relative_to(ROOT).as_posix()] = text
    return texts


def method_text() -> str:
    return METHOD_DOC.read_text(encoding="utf-8")


def section_numbers() -> list[int]:
    return [int(n) for n in SECTION_HEADING.findall(method_text())]


def sections() -> dict[int, str]:
    """Section number → its text (heading included, up to the next numbered heading)."""
    text = method_text()
    starts = [(int(m.group(1)), m.start()) for m in SECTION_HEADING.finditer(text)]
    ends = [start for _, start in starts[1:]] + [len(text)]
    return {number: text[start:end] for (number, start), end in zip(starts, ends, strict=True)}


def citations() -> list[tuple[str, int, int]]:
    """(file, line number, section) for every § in the repository's text: all of them cite docs/method.md."""
    found = []
    for name, text in repository_texts().items():
        for lineno, line in enumerate(text.splitlines(), 1):
            found += [(name, lineno, int(n)) for n in SECTION_SIGN.findall(line)]
    return found


def test_the_method_doc_numbers_its_sections_from_1_without_gaps():
    numbers = section_numbers()
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 10, "the code cites §1 to §10: keep the method document's numbering"


def test_every_section_citation_in_the_repository_names_an_existing_section():
    existing = set(section_numbers())
    found = citations()
    assert len(found) >= 20, f"only {len(found)} § citations found: is the scan still reading the repository?"
    assert any(name.startswith("pat_lite/core/") for name, _, _ in found)
    dangling = [f"{name}:{lineno} cites §{n}" for name, lineno, n in found if n not in existing]
    assert not dangling, f"docs/method.md has no such section: {dangling}"


def test_the_repository_never_points_at_a_method_file_users_do_not_have():
    # Spelled in pieces so that this file does not contain what it forbids.
    forbidden = ("PAT_" + "METHOD", "../" + "shared", "/work/" + "shared", "spec" + " §")
    hits = [
        f"{name}:{lineno}: {line.strip()[:80]}"
        for name, text in repository_texts().items()
        for lineno, line in enumerate(text.splitlines(), 1)
        if any(word in line for word in forbidden)
    ]
    assert not hits, f"cite docs/method.md §N instead: {hits}"


@pytest.mark.parametrize("module_path, attribute", sorted(set(CODE_POINTER.findall(method_text()))))
def test_every_code_pointer_in_the_method_doc_names_an_existing_module_and_attribute(module_path, attribute):
    module = importlib.import_module(module_path.replace("/", "."))
    target = module
    for part in attribute.split("."):
        assert hasattr(target, part), f"{module_path}.py has no {attribute}"
        target = getattr(target, part)


def test_every_module_path_the_method_doc_mentions_exists():
    missing = sorted({p for p in MODULE_PATH.findall(method_text()) if not (ROOT / p).is_file()})
    assert not missing


def test_every_numbered_section_points_at_the_code_that_implements_it():
    without = [number for number, text in sections().items() if not CODE_POINTER.search(text)]
    assert not without, f"sections without an 'In the code' pointer: {without}"


def _math_spans(text: str) -> list[str]:
    """The LaTeX of every $$…$$ and $…$ span, outside code blocks and code spans."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    display = re.findall(r"\$\$(.+?)\$\$", prose)
    inline = re.findall(r"\$(.+?)\$", re.sub(r"\$\$.+?\$\$", "", prose))
    return display + inline


def test_the_formulas_avoid_what_githubs_markdown_would_eat():
    """GitHub runs Markdown over the math first: a backslash before punctuation is an escape (\\{ loses its
    backslash), `_` after a brace or parenthesis can start emphasis, `*` too, `<` + letter looks like HTML,
    `|` splits a table cell, and a $$ block over several lines is not rendered."""
    text = method_text()
    spans = _math_spans(text)
    assert len(spans) >= 40, "the method document's formulas were not found"
    unsafe = re.compile(r"\\[{}|\\,;:!]|[^\w]_|\*|<[A-Za-z]|^\s|\s$")
    bad = [span for span in spans if unsafe.search(span)]
    assert not bad, f"formulas GitHub would mangle: {bad}"
    lines = text.splitlines()
    assert not [line for line in lines if line.startswith("|") and "$" in line], "no math inside tables"
    assert all(line.startswith("$$") and line.endswith("$$") for line in lines if "$$" in line)
