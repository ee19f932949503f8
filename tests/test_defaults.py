"""One default, told the same way everywhere: the defaults docs/method.md §11 and the README state are the
code's (`PATConfig`, `TrainConfig`, `GlobalMask`), and the gate schedule in particular has one default in
every class and document."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import yaml

from pat_lite.core.config import PATConfig
from pat_lite.core.mask import GlobalMask
from pat_lite.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
#: `pat.gate_exponent_clamp=10` or `mask_lr_multiplier=1` inside a code span.
ASSIGNMENT = re.compile(r"`((?:pat\.)?\w+)=([^`\s]+)`")
SCHEDULE = re.compile(r"`pat\.schedule=(\w+)`")


def _default_column() -> list[str]:
    """The "pat_lite's default" cells of docs/method.md §11's table."""
    text = (ROOT / "docs" / "method.md").read_text()
    section = text[text.index("\n## 11. ") :]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("|")]  # fmt: skip
    column = rows[0].index("pat_lite's default")
    return [row[column] for row in rows[2:]]


def _code_default(key: str):
    if key.startswith("pat."):
        return getattr(PATConfig(), key.removeprefix("pat."))
    return getattr(TrainConfig(), key)


def test_every_default_the_method_doc_states_is_the_codes():
    stated = [match for cell in _default_column() for match in ASSIGNMENT.findall(cell)]
    assert len(stated) >= 6, f"the §11 default column names too few settings: {stated}"
    wrong = [f"{key}={value} (code: {_code_default(key)!r})" for key, value in stated
             if _code_default(key) != yaml.safe_load(value)]  # fmt: skip
    assert not wrong, f"docs/method.md §11 states defaults the code does not have: {wrong}"
    assert ("pat.schedule", PATConfig().schedule) in stated
    if PATConfig().schedule == "paper":  # the freeze fraction is read by the released schedule only
        assert "pat.mask_freeze_fraction" not in dict(stated), "the default schedule has no freeze"


def _sentences(text: str) -> list[str]:
    """The prose of a Markdown file cut into sentences (tables left out: the §11 test reads those)."""
    prose = " ".join(line for line in text.splitlines() if not line.lstrip().startswith("|"))
    return re.split(r"(?<=[.;:])\s+(?=[A-Z(`])", " ".join(prose.split()))


def test_every_sentence_that_names_the_default_schedule_names_the_codes():
    """README and docs/method.md: a sentence that calls a `pat.schedule=...` value the default names the
    one PATConfig has; a sentence that puts the default on the freeze at 0.8·s0 would contradict it."""
    default = PATConfig().schedule
    found = []
    for name in ("README.md", "docs/method.md"):
        for sentence in _sentences((ROOT / name).read_text()):
            if "default" not in sentence:
                continue
            schedules = SCHEDULE.findall(sentence)
            if schedules:
                found.append((name, schedules[0], sentence[:120]))
            freeze = re.search(r"0\.8\s*·?\s*s0|0\.8 s_0|mask_freeze_fraction=0\.8", sentence)
            if default == "paper" and freeze and "released" not in sentence:
                found.append((name, "freeze as a default", sentence[:120]))
    assert {name for name, _, _ in found} == {"README.md", "docs/method.md"}
    wrong = [f for f in found if f[1] != default]
    assert not wrong, f"the default schedule is {default!r}, but: {wrong}"


def test_the_mask_module_and_the_config_share_their_defaults():
    signature = inspect.signature(GlobalMask).parameters
    config = PATConfig()
    assert signature["schedule"].default == config.schedule
    assert signature["freeze_fraction"].default == config.mask_freeze_fraction
    assert signature["clamp"].default == config.gate_exponent_clamp
