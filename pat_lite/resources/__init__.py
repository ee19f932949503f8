"""The files pat_lite ships beside its code: training recipes and benchmark presets (`configs/`), the toy
data, real-text data and lm-eval task YAMLs (`data/`).

They live at the top of the repository, where a reader looks for them. The build maps those two folders
into the package as `pat_lite.resources.configs` and `pat_lite.resources.data` (`package-dir` in
pyproject.toml), so an installed wheel and an editable checkout both find them through
`importlib.resources`, from any working directory.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def configs_dir() -> Path:
    """The shipped `configs/` folder: training recipes (`*.yaml`) and benchmark presets (`bench/*.yaml`)."""
    return Path(str(files("pat_lite.resources.configs")))


def data_dir() -> Path:
    """The shipped `data/` folder: `toy/`, `lm_eval_tasks/` and the other generated data sets."""
    return Path(str(files("pat_lite.resources.data")))


def recipe_names() -> list[str]:
    """Names of the shipped training recipes (`pat-lite train --config NAME`)."""
    return sorted(p.stem for p in configs_dir().glob("*.yaml"))
