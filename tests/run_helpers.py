"""Helpers for tests of training runs: tiny settings, folder fingerprints, and killing a run on purpose.

A "kill" is real: the run executes in a forked child that ends with `os._exit` at the chosen moment, so no
`finally` block, `atexit` hook or cleanup runs, exactly as with SIGKILL or a power cut.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from pat_lite.training.config import TrainConfig, load_train_config

KILLED = 77  # the child's exit status when it stopped where it was told to


def tiny_settings(assets, output_dir, **extra) -> TrainConfig:
    """6 steps of PAT on the tiny random checkpoint, a checkpoint every 4 steps (so checkpoint-4 and -6)."""
    base, data = assets
    values = {
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
    return load_train_config(None, settings=values)


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
