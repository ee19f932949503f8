"""One row of a study: what it is (`RowSpec`), where its result lives, and the name of its training run.

A row is one method at one pruning ratio, seed, run length and learning rate. Its result is one small JSON
file under `<out>/rows/<suite>/` — committed with the results, so a crashed study, a new session or another
machine resumes row by row — while its training run lives under `<out>/runs/<suite>/` (large, not
committed). A training run is shared by every row with the same effective settings (its folder is named by
`config_hash` of them); rows record it relative to `<out>` (`run_folder` resolves it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pat_lite.reproduce.methods import get_method

ROWS_DIR = "rows"


@dataclass(frozen=True)
class RowSpec:
    """One row of a study: a method at one ratio, seed, run length and learning rate."""

    suite: str
    method: str
    ratio: float
    seed: int
    steps: int
    learning_rate: float | None

    def label(self) -> str:
        lr = "none" if self.learning_rate is None else f"{self.learning_rate:g}"
        return f"{self.method}__r{self.ratio:g}__s{self.seed}__n{self.steps}__lr{lr}"


def normalised(spec: RowSpec) -> RowSpec:
    """Drop what a method does not depend on: `dense` ignores everything, full-width LoRA the ratio."""
    method = get_method(spec.method)
    if not method.uses_learning_rate:
        return replace(
            spec, seed=0, steps=0, learning_rate=None, ratio=0.0 if not method.pruned else spec.ratio
        )
    if not method.pruned:
        return replace(spec, ratio=0.0)
    return spec


def rows_dir(out: Path, suite: str) -> Path:
    return Path(out) / ROWS_DIR / suite


def row_path(out: Path, spec: RowSpec) -> Path:
    return rows_dir(out, spec.suite) / f"{spec.label()}.json"


def run_folder(out: Path, row: dict[str, Any]) -> Path | None:
    """The training run folder a row records (relative to `out`; older rows hold absolute paths)."""
    return Path(out) / row["run_dir"] if row.get("run_dir") else None


def load_row(out: Path, spec: RowSpec) -> dict[str, Any] | None:
    path = row_path(out, spec)
    return json.loads(path.read_text()) if path.is_file() else None


def config_hash(values: dict[str, Any]) -> str:
    """A short stable hash of a run's effective settings (its run folder's name)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]
