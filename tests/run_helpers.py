"""Helpers for tests of training runs: tiny settings, folder fingerprints, killing a run on purpose, and
running `pat-lite` as a separate process.

A "kill" is real: the run executes in a forked child that ends with `os._exit` at the chosen moment, so no
`finally` block, `atexit` hook or cleanup runs, exactly as with SIGKILL or a power cut. `start_paused_train`
runs the real `pat-lite train` in its own process, held at one optimizer step until the test lets it go
(tests/paused_train.py): what a second command, SIGKILL or Ctrl-C meets in the middle of a run.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import pat_lite.training.run as run_module
from pat_lite.training.config import TrainConfig, load_train_config

KILLED = 77  # the child's exit status when it stopped where it was told to
TESTS = Path(__file__).resolve().parent


def tiny_values(assets, output_dir, **extra) -> dict:
    """The settings of `tiny_settings`, as a mapping (dotted keys for the pat section)."""
    base, data = assets
    return {
        "model": str(base),
        "data": str(data),
        "data_fraction": 1.0,
        "output_dir": str(output_dir),
        "max_steps": 6,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "learning_rate": 0.01,
        "warmup_steps": 0,
        "logging_steps": 2,
        "save_steps": 4,
        "max_length": 32,
        "report_to": [],
        "pat.hio_rank": 4,
        "pat.milestone_step": 4,
    } | extra


def tiny_settings(assets, output_dir, **extra) -> TrainConfig:
    """6 steps of PAT on the tiny random checkpoint, a checkpoint every 4 steps (so checkpoint-4 and -6)."""
    return load_train_config(None, settings=tiny_values(assets, output_dir, **extra))


def tiny_overrides(assets, output_dir, **extra) -> list[str]:
    """`tiny_settings` as `pat-lite train` KEY=VALUE arguments (after `--config /dev/null`: no recipe)."""

    def text(value) -> str:
        if isinstance(value, list):
            return "[" + ",".join(value) + "]"
        return str(value).lower() if isinstance(value, bool) else str(value)

    values = tiny_values(assets, output_dir, **extra)
    return ["--config", os.devnull, *(f"{k}={text(v)}" for k, v in values.items())]


def folder_hashes(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path → sha256): equal before and after means nothing was lost."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def die() -> None:
    os._exit(KILLED)


def run_killed(work: Callable[[], object], prepare: Callable[[], None] = lambda: None) -> int:
    """Run `work` in a forked child after `prepare()` (which installs the kill point); return its status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            prepare()
            work()
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def tensors(file: Path) -> dict[str, torch.Tensor]:
    return load_file(str(file))


def assert_same_tensors(file_a: Path, file_b: Path) -> None:
    """Bit-identical: the same names, and every tensor equal element for element (no tolerance)."""
    a, b = tensors(file_a), tensors(file_b)
    assert sorted(a) == sorted(b), f"{file_a} and {file_b} hold different tensors"
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), f"{name} differs"


RESULT_FILES = (
    "merged/model.safetensors",
    "adapter/adapter_model.safetensors",
    "adapter/pat_state.safetensors",
)


def assert_same_results(run_a: Path, run_b: Path) -> None:
    for name in RESULT_FILES:
        assert_same_tensors(Path(run_a) / name, Path(run_b) / name)


class KillAtStep(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            die()


def callbacks_kill(callback: TrainerCallback):
    """A prepare() for run_killed that makes every Trainer of the child also get `callback`."""
    real = run_module.PATTrainer

    class Killing(real):
        def __init__(self, *args, **kwargs):
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), callback]
            super().__init__(*args, **kwargs)

    return lambda: setattr(run_module, "PATTrainer", Killing)


# ---------------------------------------------------------------------------------- separate processes
def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a `pat-lite` child: this one's, offline."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}


def run_cli(args: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """`pat-lite ARGS` in a fresh process; its output as text."""
    command = [sys.executable, "-m", "pat_lite.cli", *map(str, args)]
    env_ = cli_env(**env)
    return subprocess.run(command, cwd=cwd, env=env_, capture_output=True, text=True, timeout=timeout)


def error_line(stderr: str) -> str:
    """The one `pat-lite: ...` line of a failed command's stderr (asserting it is alone: no traceback)."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("pat-lite: ")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


class PausedTrain:
    """`pat-lite train ARGS` in its own process, held at the end of optimizer step `step` (ARGS: what
    follows `train`)."""

    def __init__(self, args: list[str], step: int, workdir: Path, **env: str) -> None:
        self.marker, self.gate = workdir / f"paused-{id(self)}", workdir / f"go-{id(self)}"
        self.log = (workdir / f"paused-{id(self)}.log").open("w")
        script = [sys.executable, str(TESTS / "paused_train.py"), str(step), str(self.marker), str(self.gate)]
        self.process = subprocess.Popen(
            [*script, *map(str, args)], cwd=workdir, env=cli_env(**env), stdout=self.log, stderr=self.log
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_until_paused(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.marker.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"the paused run ended early:\n{self.output()[-3000:]}")
            assert time.monotonic() < deadline, "the run never reached its pause"
            time.sleep(0.05)

    def resume(self, timeout: float = 120) -> int:
        self.gate.touch()
        return self.wait(timeout)

    def wait(self, timeout: float = 120) -> int:
        status = self.process.wait(timeout)
        self.log.close()
        return status

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text()

    def __enter__(self) -> PausedTrain:
        return self

    def __exit__(self, *exc) -> None:  # never leave the child behind, whatever the test did
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


def start_paused_train(assets, output_dir, step: int, workdir: Path, **extra) -> PausedTrain:
    """The real `pat-lite train` of `tiny_settings(assets, output_dir, **extra)`, paused after `step`."""
    return PausedTrain(tiny_overrides(assets, output_dir, **extra), step, workdir)
