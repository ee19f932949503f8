"""The run folder's lifecycle: a re-run after any crash ends bit-identical, nothing a user had is lost.

Kills are real (a forked child ends with os._exit, see run_helpers); results are compared tensor by tensor
with no tolerance against one run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from run_helpers import (
    KILLED,
    KillAtStep,
    assert_same_results,
    callbacks_kill,
    die,
    folder_hashes,
    run_killed,
    tiny_settings,
)
from tiny_models import tiny_checkpoint, write_instruction_file
from transformers import TrainerCallback

import pat_lite.training.run as run_module
import pat_lite.training.run_folder as run_folder
from pat_lite.training.run import train
from pat_lite.training.run_folder import SUMMARY, staging_dir
from pat_lite.utils.atomic import aside_path, leftovers
from pat_lite.utils.errors import RunFolderError

MAX_STEPS = 6


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_folder_assets")
    return tiny_checkpoint(root / "base"), write_instruction_file(root / "data.jsonl")


@pytest.fixture(scope="module")
def reference(assets, tmp_path_factory):
    """One uninterrupted run: what every resumed run must reproduce exactly."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = train(tiny_settings(assets, out))
    return out, result.summary


@pytest.fixture(scope="module")
def other_run(assets, tmp_path_factory):
    """A finished run with other settings (seed 7): the "old run" that replacements must not lose."""
    out = tmp_path_factory.mktemp("other") / "run"
    train(tiny_settings(assets, out, seed=7))
    return out


def copy_of(run: Path, where: Path) -> Path:
    shutil.copytree(run, where)
    return where


class KillAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        die()  # checkpoint-4 is complete on disk


def kill_inside_atomic_directory(name: str):
    """The folder `name` (adapter or merged) is fully written into its temporary sibling, not moved in."""
    real = run_module.atomic_directory

    def fake(final, write):
        if Path(final).name != name:
            return real(final, write)
        tmp = Path(final).with_name(f".{name}.tmp-killed")
        tmp.mkdir()
        write(tmp)
        die()

    return lambda: setattr(run_module, "atomic_directory", fake)


def kill_before_file(filename: str):
    real = run_module.atomic_write_text

    def fake(path, text):
        if Path(path).name == filename:
            die()
        return real(path, text)

    return lambda: setattr(run_module, "atomic_write_text", fake)


def kill_before_merge():
    return lambda: setattr(run_module, "merge_pat", lambda model: die())


def kill_mid_swap():
    """Replacing an old run: the old folder is moved aside, the new one not yet moved in."""

    def fake(new, final):
        os.replace(final, aside_path(final))
        die()

    return lambda: setattr(run_folder, "replace_directory", fake)


KILL_POINTS = {
    "mid-training (step 5, last checkpoint 4)": callbacks_kill(KillAtStep(5)),
    "right after checkpoint-4 was saved": callbacks_kill(KillAfterSave()),
    "at the last step, before the final checkpoint": callbacks_kill(KillAtStep(MAX_STEPS)),
    "during the adapter save": kill_inside_atomic_directory("adapter"),
    "after the adapter save, before merged/": kill_before_merge(),
    "during the merged save": kill_inside_atomic_directory("merged"),
    "before log_history.json": kill_before_file("log_history.json"),
    "before the summary": kill_before_file(SUMMARY),
}


def final_train_loss(run: Path) -> float:
    """The `train_loss` of the log's last entry: the mean training loss over the whole run."""
    return json.loads((run / "log_history.json").read_text())[-1]["train_loss"]


def assert_finished_like_reference(out: Path, result, reference) -> None:
    ref_dir, ref_summary = reference
    assert result.summary == ref_summary and result.summary["steps"] == MAX_STEPS
    assert json.loads((out / SUMMARY).read_text()) == ref_summary
    assert_same_results(out, ref_dir)
    assert final_train_loss(out) == final_train_loss(ref_dir)  # the log's summary too (issue 18, case 6)
    steps = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert max(steps) == MAX_STEPS, f"trained past max_steps: {steps}"
    assert not leftovers(out), f"half-written leftovers: {leftovers(out)}"


@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
def test_a_rerun_after_a_kill_resumes_and_ends_bit_identical_to_an_uninterrupted_run(
    kill_point, assets, reference, tmp_path
):
    out = tmp_path / "run"
    assert run_killed(lambda: train(tiny_settings(assets, out)), KILL_POINTS[kill_point]) == KILLED
    assert not (out / SUMMARY).exists()
    result = train(tiny_settings(assets, out))  # the same command again
    assert_finished_like_reference(out, result, reference)


