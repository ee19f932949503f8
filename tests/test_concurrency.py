"""Nothing is lost when commands meet on one folder, or when a run is killed or interrupted (issue 18).

Every case runs the real `pat-lite train` in its own process (tests/paused_train.py holds it at one
optimizer step): a second command started while it trains must be refused in one line by the folder's
lock, and a run killed or interrupted there must leave a folder the same command resumes.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from run_helpers import (
    KILLED,
    KillAtStep,
    callbacks_kill,
    cli_env,
    error_line,
    folder_hashes,
    run_cli,
    run_killed,
    start_paused_train,
    tiny_overrides,
    tiny_settings,
)
from tiny_models import tiny_checkpoint, write_instruction_file

from pat_lite import cli
from pat_lite.training.run import train
from pat_lite.training.run_folder import RUN_CONFIG, SUMMARY, staging_dir

IN_USE = "is in use by another pat-lite command"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("concurrency_assets")
    return tiny_checkpoint(root / "base"), write_instruction_file(root / "data.jsonl")


@pytest.fixture(scope="module")
def finished_run(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_settings(assets, out, seed=7))
    return out


def learning_rate(folder: Path) -> float:
    return yaml.safe_load((folder / RUN_CONFIG).read_text())["learning_rate"]


def assert_complete(folder: Path, steps: int = 6) -> None:
    """A finished run folder: settings, last checkpoint, merged model, summary; nothing half-done beside."""
    assert (folder / RUN_CONFIG).exists() and (folder / SUMMARY).exists()
    assert (folder / f"checkpoint-{steps}").is_dir() and (folder / "merged" / "model.safetensors").exists()
    assert json.loads((folder / SUMMARY).read_text())["steps"] == steps
    assert not staging_dir(folder).exists()


# ----------------------------------------------------------------------------------- case 1: the lock
def test_a_second_train_on_a_folder_being_trained_is_refused_and_the_first_one_finishes(assets, tmp_path):
    """Issue 18, case 1: two `pat-lite train` with one output_dir (lr 0.01 and 0.003). Before the lock the
    second one saw a run without a checkpoint, printed "starting over" and deleted the first one's folder."""
    out = tmp_path / "run"
    with start_paused_train(assets, out, step=2, workdir=tmp_path) as first:
        first.wait_until_paused()
        second = run_cli(["train", *tiny_overrides(assets, out, learning_rate=0.003)], cwd=tmp_path)
        assert second.returncode == cli.USER_ERROR_STATUS, second.stderr[-3000:]
        line = error_line(second.stderr)
        assert f"{out} {IN_USE} (pid {first.pid}: " in line and "choose another output_dir" in line
        assert "starting over" not in second.stdout
        assert first.resume() == 0, first.output()[-3000:]
    assert_complete(out)
    assert learning_rate(out) == 0.01  # the first command's run, whole
    assert not (tmp_path / ".run.lock").exists()  # the lock file goes with its holder


def test_two_identical_overwriting_commands_leave_one_complete_run(assets, finished_run, tmp_path):
    """Issue 18, case 1: the same `... overwrite_output_dir=true` twice at once on a finished run. Before the
    lock the second one restarted the replacement the first was writing: the final folder had no
    run_config.yaml and no last checkpoint."""
    out = shutil.copytree(finished_run, tmp_path / "run")
    before = folder_hashes(out)
    with start_paused_train(assets, out, step=2, workdir=tmp_path, overwrite_output_dir=True) as first:
        first.wait_until_paused()
        second = run_cli(["train", *tiny_overrides(assets, out, overwrite_output_dir=True)], cwd=tmp_path)
        assert second.returncode == cli.USER_ERROR_STATUS, second.stderr[-3000:]
        assert IN_USE in error_line(second.stderr)
        assert folder_hashes(out) == before  # the old run is intact while its replacement trains
        assert first.resume() == 0, first.output()[-3000:]
    assert_complete(out)
    assert learning_rate(out) == 0.01 and folder_hashes(out) != before


