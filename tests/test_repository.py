"""The repository's promises: one dependency list in two formats, the CI entry point, the quick start."""

import re
import tomllib
from pathlib import Path

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