def test_a_kill_during_the_final_save_does_not_train_past_max_steps(assets, reference, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_killed(lambda: train(tiny_settings(assets, out)), kill_before_merge()) == KILLED
    assert (out / "adapter").is_dir() and not (out / "merged").exists()
    result = train(tiny_settings(assets, out))
    assert "training had finished at checkpoint-6" in capsys.readouterr().out
    assert result.summary["steps"] == MAX_STEPS
    assert not (out / f"checkpoint-{MAX_STEPS + 1}").exists()
    assert_finished_like_reference(out, result, reference)


def test_overwrite_keeps_the_old_run_until_the_new_one_has_finished(
    assets, reference, other_run, tmp_path, capsys
):
    out = copy_of(other_run, tmp_path / "run")
    before = folder_hashes(out)
    cfg = tiny_settings(assets, out, overwrite_output_dir=True)
    assert run_killed(lambda: train(cfg), callbacks_kill(KillAtStep(5))) == KILLED
    assert folder_hashes(out) == before  # the old run is untouched while the new one trains
    assert (staging_dir(out) / "checkpoint-4").is_dir()
    capsys.readouterr()
    result = train(cfg)  # the same command: resumes the replacement where it stopped
    assert f"resuming from {staging_dir(out) / 'checkpoint-4'}" in capsys.readouterr().out
    assert_finished_like_reference(out, result, reference)
    assert not staging_dir(out).exists() and not aside_path(out).exists()


def test_a_kill_in_the_middle_of_the_replacement_puts_the_old_run_back_and_the_rerun_completes_it(
    assets, reference, other_run, tmp_path
):
    out = copy_of(other_run, tmp_path / "run")
    before = folder_hashes(out)
    cfg = tiny_settings(assets, out, overwrite_output_dir=True)
    assert run_killed(lambda: train(cfg), kill_mid_swap()) == KILLED
    assert not out.exists() and folder_hashes(aside_path(out)) == before
    with pytest.raises(RunFolderError, match="already holds a finished run"):  # another command, no flag
        train(tiny_settings(assets, out))
    assert folder_hashes(out) == before and not aside_path(out).exists()  # the old run is back
    result = train(cfg)  # the same command: the finished replacement is saved again and moved in
    assert_finished_like_reference(out, result, reference)
    assert not staging_dir(out).exists() and not aside_path(out).exists()


def test_a_crashed_run_whose_command_has_overwrite_resumes_instead_of_restarting(
    assets, reference, tmp_path, capsys
):
    out = tmp_path / "run"
    cfg = tiny_settings(assets, out, overwrite_output_dir=True)
    assert run_killed(lambda: train(cfg), callbacks_kill(KillAtStep(5))) == KILLED
    checkpoint = folder_hashes(out / "checkpoint-4")
    capsys.readouterr()
    result = train(cfg)
    assert f"resuming from {out / 'checkpoint-4'}" in capsys.readouterr().out
    assert_finished_like_reference(out, result, reference)
    assert not staging_dir(out).exists()
    assert checkpoint  # it was there to resume from, and the resumed run matches the reference bit for bit


def test_a_run_that_died_before_its_first_checkpoint_does_not_block_a_corrected_command(assets, tmp_path):
    out = tmp_path / "run"
    assert run_killed(lambda: train(tiny_settings(assets, out)), callbacks_kill(KillAtStep(1))) == KILLED
    assert (out / "run_config.yaml").exists() and not list(out.glob("checkpoint-*"))
    result = train(tiny_settings(assets, out, learning_rate=0.02))  # other settings, no flag needed
    assert result.summary["steps"] == MAX_STEPS
    assert "learning_rate: 0.02" in (out / "run_config.yaml").read_text()


def _interrupted_with_checkpoint(assets, out: Path) -> None:
    assert run_killed(lambda: train(tiny_settings(assets, out)), callbacks_kill(KillAtStep(5))) == KILLED


REFUSALS = {
    "a finished run": (lambda assets, out, other: copy_of(other, out), "already holds a finished run"),
    "someone else's files": (
        lambda assets, out, other: (out.mkdir(), (out / "notes.txt").write_text("mine")),
        "is not a pat_lite run folder",
    ),
    "an interrupted run with other settings": (
        lambda assets, out, other: _interrupted_with_checkpoint(assets, out),
        r"interrupted run with other settings \(learning_rate: 0.01 → 0.02\)",
    ),
}


@pytest.mark.parametrize("holder", list(REFUSALS))
def test_without_overwrite_a_folder_in_use_is_refused_and_left_exactly_as_it_was(
    holder, assets, other_run, tmp_path
):
    make, message = REFUSALS[holder]
    out = tmp_path / "run"
    make(assets, out, other_run)
    before = folder_hashes(out)
    with pytest.raises(RunFolderError, match=message):
        train(tiny_settings(assets, out, learning_rate=0.02))
    assert folder_hashes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_overwrite_replaces_someone_elses_folder_only_once_the_new_run_has_finished(assets, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    cfg = tiny_settings(assets, out, overwrite_output_dir=True)
    assert run_killed(lambda: train(cfg), callbacks_kill(KillAtStep(5))) == KILLED
    assert (out / "notes.txt").read_text() == "mine"
    train(cfg)
    assert not (out / "notes.txt").exists() and (out / SUMMARY).exists()


def test_a_stray_folder_where_the_replacement_would_train_is_refused(assets, other_run, tmp_path):
    out = copy_of(other_run, tmp_path / "run")
    staging_dir(out).mkdir()
    (staging_dir(out) / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match=r"run.new .*not a pat_lite run"):
        train(tiny_settings(assets, out, overwrite_output_dir=True))
    assert (staging_dir(out) / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_folder_of_a_run_gets_the_permissions_of_the_umask(assets, tmp_path, umask):
    previous = os.umask(umask)
    try:
        out = tmp_path / "run"
        train(tiny_settings(assets, out, max_steps=2))
    finally:
        os.umask(previous)
    folders = [out, *(p for p in out.rglob("*") if p.is_dir())]
    assert {"adapter", "merged", "checkpoint-2"} <= {p.name for p in folders}
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in folders}
    assert set(modes.values()) == {oct(0o777 & ~umask)}, modes


def test_a_resumed_runs_log_ends_with_the_train_loss_of_the_uninterrupted_run(assets, reference, tmp_path):
    """Issue 18, case 6: after a resume, log_history.json's final train_loss was the mean of the resumed
    part only (10.51 vs 11.44 uninterrupted). It is the mean over every step, exactly as uninterrupted."""
    out = tmp_path / "run"
    assert run_killed(lambda: train(tiny_settings(assets, out)), callbacks_kill(KillAtStep(5))) == KILLED
    train(tiny_settings(assets, out))
    steps = [entry["loss"] for entry in json.loads((reference[0] / "log_history.json").read_text())
             if "loss" in entry]  # fmt: skip
    assert final_train_loss(out) == final_train_loss(reference[0])
    assert abs(final_train_loss(out) - sum(steps) / len(steps)) < 1e-4  # logged every 2 of 6 steps: the mean


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_file_of_a_run_gets_the_permissions_of_the_umask(assets, tmp_path, umask):
    """Issue 18, case 10: safetensors writes its files 0600 whatever the umask, so a group could not load
    merged/. Every file of a run folder (checkpoints included) follows the umask, as folders do."""
    previous = os.umask(umask)
    try:
        out = tmp_path / "run"
        train(tiny_settings(assets, out, max_steps=2))
    finally:
        os.umask(previous)
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.relative_to(out).as_posix() for p in files}
    safetensors = [
        "merged/model.safetensors", "adapter/pat_state.safetensors", "mask_history.safetensors",
        "checkpoint-2/adapter_model.safetensors", "checkpoint-2/pat_state.safetensors",
    ]  # fmt: skip
    assert set(safetensors) <= names
    modes = {p.relative_to(out).as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes


def test_an_output_dir_that_is_a_symlink_stays_one_and_its_target_is_replaced(
    assets, reference, other_run, tmp_path
):
    """Issue 18, case 11: replacing a run through a symlinked output_dir turned the link into a real
    folder and left a `.link.old` symlink behind. The run is written to the link's target."""
    target = copy_of(other_run, tmp_path / "runs" / "real")
    link = tmp_path / "latest"
    link.symlink_to(target, target_is_directory=True)
    result = train(tiny_settings(assets, link, overwrite_output_dir=True))
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert_finished_like_reference(target, result, reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "runs"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["real"]  # no .new, .old or lock left
