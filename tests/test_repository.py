"""The repository's promises: one dependency list in two formats, the CI entry point, the quick start."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).replace("_", "-").lower()


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    listed = {_normalise(r) for r in pip_section if not r.startswith("-e")}
    assert listed == declared


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci
    assert "make demo" in readme and "make test" in readme


def test_cpu_constraint_pins_torch_for_ci_only():
    assert (ROOT / "constraints" / "cpu.txt").read_text().count("torch==") == 1
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any("torch==" in r for r in project["dependencies"])


def _pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(_normalise(line).split("==", 1) for line in lines if line)


def test_the_lock_pins_every_dependency_within_pyprojects_ranges():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(ROOT / "constraints" / "lock.txt") | _pins(ROOT / "constraints" / "cpu.txt")
    for text in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(text)
        name = _normalise(requirement.name)
        assert name in pins, f"{name} is not pinned in constraints/lock.txt (`make lock`)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    assert "torch" not in _pins(ROOT / "constraints" / "lock.txt"), "torch is pinned in cpu.txt only"


def test_ci_installs_from_the_lock_and_tests_with_empty_caches():
    ci = (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK ?= constraints/lock.txt" in makefile and "-c $(LOCK)" in makefile
    for variable in ("HOME", "PAT_LITE_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        assert re.search(rf"\b{variable}=\"\$fresh/", ci), f".ci/run must point {variable} at a new folder"
    assert "ATEN_CPU_CAPABILITY=default" in makefile and "-m committed_numbers" in makefile


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, id=p.name)
        for p in sorted((ROOT / "results").rglob("*.json"))
        if "runs" not in p.relative_to(ROOT / "results").parts  # a reproduce run's row cache, not committed
    ],
)  # fmt: skip
def test_every_committed_result_records_the_environment_that_made_it(path):
    import json

    wanted = {"python", "torch", "transformers", "peft", "datasets", "lm_eval", "cpu_capability"}
    result = json.loads(path.read_text())
    records = (
        [row.get("environment") for row in result["rows"]] if "rows" in result
        else [run.get("environment") for run in result.values()] if path.name.endswith("-diagnostics.json")
        else [e.get("environment") for part in ("references", "runs") for e in result[part].values()]
        if path.name.endswith("-cut-quality.json")
        else [result.get("environment")]
    )  # fmt: skip
    for record in records:
        assert isinstance(record, dict) and wanted <= set(record), f"{path}: no environment recorded"
        assert all(record[key] for key in wanted - {"cpu_capability"}), f"{path}: {record}"