def test_a_killed_run_leaves_no_stale_lock_and_the_same_command_resumes_it(assets, tmp_path):
    """The lock dies with its process (SIGKILL, as the out-of-memory killer sends)."""
    out = tmp_path / "run"
    with start_paused_train(assets, out, step=5, workdir=tmp_path) as first:
        first.wait_until_paused()
        first.process.kill()
        assert first.wait() == -signal.SIGKILL
    again = run_cli(["train", *tiny_overrides(assets, out)], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {out / 'checkpoint-4'}" in again.stdout
    assert_complete(out)


LOCK_HOLDER = """
import sys, time
from pathlib import Path
from pat_lite.utils.locks import hold_folder
with hold_folder(sys.argv[1]):
    Path(sys.argv[2]).touch()
    time.sleep(120)
"""


@pytest.fixture
def held_folder(tmp_path):
    """A folder whose lock another process holds (as a running command would)."""
    folder, marker = tmp_path / "held", tmp_path / "holding"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(folder), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the lock holder did not start"
            time.sleep(0.05)
        yield folder, holder.pid
    finally:
        holder.kill()
        holder.wait()


WRITERS = {
    "train": lambda folder, assets: ["train", *tiny_overrides(assets, folder)],
    "eval --out-dir": lambda folder, assets: ["eval", "--model", str(assets[0]), "--tasks", "toy",
                                              "--toy-dir", str(Path(__file__).parent / "fixtures" / "toy"),
                                              "--out-dir", str(folder)],
    "bench --out": lambda folder, assets: ["bench", "--config", str(assets[0]), "--out", str(folder)],
    "bench-train --out": lambda folder, assets: ["bench-train", "--config", str(assets[0]), "--out",
                                                 str(folder)],
    "build-tiny-base --out": lambda folder, assets: ["build-tiny-base", "--out", str(folder)],
    "demo --output-dir": lambda folder, assets: ["demo", "--output-dir", str(folder)],
}  # fmt: skip


@pytest.mark.parametrize("command", list(WRITERS))
def test_every_command_that_writes_a_folder_refuses_one_in_use(command, held_folder, assets, capsys):
    """Issue 18, case 1: one lock for every command that writes a folder (the holder is a real process)."""
    folder, pid = held_folder
    assert cli.main(WRITERS[command](folder, assets)) == cli.USER_ERROR_STATUS
    captured = capsys.readouterr()
    line = error_line(captured.err)
    assert f"{folder} {IN_USE} (pid {pid}: " in line
    assert not folder.exists() and "|" not in captured.out  # refused before any work (no result table)


# ------------------------------------------------------- case 2: a failed command loses nothing pending
def test_a_failed_command_keeps_the_checkpoints_of_a_pending_replacement(assets, finished_run, tmp_path):
    """Issue 18, case 2: kill `... overwrite_output_dir=true save_steps=1 max_steps=8`, then run it again with
    `report_to=[wandb]` (not installed). Before: a traceback after `<out>.new`'s checkpoints were deleted.
    Now the logging integration is checked before the folder is touched, and the same command without it
    resumes the replacement."""
    out = shutil.copytree(finished_run, tmp_path / "run")
    cfg = tiny_settings(assets, out, overwrite_output_dir=True, save_steps=1, max_steps=8)
    assert run_killed(lambda: train(cfg), callbacks_kill(KillAtStep(4))) == KILLED  # after checkpoint-3
    pending = staging_dir(out)
    assert (pending / "checkpoint-3").is_dir()
    before = {"old": folder_hashes(out), "pending": folder_hashes(pending)}
    overrides = tiny_overrides(assets, out, overwrite_output_dir=True, save_steps=1, max_steps=8)
    failed = run_cli(["train", *overrides, "report_to=[wandb]"], cwd=tmp_path)
    assert failed.returncode == cli.USER_ERROR_STATUS
    assert "report_to: wandb is not installed here" in error_line(failed.stderr)
    assert {"old": folder_hashes(out), "pending": folder_hashes(pending)} == before
    resumed = run_cli(["train", *overrides], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {pending / 'checkpoint-3'}" in resumed.stdout
    assert_complete(out, steps=8)


# ------------------------------------------------------------------------------ case 8: Ctrl-C, one line
def test_ctrl_c_during_training_is_one_line_and_the_same_command_resumes(assets, tmp_path):
    """Issue 18, case 8: Ctrl-C (SIGINT) in the middle of training. Before: a 14-frame KeyboardInterrupt."""
    out = tmp_path / "run"
    with start_paused_train(assets, out, step=5, workdir=tmp_path) as run:
        run.wait_until_paused()
        run.process.send_signal(signal.SIGINT)
        assert run.wait() == 130  # the shell's status for a command ended by Ctrl-C (SIGINT)
        line = error_line(run.output())
    assert line.startswith("pat-lite: interrupted: ")
    assert f"last complete checkpoint is {out / 'checkpoint-4'}" in line and "run the same command" in line
    again = run_cli(["train", *tiny_overrides(assets, out)], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {out / 'checkpoint-4'}" in again.stdout
    assert_complete(out)


# ------------------------------------------------------------------ reproduce: its rows, report, workers
@pytest.mark.parametrize(
    ("held", "argv"),
    [
        ("rows/toy", ["reproduce", "--suite", "toy", "--methods", "dense"]),
        ("toy.report", ["reproduce", "--suite", "toy", "--report-only"]),
    ],
)
def test_reproduce_refuses_rows_or_a_report_in_use(held, argv, tmp_path, capsys):
    """Issue 18, case 1: `pat-lite reproduce` holds its suite's rows while it runs and its report while it
    writes it (the holder is a real process); a report of the rows so far needs only the report."""
    out = tmp_path / "results"
    marker = tmp_path / "holding"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(out / held), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the lock holder did not start"
            time.sleep(0.05)
        assert cli.main([*argv, "--out", str(out)]) == cli.USER_ERROR_STATUS
        line = error_line(capsys.readouterr().err)
        assert f"{out / held} {IN_USE} (pid {holder.pid}: " in line and "choose another --out" in line
        assert not list(out.rglob("*.json"))  # nothing ran, nothing was written
    finally:
        holder.kill()
        holder.wait()


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_killing_reproduce_leaves_no_worker_or_resource_tracker_behind(tmp_path):
    """Issue 18, case 9: kill only `pat-lite reproduce`'s main process, as the out-of-memory killer would.
    Before, its worker (mid-row) and multiprocessing's resource tracker kept running as orphans."""
    import psutil

    command = [sys.executable, "-m", "pat_lite.cli", "reproduce", "--suite", "toy", "--methods", "pat",
               "--steps", "300", "--workers", "1", "--out", str(tmp_path / "results")]  # fmt: skip
    main = subprocess.Popen(command, cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while not any("spawn_main" in " ".join(c.cmdline()) for c in children):
            assert main.poll() is None and time.monotonic() < deadline, "reproduce never started a worker"
            time.sleep(0.2)
            children = psutil.Process(main.pid).children(recursive=True)
        time.sleep(2)  # the worker is inside its row
        children = psutil.Process(main.pid).children(recursive=True)
        assert len(children) >= 2  # the worker and the resource tracker
        main.kill()
        main.wait()
        deadline = time.monotonic() + 20
        while any(_alive(c.pid) for c in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [" ".join(c.cmdline())[:100] for c in children if _alive(c.pid)]
        assert not left, f"orphans of the killed reproduce: {left}"
    finally:
        for child in children:
            if _alive(child.pid):
                child.kill()
        if main.poll() is None:
            main.kill()
